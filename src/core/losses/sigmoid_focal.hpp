// sigmoid_focal(logits z, target t; gamma, alpha, from_logits)
//
// Focal loss (Lin et al., "Focal Loss for Dense Object Detection", 2017), elementwise, in
// torchvision's form extended to soft targets t in [0, 1]. With s = sigmoid(z),
// s' = sigmoid(-z) = 1 - s, v = s s':
//   ce  = t softplus(-z) + (1 - t) softplus(z)      (binary cross-entropy)
//   q   = 1 - p_t = t s' + (1 - t) s                (p_t = s t + (1 - s)(1 - t))
//   a   = alpha t + (1 - alpha)(1 - t)               (1 when alpha is off)
//   l   = a ce m,   m = q^gamma
// Derivatives w.r.t. z: ce' = s - t = (1 - t) s - t s', ce'' = v; q' = (1 - 2t) v,
// q'' = (1 - 2t) v (1 - 2s). With u = v / q (= s for t = 1, s' for t = 0: bounded),
//   m'  = gamma (1 - 2t) u m
//   m'' = m [gamma (gamma - 1) (1 - 2t)^2 u^2 + gamma (1 - 2t)(1 - 2s) u]
//   l'  = a (ce' m + ce m'),   l'' = a (v m + 2 ce' m' + ce m'').
// Written through u and m, no power of q with a negative exponent appears, so gamma < 1 gives
// no NaN where p_t -> 1 (q underflows to 0: m = 0, u = its limit t s + (1 - t) s'). q is a
// sum of non-negative terms (no cancellation), and s, s', softplus(+-z) come from one
// exp(-|z|) (vlogistic), so logits of +-1e4 give finite results. gamma = 0 is the
// cross-entropy (times a); gamma = 2 (the paper's choice) runs without log/exp of q.
//
// from_logits = false: z is a probability p, clipped to [clip, 1 - clip]:
//   ce = -t log p - (1 - t) log(1 - p), ce' = -t/p + (1 - t)/(1 - p), ce'' = t/p^2 + (1-t)/(1-p)^2
//   q = t (1 - p) + (1 - t) p >= clip, q' = 1 - 2t, q'' = 0,
//   m' = gamma q^(gamma-1) q',  m'' = gamma (gamma - 1) q^(gamma-2) q'^2.
//
// The exact Hessian can be negative (for gamma > 0, where the modulating factor bends the
// loss down: see docs/losses.md); "fisher" is its expectation under t ~ Bernoulli(s) (or
// Bernoulli(p)): s l''(t = 1) + (1 - s) l''(t = 0).
//
// Parameters: [0] gamma, [1] alpha (< 0: off), [2] from_logits (1 or 0), [3] clip.
struct SigmoidFocal : ElementwiseLoss {
  static constexpr int n_params = 4;
  static constexpr bool checks_target = true;  // targets are probabilities: [0, 1]
  template <class V>
  static FL_INLINE typename Traits<V>::VI target_outside(V t) {
    return (t < V{}) | (t > typename Traits<V>::T(1));
  }
  template <class T> struct Params {
    T gamma, alpha, clip;
    int kind;  // 0: gamma = 0, 2: gamma = 2, 1: any other gamma
    bool alpha_on, from_logits;
    explicit Params(const double* p)
        : gamma(static_cast<T>(p[0])), alpha(static_cast<T>(p[1])), clip(static_cast<T>(p[3])),
          kind(p[0] == 0.0 ? 0 : (p[0] == 2.0 ? 2 : 1)), alpha_on(p[1] >= 0.0),
          from_logits(p[2] != 0.0) {}
  };
  static constexpr int n_split = 4;  // from_logits, gamma = 2
  template <class P>
  static FL_INLINE int split(const P& p) {
    return (p.from_logits ? 1 : 0) + (p.kind == 2 ? 2 : 0);
  }
  template <class P>
  static FL_INLINE void set_split(P& p, int k) {
    p.from_logits = (k & 1) != 0;
    if (k & 2) p.kind = 2;  // (otherwise kind stays 0 or 1, decided per vector)
  }

  static constexpr bool logistic_pre = true;
  template <class P>
  static FL_INLINE bool logistic_on(const P& p) {
    return p.from_logits;
  }

