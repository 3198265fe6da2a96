// sigmoid_cross_entropy(logits z, target t; pos_weight P, class_weight, label_smoothing,
//                       from_logits, log_base)
//
// Binary / multi-label cross-entropy, elementwise. Smoothed target t' = t (1 - eps) + eps/2
// (Keras' binary convention: towards 1/2). With sigma = sigmoid(z), sp = softplus:
//   l       = P t' sp(-z) + (1 - t') sp(z)        (PyTorch's BCEWithLogits with pos_weight)
//   dl/dz   = -P t' sigma(-z) + (1 - t') sigma(z) (= sigma - t' when P = 1)
//   d2l/dz2 = (P t' + 1 - t') sigma(z) sigma(-z)   (never negative)
// Both sigmoids and both softplus terms come from one e = exp(-|z|) <= 1 and one division
// (vlogistic): sigma(|z|) = 1/(1+e), sigma(-|z|) = e/(1+e), sp(+-z) = max(+-z, 0) + log1p(e),
// so the tails keep their relative accuracy (z = 30, t = 1: the gradient is -sigma(-30),
// not a difference of two numbers near 1) and logits of +-1e4 give finite results.
//
// from_logits = false: z is a probability q, clipped to [clip, 1 - clip]:
//   l = -(P t' log q + (1 - t') log(1 - q)),  dl/dq = -P t'/q + (1 - t')/(1 - q),
//   d2l/dq2 = P t'/q^2 + (1 - t')/(1 - q)^2   (evaluated at the clipped q).
//
// class_weight [w_neg, w_pos] is a weight factor w_neg (1 - t) + w_pos t (the class weight of
// the sample for hard targets, interpolated for soft ones): it multiplies value, gradient and
// Hessian and enters the mean's denominator. Everything is divided by ln(log_base).
//
// aux: pos_weight P (broadcast per element). Parameters: [0] w_neg, [1] w_pos,
// [2] label_smoothing, [3] from_logits (1 or 0), [4] clip, [5] 1 / ln(log_base), [6] 1 when
// P is 1 everywhere (pos_weight None or the scalar 1).
//
// The plain case (P = 1, no class weights, eps = 0, natural log: the defaults) runs in a
// loop of its own (split) without the pos_weight loads, the smoothing, the weight factor and
// the log-base products: the same bits, since each of them is then an exact identity
// (t (1 - 0) + 0 = t, 1 x = x), in fewer instructions.
struct SigmoidCrossEntropy : ElementwiseLoss {
  static constexpr int n_params = 7;
  static constexpr bool has_aux = true;
  static constexpr bool has_weight_factor = true;
  static constexpr bool checks_target = true;  // targets are probabilities: [0, 1]
  template <class V>
  static FL_INLINE typename Traits<V>::VI target_outside(V t) {
    return (t < V{}) | (t > typename Traits<V>::T(1));
  }
  template <class T> struct Params {
    T w_neg, w_pos, eps, clip, scale;
    bool from_logits;
    bool plain_ok;  // the parameters are the plain case's
    bool plain;     // fixed by set_split
    explicit Params(const double* p)
        : w_neg(static_cast<T>(p[0])), w_pos(static_cast<T>(p[1])), eps(static_cast<T>(p[2])),
          clip(static_cast<T>(p[4])), scale(static_cast<T>(p[5])), from_logits(p[3] != 0.0),
          plain_ok(p[6] != 0.0 && p[0] == 1.0 && p[1] == 1.0 && p[2] == 0.0 &&
                   static_cast<T>(p[5]) == T(1)),
          plain(false) {}
  };
  static constexpr int n_split = 4;  // from_logits + 2 plain
  template <class P>
  static FL_INLINE int split(const P& p) {
    return (p.from_logits ? 1 : 0) + (p.plain_ok ? 2 : 0);
  }
  template <class P>
  static FL_INLINE void set_split(P& p, int k) {
    p.from_logits = (k & 1) != 0;
    p.plain = (k & 2) != 0;
  }
  template <class P>
  static FL_INLINE bool aux_on(const P& p) {
    return !p.plain;
  }
  template <class P>
  static FL_INLINE bool weight_factor_on(const P& p) {
    return !p.plain;
  }
  // The weights of the positive and the negative term: P t' and 1 - t'.
  template <class P, class V>
  static FL_INLINE void term_weights(const P& p, V t, V pw, V& a, V& b) {
    using T = typename Traits<V>::T;
    if (p.plain) {
      a = t;
      b = T(1) - t;
    } else {
      const V ts = t * (T(1) - p.eps) + T(0.5) * p.eps;
      a = pw * ts;
      b = T(1) - ts;
    }
  }
  template <class P, class V>
  static FL_INLINE V scaled(const P& p, V x) {
    return p.plain ? x : x * p.scale;
  }

