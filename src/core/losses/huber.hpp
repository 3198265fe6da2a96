// huber(pred f, target y; delta) — PyTorch's HuberLoss / Keras' Huber convention.
//
// With r = f - y, a = |r|:
//   l = r^2 / 2                  if a <= delta
//     = delta (a - delta / 2)    otherwise
//   dl/df   = r if a <= delta, else delta sign(r)
//   d2l/df2 = 1 if a <= delta, else 0 (the boundary a == delta belongs to the quadratic part).
// No Fisher Hessian is defined (the Python entry refuses hessian="fisher").
// Parameters: [0] delta > 0.
struct Huber : ElementwiseLoss {
  static constexpr int n_params = 1;
  template <class T> struct Params {
    T delta;
    explicit Params(const double* p) : delta(static_cast<T>(p[0])) {}
  };

  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval(const Params<typename Traits<V>::T>& p, V f, V y, V, V& l, V& g, V& h) {
    using T = typename Traits<V>::T;
    V r = f - y;
    V a = abs(r);
    V d = set1<V>(p.delta);
    auto inner = a <= d;
    if constexpr (VAL) l = select(inner, T(0.5) * r * r, d * (a - T(0.5) * d));
    if constexpr (GRAD) g = select(inner, r, d * sign(r));
    if constexpr (HESS) h = select(inner, set1<V>(T(1)), V{}) + (r - r);
  }
  template <class V>
  static FL_INLINE V fisher_hess(const Params<typename Traits<V>::T>& p, V f, V y, V a) {
    V l, g, h;
    eval<false, false, true>(p, f, y, a, l, g, h);
    return h;
  }
};
