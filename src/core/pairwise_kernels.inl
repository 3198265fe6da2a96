// fastloss — the per-group kernel of the pairwise ranking losses, compiled once per ISA
// (included by kernels.inl inside the ISA's namespace).
//
// One call handles the groups [g0, g1) of a block. Per group: the documents are gathered into
// the thread's scratch (so that unsorted qid cost nothing more than sorted), then for each
// document i the pairs (i, j), j > i, are evaluated one vector of j at a time: one exp per
// unordered pair, the i-side sums kept in a vector, the j-side sums added into the scratch
// row. Memory is O(group size); nothing of size n^2 exists.

template <class V>
FL_INLINE double hsum_lanes(V v) {
  typename Traits<V>::Acc a{};
  a += to_acc(v);
  return hsum(a);
}

template <class Loss, class T, int MODE>
void group_kernel(const GroupBlock<T>& b) noexcept {
  using V = typename VecOf<T>::V;
  using Tr = Traits<V>;
  using VI = typename Tr::VI;
  constexpr int W = Tr::W;
  constexpr bool kVArr = (MODE & kValueArray) != 0, kVSum = (MODE & kValueSum) != 0;
  constexpr bool kVal = kVArr || kVSum;
  constexpr bool kG = (MODE & kGrad) != 0, kH = (MODE & kHess) != 0;

  const typename Loss::template Params<T> p(b.params);
  const bool by_delta = b.params[1] != 0.0;
  const bool omit = b.omit_nan;
  const std::int64_t cap = b.scratch_cap;
  T* s = b.scratch;
  T* r = s + cap;
  T* gb = r + cap;
  T* hb = gb + cap;
  T* lb = hb + cap;
  T* ok = lb + cap;
  const V one = set1<V>(T(1)), mone = set1<V>(T(-1)), half = set1<V>(T(0.5));
  double vsum = 0.0;

  for (std::int64_t grp = b.g0; grp < b.g1; ++grp) {
    const std::int64_t start = b.offsets[grp];
    const std::int64_t n = b.offsets[grp + 1] - start;
    const T wg = b.gweight ? b.gweight[grp] : T(1);
    const bool dropped = omit && wg != wg;
    for (std::int64_t k = 0; k < n; ++k) {
      const std::int64_t d = b.order ? b.order[start + k] : start + k;
      s[k] = b.scores[d];
      r[k] = b.rel[d];
      ok[k] = (s[k] == s[k] && r[k] == r[k]) ? T(1) : T(0);
      gb[k] = T(0);
      hb[k] = T(0);
      lb[k] = T(0);
    }
    typename Tr::Acc lacc{};
    for (std::int64_t i = 0; i + 1 < n && !dropped; ++i) {
      if (omit && ok[i] == T(0)) continue;
      const V si = set1<V>(s[i]);
      const V ri = set1<V>(r[i]);
      V gi{}, hi{}, li{};
      for (std::int64_t j = i + 1; j < n; j += W) {
        const int cnt = (n - j < W) ? static_cast<int>(n - j) : W;
        const VI live = lane_index<V>() < cnt;
        const V sj = load_live<V>(s + j, live);
        const V rj = load_live<V>(r + j, live);
        const V dr = ri - rj;
        VI act = live & (dr != V{});  // NaN relevance: active, and NaN propagates
        if (omit) act = act & (load_live<V>(ok + j, live) != V{});
        V sg = select(dr > V{}, one, mone);
        sg = select(dr != dr, dr, sg);
        const V w = by_delta ? abs(dr) : one;
        V f{}, f1{}, f2{};
        Loss::template pair<kVal, kG, kH>(p, sg * (si - sj), f, f1, f2);
        if constexpr (kVal) {
          const V lw = select(act, f * w, V{});
          li += lw;
          if constexpr (kVArr) {
            if (b.value_per_doc) store_n(lb, j, load_live<V>(lb + j, live) + half * lw, cnt, true);
          }
        }
        if constexpr (kG) {
          const V gw = select(act, f1 * w * sg, V{});
          gi += gw;
          store_n(gb, j, load_live<V>(gb + j, live) - gw, cnt, true);
        }
        if constexpr (kH) {
          const V hw = select(act, f2 * w, V{});
          hi += hw;
          store_n(hb, j, load_live<V>(hb + j, live) + hw, cnt, true);
        }
      }
      if constexpr (kVal) {
        lacc += to_acc(li);
        if constexpr (kVArr) {
          if (b.value_per_doc) lb[i] = static_cast<T>(lb[i] + 0.5 * hsum_lanes(li));
        }
      }
      if constexpr (kG) gb[i] = static_cast<T>(gb[i] + hsum_lanes(gi));
      if constexpr (kH) hb[i] = static_cast<T>(hb[i] + hsum_lanes(hi));
    }
    const double wgd = dropped ? 0.0 : static_cast<double>(wg);
    const double ds = wgd * b.gscale;
    double L = 0.0;
    if constexpr (kVal) L = dropped ? 0.0 : hsum(lacc) * wgd;
    for (std::int64_t k = 0; k < n; ++k) {
      const std::int64_t d = b.order ? b.order[start + k] : start + k;
      const bool zero = dropped || (omit && ok[k] == T(0));
      if constexpr (kG) b.grad[d] = zero ? T(0) : static_cast<T>(gb[k] * ds);
      if constexpr (kH) {
        double hk = hb[k];
        if (b.hess_policy == kHessAbs) hk = hk < 0.0 ? -hk : hk;
        hk = clip_hess(hk, b.hess_policy, b.hess_floor);
        b.hess[d] = zero ? T(0) : static_cast<T>(hk * ds);
      }
      if constexpr (kVArr) {
        if (b.value_per_doc) b.value[d] = zero ? T(0) : static_cast<T>(lb[k] * wgd);
      }
    }
    if constexpr (kVArr) {
      if (!b.value_per_doc) b.value[grp] = static_cast<T>(L);
    }
    if constexpr (kVSum) vsum += L;
  }
  if constexpr (kVSum) *b.value_sum = vsum;
}
