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
