// multilabel_softmax_cross_entropy(scores s[..., K], target t[..., K]; mask)
//
// The multi-label loss on raw scores (a class is predicted present when s_k > 0):
//   l = log(1 + sum_{k negative} e^{s_k}) + log(1 + sum_{k positive} e^{-s_k})
// For soft targets t_k in [0, 1] fastloss uses the weighted form
//   A = 1 + sum_k (1 - t_k) e^{s_k},   B = 1 + sum_k t_k e^{-s_k},   l = log A + log B,
// which is the hard-target loss when t is 0/1 and convex in s for any t (both terms are
// log-sum-exps of affine functions with non-negative weights). With u_k = (1 - t_k) e^{s_k}/A
// and v_k = t_k e^{-s_k}/B:
//   dl/ds_k = u_k - v_k,   d2l/ds_k^2 = u_k (1 - u_k) + v_k (1 - v_k)   (never negative).
// Evaluation: A and B are scaled by e^{-mA}, e^{-mB} with mA = max(0, s_k over k with
// t_k < 1), mB = max(0, -s_k over k with t_k > 0), so that no exponential exceeds 1 (finite
// results for any finite scores); log A = mA + log(e^{-mA} + sum ...). Hard-target vectors
// take one exp per score, soft ones two.
// A target of exactly -1 marks an absent class (the Python mask= folds into it): it takes
// part in neither sum and gets 0 gradient and Hessian. Other targets outside [0, 1] raise.
// Sample weight, NaN handling as the other row losses.
struct MultilabelSoftmaxCrossEntropy {
  template <int MODE, class T>
  static void rows(const RowBlock<T>& b) noexcept {
    using V = typename VecOf<T>::V;
    using Tr = Traits<V>;
    using VI = typename Tr::VI;
    constexpr int W = Tr::W;
    constexpr bool kVArr = (MODE & kValueArray) != 0, kVSum = (MODE & kValueSum) != 0;
    constexpr bool kG = (MODE & kGrad) != 0, kH = (MODE & kHess) != 0;

    const std::int64_t K = b.K;
    const T ninf = -static_cast<T>(__builtin_huge_val());
    const V vfloor = set1<V>(b.hess_policy == kHessClip ? static_cast<T>(b.hess_floor) : ninf);
    const V one = set1<V>(T(1)), mone = set1<V>(T(-1));
    double vsum = 0.0;
    VI tout{};

    // The scaled exponentials of one vector: ea = (1 - t) e^{s - mA}, eb = t e^{-s - mB}
    // (0 for absent classes and dead lanes).
    auto exps = [&](V v, V tv, VI present, V mA, V mB, V& ea, V& eb) {
      const V nw = select(present, one - tv, V{});
      const V pw = select(present, tv, V{});
      const VI hard = ~present | (tv == V{}) | (tv == one);
      if (!any_lane(~hard)) {
        const VI pos = present & (tv == one);
        const VI neg = present & (tv == V{});
        const V arg = select(pos, -v - mB, select(neg, v - mA, set1<V>(ninf)));
        const V e = vexp_nonpos(arg);
        ea = select(neg, e, V{});
        eb = select(pos, e, V{});
      } else {
        ea = nw * vexp_nonpos(select(nw > V{}, v - mA, set1<V>(ninf)));
        eb = pw * vexp_nonpos(select(pw > V{}, -v - mB, set1<V>(ninf)));
      }
    };

    for (std::int64_t i = 0; i < b.rows; ++i) {
      const T* x = b.logits + i * K;
      const T* t = b.tprob + i * K;
      T* g = kG ? b.grad + i * K : nullptr;
      T* h = kH ? b.hess + i * K : nullptr;
      const double sw = b.weight ? static_cast<double>(b.weight[i]) : 1.0;
      VI nanm{};
      V va{}, vb{};  // running max of s (negatives) and -s (positives), starting at 0
      for (std::int64_t k = 0; k < K; k += W) {
        const int n = (K - k < W) ? static_cast<int>(K - k) : W;
        const VI live = lane_index<V>() < n;
        const V v = load_live<V>(x + k, live);
        const V tv = load_live<V>(t + k, live);
        nanm |= ((v != v) | (tv != tv)) & live;
        const VI present = live & (tv != mone);
        tout |= present & ((tv < V{}) | (tv > one));
        va = select(present & (tv < one) & (v > va), v, va);
        vb = select(present & (tv > V{}) & (-v > vb), -v, vb);
      }
      const T mA = hmax(va), mB = hmax(vb);
      const V vmA = set1<V>(mA), vmB = set1<V>(mB);
      typename Tr::Acc sa{}, sb{};
      for (std::int64_t k = 0; k < K; k += W) {
        const int n = (K - k < W) ? static_cast<int>(K - k) : W;
        const VI live = lane_index<V>() < n;
        const V v = load_live<V>(x + k, live);
        const V tv = load_live<V>(t + k, live);
        V ea, eb;
        exps(v, tv, live & (tv != mone), vmA, vmB, ea, eb);
        sa += to_acc(ea);
        sb += to_acc(eb);
      }
      const double A = __builtin_exp(-static_cast<double>(mA)) + hsum(sa);
      const double B = __builtin_exp(-static_cast<double>(mB)) + hsum(sb);
      double value = (static_cast<double>(mA) + __builtin_log(A) + static_cast<double>(mB) +
                      __builtin_log(B)) * sw;
      if constexpr (kG || kH) {
        const double ds = sw * b.gscale;
        const V vds = set1<V>(static_cast<T>(ds));
        const V ra = set1<V>(static_cast<T>(1.0 / A)), rb = set1<V>(static_cast<T>(1.0 / B));
        for (std::int64_t k = 0; k < K; k += W) {
          const int n = (K - k < W) ? static_cast<int>(K - k) : W;
          const VI live = lane_index<V>() < n;
          const V v = load_live<V>(x + k, live);
          const V tv = load_live<V>(t + k, live);
          const VI present = live & (tv != mone);
          V ea, eb;
          exps(v, tv, present, vmA, vmB, ea, eb);
          const V u = ea * ra, q = eb * rb;
          if constexpr (kG) store_n(g, k, (u - q) * vds, n, true);
          if constexpr (kH) {
            const V hv = max_nan1(u * (one - u) + q * (one - q), vfloor);
            store_n(h, k, select(present, hv, V{}) * vds, n, true);
          }
        }
      }
      if (any_lane(nanm) || sw != sw) nan_row<T>(g, h, K, b.omit_nan, value);
      if constexpr (kVArr) b.value[i] = static_cast<T>(value);
      if constexpr (kVSum) vsum += value;
    }
    if constexpr (kVSum) *b.value_sum = vsum;
    if (b.bad_target && any_lane(tout)) *b.bad_target = 1;
  }
};
