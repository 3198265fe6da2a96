// Helpers shared by the row-wise margin and ranking losses (multiclass_hinge, crcnn_ranking,
// multilabel_softmax_cross_entropy): writing whole rows, scalar logistic pieces.

// Writes value v to n entries of p (vector stores, scalar tail).
template <class T>
FL_INLINE void fill_row(T* p, std::int64_t n, T v) {
  using V = typename VecOf<T>::V;
  constexpr int W = Traits<V>::W;
  const V vv = set1<V>(v);
  std::int64_t k = 0;
  for (; k + W <= n; k += W) store(p + k, vv);
  for (; k < n; ++k) p[k] = v;
}

// Scalar softplus(a) = log(1 + exp(a)) and sigmoid(a), from e = exp(-|a|) <= 1, so that
// neither overflows for any finite a (compiler builtins: no standard-library templates in an
// ISA translation unit).
FL_INLINE double softplus_d(double a) {
  return (a > 0.0 ? a : 0.0) + __builtin_log1p(__builtin_exp(-(a < 0.0 ? -a : a)));
}
FL_INLINE double sigmoid_d(double a) {
  const double e = __builtin_exp(-(a < 0.0 ? -a : a));
  return a >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

// The Hessian policy of a row entry h >= 0: "clip" gives max(h, floor); "exact" and "abs"
// leave it (the row losses here have no negative Hessian entries).
FL_INLINE double clip_hess(double h, int policy, double floor) {
  return (policy == kHessClip && !(h >= floor) && h == h) ? floor : h;
}

// The largest score of row x over the classes other than ex1 and ex2 (-1: none excluded), in
// mx, and the first class holding it, returned (-1 when every such score is -inf or there is
// none). Lanes holding NaN are or-ed into nanm; a NaN is never the maximum. A non-null
// zero_row is zero-filled in the same pass (a gradient row that gets two entries after).
template <class T>
FL_INLINE std::int64_t row_argmax_except(const T* x, std::int64_t K, std::int64_t ex1,
                                         std::int64_t ex2, T& mx,
                                         typename Traits<typename VecOf<T>::V>::VI& nanm,
                                         T* zero_row = nullptr) {
  using V = typename VecOf<T>::V;
  using Tr = Traits<V>;
  using VI = typename Tr::VI;
  using I = typename Tr::I;
  constexpr int W = Tr::W;
  const T ninf = -static_cast<T>(__builtin_huge_val());
  const VI e1 = iset1<V>(static_cast<I>(ex1)), e2 = iset1<V>(static_cast<I>(ex2));
  V vmax = set1<V>(ninf);
  VI vidx = iset1<V>(-1);
  VI idx = lane_index<V>();
  const VI step = iset1<V>(static_cast<I>(W));
  std::int64_t k = 0;
  for (; k + W <= K; k += W, idx += step) {  // full vectors: plain loads
    const V v = load<V>(x + k);
    if (zero_row) store(zero_row + k, V{});
    nanm |= (v != v);
    const VI better = (idx != e1) & (idx != e2) & (v > vmax);
    vmax = select(better, v, vmax);
    vidx = (vidx & ~better) | (idx & better);
  }
  if (k < K) {
    const VI live = lane_index<V>() < static_cast<int>(K - k);
    const V v = load_live<V>(x + k, live);
    if (zero_row)
      for (std::int64_t j = k; j < K; ++j) zero_row[j] = T(0);
    nanm |= (v != v) & live;
    const VI better = live & (idx != e1) & (idx != e2) & (v > vmax);
    vmax = select(better, v, vmax);
    vidx = (vidx & ~better) | (idx & better);
  }
  // Across lanes: the largest value, the smallest index among equal ones.
  mx = ninf;
  std::int64_t c = -1;
  for (int l = 0; l < W; ++l) {
    const auto il = static_cast<std::int64_t>(vidx[l]);
    if (il < 0) continue;
    if (c < 0 || vmax[l] > mx || (vmax[l] == mx && il < c)) {
      mx = vmax[l];
      c = il;
    }
  }
  return c;
}

// A row whose label is ignore_index: value 0, zero gradient and Hessian rows (null: not
// wanted). Returns whether the row is ignored.
template <bool VArr, class T>
FL_INLINE bool ignored_row(std::int64_t y, bool has_ig, std::int64_t ig, T* g, T* h,
                           std::int64_t K, T* value_i) {
  if (!is_ignored(y, has_ig, ig, K)) return false;
  if (g) fill_row<T>(g, K, T(0));
  if (h) fill_row<T>(h, K, T(0));
  if constexpr (VArr) *value_i = T(0);
  return true;
}

// The weight of row i with label y: sample weight (1 when absent) times class weight.
template <class T>
FL_INLINE double row_weight(const RowBlock<T>& b, std::int64_t i, std::int64_t y) {
  const double sw = b.weight ? static_cast<double>(b.weight[i]) : 1.0;
  return sw * (b.class_w ? static_cast<double>(b.class_w[y]) : 1.0);
}

// A row that holds NaN (in its scores or weight): NaN value, gradient and Hessian rows, or
// zeros under nan_policy="omit".
template <class T>
FL_INLINE void nan_row(T* g, T* h, std::int64_t K, bool omit, double& value) {
  const T fillv = omit ? T(0) : static_cast<T>(__builtin_nan(""));
  value = static_cast<double>(fillv);
  if (g) fill_row<T>(g, K, fillv);
  if (h) fill_row<T>(h, K, fillv);
}