  template <class P, class V>
  static FL_INLINE V weight_factor(const P& p, V t) {
    return set1<V>(p.w_neg) + (p.w_pos - p.w_neg) * t;
  }

  static constexpr bool logistic_pre = true;
  template <class P>
  static FL_INLINE bool logistic_on(const P& p) {
    return p.from_logits;
  }

  // Logits, from lg = vlogistic(z).
  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval_logistic(const Params<typename Traits<V>::T>& p, V z, V t, V pw,
                                      const Logistic<V>& lg, V& l, V& g, V& h) {
    V a, b;
    term_weights(p, t, pw, a, b);
    auto neg = z < V{};
    const V er = lg.e * lg.r;
    V sig_pos = select(neg, er, lg.r);  // sigma(z)
    V sig_neg = select(neg, lg.r, er);  // sigma(-z)
    if constexpr (VAL) {
      V sp_pos = select(neg, V{}, z) + lg.l1;   // softplus(z)
      V sp_neg = select(neg, -z, V{}) + lg.l1;  // softplus(-z)
      l = scaled(p, a * sp_neg + b * sp_pos);
    }
    if constexpr (GRAD) g = scaled(p, b * sig_pos - a * sig_neg);
    if constexpr (HESS) h = scaled(p, (a + b) * (sig_pos * sig_neg));
  }

  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval(const Params<typename Traits<V>::T>& p, V z, V t, V pw, V& l, V& g,
                             V& h) {
    using T = typename Traits<V>::T;
    if (p.from_logits) {
      eval_logistic<VAL, GRAD, HESS>(p, z, t, pw, vlogistic(z), l, g, h);
    } else {
      V a, b;
      term_weights(p, t, pw, a, b);
      V q = select(z < p.clip, set1<V>(p.clip), z);
      q = select(q > T(1) - p.clip, set1<V>(T(1) - p.clip), q);
      V iq = T(1) / q;
      V iq1 = T(1) / (T(1) - q);
      // One product of each sum pinned (simd.hpp): the same contraction in every
      // specialisation (the default parameters' loop and the general one give the same bits).
      if constexpr (VAL) l = scaled(p, -(a * vlog(q) + pinned(b * vlog1p(-q))));
      if constexpr (GRAD) g = scaled(p, b * iq1 - pinned(a * iq));
      if constexpr (HESS) h = scaled(p, a * iq * iq + pinned(b * iq1 * iq1));
    }
  }
  // Fisher (expected) Hessian: the exact one with t replaced by its expectation under the
  // model, t ~ Bernoulli(sigma(z)) (or Bernoulli(q) for probabilities). For logits and
  // pos_weight 1 this is the exact Hessian; for probabilities it is P/q + 1/(1-q) (eps = 0).
  template <class V>
  static FL_INLINE V fisher_hess(const Params<typename Traits<V>::T>& p, V z, V t, V pw) {
    using T = typename Traits<V>::T;
    V q;
    if (p.from_logits) {
      q = vsigmoid(z);
    } else {
      q = select(z < p.clip, set1<V>(p.clip), z);
      q = select(q > T(1) - p.clip, set1<V>(T(1) - p.clip), q);
    }
    V l, g, h;
    eval<false, false, true>(p, z, q, pw, l, g, h);
    // It does not read the target; in the plain loop a NaN target still makes it NaN, as the
    // weight factor (w_neg + (w_pos - w_neg) t) that the general loop applies does.
    return p.plain ? select(t == t, h, t) : h;
  }
};
