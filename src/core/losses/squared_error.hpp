// squared_error(pred f, target y) = (y - f)^2
//
// With r = f - y:  l = r^2,  dl/df = 2 r,  d2l/df2 = 2.
// Fisher (expected) Hessian: 2, the same (the Gaussian location model).
// Parameters: none.
struct SquaredError : ElementwiseLoss {
  static constexpr int n_params = 0;
  template <class T> struct Params {
    explicit Params(const double*) {}
  };

  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval(const Params<typename Traits<V>::T>&, V f, V y, V, V& l, V& g, V& h) {
    using T = typename Traits<V>::T;
    V r = f - y;
    if constexpr (VAL) l = r * r;
    if constexpr (GRAD) g = r + r;
    if constexpr (HESS) h = set1<V>(T(2)) + (r - r);  // 2, NaN where r is NaN
  }
  template <class V>
  static FL_INLINE V fisher_hess(const Params<typename Traits<V>::T>&, V f, V y, V) {
    using T = typename Traits<V>::T;
    return set1<V>(T(2)) + ((f - y) - (f - y));
  }
};