  // l = a ce m and its derivatives from the pieces (a: the alpha factor).
  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void combine(V a, V ce, V ce1, V ce2, V m, V m1, V m2, V& l, V& g, V& h) {
    using T = typename Traits<V>::T;
    if constexpr (VAL) l = a * ce * m;
    if constexpr (GRAD) g = a * (ce1 * m + ce * m1);
    if constexpr (HESS) h = a * (ce2 * m + T(2) * ce1 * m1 + ce * m2);
  }
  template <class V>
  static FL_INLINE V alpha_factor(const Params<typename Traits<V>::T>& p, V t) {
    using T = typename Traits<V>::T;
    return p.alpha_on ? (T(1) - p.alpha) + (T(2) * p.alpha - T(1)) * t : set1<V>(T(1));
  }

  // Logits, from lg = vlogistic(z).
  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval_logistic(const Params<typename Traits<V>::T>& p, V z, V t, V,
                                      const Logistic<V>& lg, V& l, V& g, V& h) {
    using T = typename Traits<V>::T;
    const V dq = T(1) - T(2) * t;  // q' / v
    V m, m1, m2;
    auto neg = z < V{};
    const V er = lg.e * lg.r;
    const V s = select(neg, er, lg.r);   // sigma(z)
    const V sn = select(neg, lg.r, er);  // sigma(-z)
    const V v = s * sn;
    const V t1 = T(1) - t;
    // ce = t softplus(-z) + (1 - t) softplus(z) = l1 + (z < 0 ? -t z : (1 - t) z): one
    // product of two non-negative factors onto l1 (no cancellation).
    const V ce = select(neg, -t, t1) * z + lg.l1;
    const V ce1 = t1 * s - t * sn;
    const V q = t * sn + t1 * s;
    if (p.kind == 0) {
      m = set1<V>(T(1));
      m1 = V{};
      m2 = V{};
    } else if (p.kind == 2) {
      const V qd = dq * v;  // q'
      m = q * q;
      m1 = T(2) * q * qd;
      m2 = T(2) * (qd * qd + q * qd * (sn - s));
    } else {
      auto pos = q > V{};
      const V u = select(pos, v / select(pos, q, set1<V>(T(1))), t * s + t1 * sn);
      m = vexp_neg(p.gamma * vlog(q));  // argument <= 0: q <= 1, gamma > 0
      const V gu = (p.gamma * dq) * u;
      m1 = gu * m;
      m2 = m * (gu * ((p.gamma - T(1)) * dq * u + (sn - s)));
    }
    combine<VAL, GRAD, HESS>(alpha_factor(p, t), ce, ce1, v, m, m1, m2, l, g, h);
  }

  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval(const Params<typename Traits<V>::T>& p, V z, V t, V aux, V& l, V& g,
                             V& h) {
    using T = typename Traits<V>::T;
    if (p.from_logits) {
      eval_logistic<VAL, GRAD, HESS>(p, z, t, aux, vlogistic(z), l, g, h);
      return;
    }
    const V dq = T(1) - T(2) * t;  // q'
    V m, m1, m2;
    V x = select(z < p.clip, set1<V>(p.clip), z);
    x = select(x > T(1) - p.clip, set1<V>(T(1) - p.clip), x);
    const V t1 = T(1) - t;
    const V ix = T(1) / x, ix1 = T(1) / (T(1) - x);
    const V ce = -(t * vlog(x) + t1 * vlog1p(-x));
    const V ce1 = t1 * ix1 - t * ix;
    const V ce2 = t * ix * ix + t1 * ix1 * ix1;
    const V q = t * (T(1) - x) + t1 * x;
    if (p.kind == 0) {
      m = set1<V>(T(1));
      m1 = V{};
      m2 = V{};
    } else if (p.kind == 2) {
      m = q * q;
      m1 = T(2) * q * dq;
      m2 = T(2) * dq * dq;
    } else {
      m = vexp_neg(p.gamma * vlog(q));  // argument <= 0: q <= 1, gamma > 0
      const V gq = p.gamma * dq / q;  // gamma q' / q
      m1 = gq * m;
      m2 = m * (gq * ((p.gamma - T(1)) * dq / q));
    }
    combine<VAL, GRAD, HESS>(alpha_factor(p, t), ce, ce1, ce2, m, m1, m2, l, g, h);
  }

  template <class V>
  static FL_INLINE V fisher_hess(const Params<typename Traits<V>::T>& p, V z, V, V aux) {
    using T = typename Traits<V>::T;
    V q;
    if (p.from_logits) {
      q = vsigmoid(z);
    } else {
      q = select(z < p.clip, set1<V>(p.clip), z);
      q = select(q > T(1) - p.clip, set1<V>(T(1) - p.clip), q);
    }
    V l, g, h1, h0;
    eval<false, false, true>(p, z, set1<V>(T(1)), aux, l, g, h1);
    eval<false, false, true>(p, z, V{}, aux, l, g, h0);
    return q * h1 + (T(1) - q) * h0;
  }
};
