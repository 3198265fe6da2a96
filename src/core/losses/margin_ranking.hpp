// margin_ranking(x1, x2, y; margin m) — PyTorch's MarginRankingLoss, elementwise.
//
// Labels y in {-1, +1} (or {0, 1}, 0 read as -1, as the hinge losses). With d = x1 - x2 and
// z = m - y d:
//   l = max(0, z),   dl/dx1 = -y [z > 0] = -dl/dx2,   d2l/dx1^2 = d2l/dx2^2 = 0.
// At the kink z = 0 the subgradient is 0 (as PyTorch's clamp_min gives).
// The elementwise driver's operands: pred = x1, target = y, aux = x2. The second gradient
// dl/dx2 = -dl/dx1 comes out of the Hessian slot when parameter [1] is set, so that one pass
// writes both gradients (the Python entry asks for it with the "exact" policy, which leaves
// the slot's values unchanged); otherwise the slot holds the Hessian, 0.
// Parameters: [0] margin m, [1] 1: Hessian slot = dl/dx2.
struct MarginRanking : ElementwiseLoss {
  static constexpr int n_params = 2;
  static constexpr bool has_aux = true;
  static constexpr bool aux_is_input = true;  // x2 is data: NaN there is a missing value
  static constexpr bool checks_target = true;
  static constexpr int target_domain = kDomainSign;
  template <class V>
  static FL_INLINE typename Traits<V>::VI target_outside(V t) {
    return sign_label_outside(t);
  }
  template <class T> struct Params {
    T margin;
    bool second_grad;
    explicit Params(const double* p) : margin(static_cast<T>(p[0])), second_grad(p[1] != 0.0) {}
  };
  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval(const Params<typename Traits<V>::T>& p, V x1, V t, V x2, V& l, V& g,
                             V& h) {
    V y = sign_label(t);
    V z = p.margin - y * (x1 - x2);
    auto nan = z != z;
    if constexpr (VAL) l = max_nan1(z, V{});
    const auto act = z > V{};
    if constexpr (GRAD) g = select(nan, z, select(act, -y, V{}));
    // -dl/dx1 without turning its zeros into -0.
    if constexpr (HESS) h = select(nan, z, p.second_grad ? select(act, y, V{}) : V{});
  }
  template <class V>
  static FL_INLINE V fisher_hess(const Params<typename Traits<V>::T>& p, V f, V t, V a) {
    V l, g, h;
    eval<false, false, true>(p, f, t, a, l, g, h);
    return h;
  }
};
