// absolute_error(pred f, target y) = |f - y|
//
// With r = f - y:  l = |r|,  dl/df = sign(r) (the subgradient 0 at r = 0, as PyTorch's
// L1Loss), d2l/df2 = 0 exactly (hessian="exact"), so Newton-type users pick a policy:
// "clip" gives hess_floor; "fisher" gives 1, the Fisher information of the location of a
// unit-scale Laplace density exp(-|r|)/2, which is also the constant Hessian that XGBoost's
// reg:absoluteerror uses.
// Parameters: none.
struct AbsoluteError : ElementwiseLoss {
  static constexpr int n_params = 0;
  template <class T> struct Params {
    explicit Params(const double*) {}
  };

  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval(const Params<typename Traits<V>::T>&, V f, V y, V, V& l, V& g, V& h) {
    V r = f - y;
    if constexpr (VAL) l = abs(r);
    if constexpr (GRAD) g = sign(r);
    if constexpr (HESS) h = r - r;  // 0, NaN where r is NaN
  }
  template <class V>
  static FL_INLINE V fisher_hess(const Params<typename Traits<V>::T>&, V f, V y, V) {
    using T = typename Traits<V>::T;
    return set1<V>(T(1)) + ((f - y) - (f - y));
  }
};
