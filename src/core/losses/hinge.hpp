// hinge(scores f, target t; margin m) and squared_hinge — binary margin losses, elementwise.
//
// Labels: t in {-1, +1} or {0, 1}; y = +1 for t > 0, y = -1 for t in {-1, 0} (so 0/1 and
// -1/+1 targets give the same loss). With z = m - y f (the margin violation):
//   hinge          l = max(0, z)      dl/df = -y [z > 0]       d2l/df2 = 0
//   squared_hinge  l = max(0, z)^2    dl/df = -2 y max(0, z)   d2l/df2 = 2 [z > 0]
// At the kink z = 0 both take the right-hand side: hinge's subgradient is 0 there (the
// minimum-norm element of [-y, 0], also what PyTorch's relu-based hinge and XGBoost's
// binary:hinge give), squared_hinge's Hessian is 0 there (its gradient is continuous).
// hinge's "fisher" slot holds XGBoost's binary:hinge Hessian (Python: hessian="xgboost"):
// 1 where z > 0, else FLT_MIN (XGBoost src/objective/hinge.cc: a tiny positive Hessian
// keeps the leaf weights defined).
// A NaN score or label gives NaN value, gradient and Hessian.
// Parameters: [0] margin m.
template <class V>
FL_INLINE V sign_label(V t) {
  // +1 for t > 0, -1 otherwise; NaN passes.
  using T = typename Traits<V>::T;
  V y = select(t > V{}, set1<V>(T(1)), set1<V>(T(-1)));
  return select(t != t, t, y);
}
// Targets outside {-1, 0, +1} (NaN is not flagged: it propagates).
template <class V>
FL_INLINE typename Traits<V>::VI sign_label_outside(V t) {
  using T = typename Traits<V>::T;
  return (t == t) & (t != T(1)) & (t != V{}) & (t != T(-1));
}

// What the two binary margin losses share: the margin parameter and the label domain.
struct SignMarginLoss : ElementwiseLoss {
  static constexpr int n_params = 1;
  static constexpr bool checks_target = true;
  static constexpr int target_domain = kDomainSign;
  template <class V>
  static FL_INLINE typename Traits<V>::VI target_outside(V t) {
    return sign_label_outside(t);
  }
  template <class T> struct Params {
    T margin;
    explicit Params(const double* p) : margin(static_cast<T>(p[0])) {}
  };
};

struct Hinge : SignMarginLoss {
  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval(const Params<typename Traits<V>::T>& p, V f, V t, V, V& l, V& g,
                             V& h) {
    V y = sign_label(t);
    V z = p.margin - y * f;
    auto nan = z != z;
    if constexpr (VAL) l = max_nan1(z, V{});
    if constexpr (GRAD) g = select(nan, z, select(z > V{}, -y, V{}));
    if constexpr (HESS) h = select(nan, z, V{});
  }
  template <class V>
  static FL_INLINE V fisher_hess(const Params<typename Traits<V>::T>& p, V f, V t, V) {
    using T = typename Traits<V>::T;
    V z = p.margin - sign_label(t) * f;
    V tiny = set1<V>(static_cast<T>(1.17549435082228750797e-38));  // FLT_MIN
    return select(z != z, z, select(z > V{}, set1<V>(T(1)), tiny));
  }
};

struct SquaredHinge : SignMarginLoss {
  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval(const Params<typename Traits<V>::T>& p, V f, V t, V, V& l, V& g,
                             V& h) {
    using T = typename Traits<V>::T;
    V y = sign_label(t);
    V z = p.margin - y * f;
    V zp = max_nan1(z, V{});
    if constexpr (VAL) l = zp * zp;
    if constexpr (GRAD) g = T(-2) * y * zp;
    if constexpr (HESS) h = select(z != z, z, select(z > V{}, set1<V>(T(2)), V{}));
  }
  template <class V>
  static FL_INLINE V fisher_hess(const Params<typename Traits<V>::T>& p, V f, V t, V a) {
    V l, g, h;
    eval<false, false, true>(p, f, t, a, l, g, h);
    return h;
  }
};
