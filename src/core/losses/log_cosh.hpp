// log_cosh(pred f, target y) = log(cosh(f - y))   (Keras' LogCosh)
//
// With r = f - y, a = |r|, e = expm1(a), z = e + 1 = exp(a), d = z + 1/z = 2 cosh(a):
//   l       = log1p(cosh(a) - 1) = log1p(e^2 / (2 z))   (no cancellation for small a)
//           = a - log 2                                 for a > 40 (the rest is < 2^-110)
//   dl/df   = tanh(r) = sign(r) e (1 + 1/z) / d          (= sign(r) for a > 40)
//   d2l/df2 = sech^2(r) = (2 / d)^2                      (0 once d overflows, where the
//                                                          true value underflows anyway)
// Fisher (expected) Hessian: 1/2, the Fisher information of the location of the hyperbolic
// secant density sech(r)/pi, E[sech^2] = (1/pi) int sech^3 = 1/2.
// Parameters: none.
struct LogCosh : ElementwiseLoss {
  static constexpr int n_params = 0;
  template <class T> struct Params {
    explicit Params(const double*) {}
  };

  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval(const Params<typename Traits<V>::T>&, V f, V y, V, V& l, V& g, V& h) {
    using T = typename Traits<V>::T;
    using C = MathConst<T>;
    V r = f - y;
    V a = abs(r);
    auto big = a > T(40);
    V e = vexpm1(a);
    V z = e + T(1);
    V iz = T(1) / z;
    V rd = T(1) / (z + iz);
    if constexpr (VAL) l = select(big, a - C::ln2, vlog1p(e * (T(0.5) * e * iz)));
    if constexpr (GRAD) g = sign(r) * select(big, set1<V>(T(1)), e * (T(1) + iz) * rd);
    if constexpr (HESS) h = T(4) * rd * rd;
  }
  template <class V>
  static FL_INLINE V fisher_hess(const Params<typename Traits<V>::T>&, V f, V y, V) {
    using T = typename Traits<V>::T;
    return set1<V>(T(0.5)) + ((f - y) - (f - y));
  }
};
