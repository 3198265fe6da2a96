// multiclass_hinge(scores s[..., K], target y; kind, margin m, p, class_weight, ignore_index)
//
// kind = "crammer_singer" (scikit-learn's hinge_loss, optax's multiclass_hinge_loss):
//   z = m + max_{j != y} s_j - s_y,   l = max(0, z)
//   dl/ds_c = +1, dl/ds_y = -1 where z > 0 (c = the first index of the largest wrong score),
//   0 elsewhere and at the kink z = 0; the exact Hessian is 0.
// kind = "weston_watkins" (PyTorch's multi_margin_loss, weight multiplying after the power):
//   z_j = m - s_y + s_j,   l = (1/K) sum_{j != y} max(0, z_j)^p,   p in {1, 2}
//   dl/ds_j = (1/K) p max(0, z_j)^(p-1) [z_j > 0]   (j != y),   dl/ds_y = -sum_{j != y} dl/ds_j
//   d2l/ds_j^2 = (1/K) 2 [z_j > 0] (j != y),   d2l/ds_y^2 = (1/K) 2 #{j: z_j > 0}   for p = 2;
//   0 for p = 1. Kinks (z_j = 0) count as inactive.
// The class weight c_y multiplies value, gradient and Hessian like a sample weight and enters
// the mean's denominator (the binding computes it). A NaN in a row (or its weight) gives a
// NaN value, gradient and Hessian row; nan_policy="omit" zeroes it.
// Parameters: [0] margin, [1] has ignore_index, [2] ignore_index (both set by the binding),
// [3] kind (0 Crammer-Singer, 1 Weston-Watkins), [4] p.
struct MulticlassHinge {
  template <int MODE, class T>
  static void rows(const RowBlock<T>& b) noexcept {
    using V = typename VecOf<T>::V;
    using Tr = Traits<V>;
    using VI = typename Tr::VI;
    using I = typename Tr::I;
    constexpr int W = Tr::W;
    constexpr bool kVArr = (MODE & kValueArray) != 0, kVSum = (MODE & kValueSum) != 0;
    constexpr bool kG = (MODE & kGrad) != 0, kH = (MODE & kHess) != 0;

    const std::int64_t K = b.K;
    const T m = static_cast<T>(b.params[0]);
    const bool has_ig = b.params[1] != 0.0;
    const std::int64_t ig = ignore_index_param(b.params[2]);
    const bool ww = b.params[3] != 0.0;
    const bool sq = b.params[4] == 2.0;
    const bool clip = b.hess_policy == kHessClip;
    const V vfloor = set1<V>(clip ? static_cast<T>(b.hess_floor)
                                  : -static_cast<T>(__builtin_huge_val()));
    double vsum = 0.0;

    for (std::int64_t i = 0; i < b.rows; ++i) {
      const T* x = b.logits + i * K;
      T* g = kG ? b.grad + i * K : nullptr;
      T* h = kH ? b.hess + i * K : nullptr;
      const std::int64_t y = b.labels[i];
      double value = 0.0;
      if (ignored_row<kVArr, T>(y, has_ig, ig, g, h, K, kVArr ? b.value + i : nullptr)) continue;
      const double w = row_weight(b, i, y);
      const VI yv = iset1<V>(static_cast<I>(y));
      VI nanm{};
      if (!ww) {
        // The largest wrong score and the first class holding it.
        T mx;
        const std::int64_t c = row_argmax_except<T>(x, K, y, -1, mx, nanm, kG ? g : nullptr);
        const double z = static_cast<double>(m) + static_cast<double>(mx) - static_cast<double>(x[y]);
        value = (z > 0.0 ? z : 0.0) * w;
        const double ds = w * b.gscale;
        if constexpr (kG) {  // (zero-filled by the max pass)
          if (z > 0.0) {
            if (c >= 0) g[c] = static_cast<T>(ds);
            g[y] = static_cast<T>(-ds);
          }
        }
        if constexpr (kH) fill_row<T>(h, K, static_cast<T>(clip_hess(0.0, b.hess_policy, b.hess_floor) * ds));
      } else {
        const V base = set1<V>(m - x[y]);
        // The Hessian policy applies to the sample's own Hessian, which carries the 1/K.
        const double invK = 1.0 / static_cast<double>(K);
        const double ds = w * b.gscale;
        const V vds = set1<V>(static_cast<T>(ds));
        const V vk = set1<V>(static_cast<T>(invK));
        typename Tr::Acc vacc{}, gacc{}, cacc{};
        const V one = set1<V>(T(1));
        const V two_k = set1<V>(static_cast<T>(2.0 * invK));
        // One vector: the row sums in va, ga, ca (compute type); the outputs in gv, hv.
        auto body = [&](V v, VI live, VI idx, V& va, V& ga, V& ca, V& gv, V& hv) {
          nanm |= (v != v) & live;
          const V z = base + v;
          const VI act = live & (idx != yv) & (z > V{});
          const V zz = select(act, z, V{});
          if (sq) {
            va += zz * zz;
            gv = T(2) * zz;
          } else {
            va += zz;
            gv = select(act, one, V{});
          }
          if constexpr (kG) ga += gv;
          gv = gv * vk * vds;
          if constexpr (kH) {
            ca += select(act, one, V{});
            hv = max_nan1(sq ? select(act, two_k, V{}) : V{}, vfloor) * vds;
          }
        };
        const VI all = iset1<V>(-1), step = iset1<V>(static_cast<I>(W));
        VI idx = lane_index<V>();
        std::int64_t k = 0;
        // Full vectors in runs of at most 32 (sums of 32 terms per lane in the compute type,
        // then float64), then the partial tail.
        while (k + W <= K) {
          V va{}, ga{}, ca{}, gv{}, hv{};
          const std::int64_t kend = (K - k < 32 * W) ? K : k + 32 * W;
          for (; k + W <= kend; k += W, idx += step) {
            body(load<V>(x + k), all, idx, va, ga, ca, gv, hv);
            if constexpr (kG) store(g + k, gv);
            if constexpr (kH) store(h + k, hv);
          }
          vacc += to_acc(va);
          if constexpr (kG) gacc += to_acc(ga);
          if constexpr (kH) cacc += to_acc(ca);
        }
        if (k < K) {
          const int n = static_cast<int>(K - k);
          const VI live = lane_index<V>() < n;
          V va{}, ga{}, ca{}, gv{}, hv{};
          body(load_live<V>(x + k, live), live, idx, va, ga, ca, gv, hv);
          store_n(g, k, gv, n, kG);
          store_n(h, k, hv, n, kH);
          vacc += to_acc(va);
          if constexpr (kG) gacc += to_acc(ga);
          if constexpr (kH) cacc += to_acc(ca);
        }
        value = hsum(vacc) * w * invK;
        if constexpr (kG) g[y] = static_cast<T>(-hsum(gacc) * invK * ds);
        if constexpr (kH) {
          const double hy = sq ? 2.0 * hsum(cacc) * invK : 0.0;
          h[y] = static_cast<T>(clip_hess(hy, b.hess_policy, b.hess_floor) * ds);
        }
      }
      if (any_lane(nanm) || w != w) nan_row<T>(g, h, K, b.omit_nan, value);
      if constexpr (kVArr) b.value[i] = static_cast<T>(value);
      if constexpr (kVSum) vsum += value;
    }
    if constexpr (kVSum) *b.value_sum = vsum;
  }
};
