// sigmoid_power_cross_entropy(logits z, target t; n): the p^n trick.
//
// Binary cross-entropy on P = p^n, p = sigmoid(z), n > 0:
//   l = -t log P - (1 - t) log(1 - P)
// computed in log space: with y = softplus(-z) = -log p and A = n y = -log P >= 0,
//   l = t A - (1 - t) log1mexp(A),   log1mexp(A) = log(1 - exp(-A))
// (Maechler, "Accurately Computing log(1 - exp(-|a|))", 2012: log(-expm1(-A)) for
// A <= ln 2, log1p(-exp(-A)) above). One Cody-Waite reduction of -A gives both exp(-A) and
// expm1(-A), and one division serves the log's series and 1 / (1 - P) below.
// Derivatives w.r.t. z, with s = sigmoid(z), s' = 1 - s, rho = P / (1 - P) and g = s' rho
// (bounded: g -> 1/n as z -> +inf, g -> 0 as z -> -inf):
//   dA/dz = -n s',  d rho/dA = -rho (1 + rho)
//   l'  = n [(1 - t) g - t s']
//   l'' = n [(1 - t) g (n (s' + g) - s) + t s s']
// where n (s' + g) - s = N / (1 - P), N = n - (n + 1) e^-y + e^-(n+1)y
//   = E((n + 1) y) - (n + 1) E(y),  E(u) = e^-u - 1 + u  (vexp_m1_plus, series near 0).
// N(0) = 0 and N'(y) = (n + 1)(e^-y - e^-(n+1)y) >= 0, so l'' >= 0: the loss is convex.
// For n = 1 these are s - t and s s' (binary cross-entropy). "fisher" is the Fisher
// information of the
// Bernoulli(P) model, P'^2 / (P (1 - P)) = n^2 s' g >= 0 (the expected Hessian under
// t ~ Bernoulli(P)).
// Where y < eps / (n + 1) (z above about 16 in float32, 37 in float64) the first-order
// forms are exact to rounding and are used instead, so that the value stays finite when
// exp(-z) underflows: log(1 - P) = log(n) - z, g = 1/n and N / (1 - P) = (n + 1) y / 2.
//
// n = 2 (the default) and integer n in [3, kMaxIntN] take polynomial forms in s instead
// (P = s^n, 1 - P = s' (1 + s + ... + s^(n-1)); see eval_logistic): no second exp.
//
// from_logits = false: the first argument is p itself, a probability q clipped to
// [clip, 1 - clip]; with A = -n log q, P = q^n = exp(-A), log(1 - P) = log1mexp(A) as above
// and iD = 1 / (1 - P):
//   l = t A - (1 - t) log(1 - P)
//   dl/dq   = (n / q) [(1 - t) P iD - t]
//   d2l/dq2 = (n / q^2) [t + (1 - t) P iD ((n - 1) + n P iD)]
// (negative where n < 1 and P is small: the loss is not convex in q then), and "fisher",
// the Fisher information of Bernoulli(P) in q, n^2 P iD / q^2.
//
// Parameters: [0] n, [1] log(n), [2] eps / (n + 1), [3] from_logits (1 or 0), [4] clip.
struct SigmoidPowerCrossEntropy : ElementwiseLoss {
  static constexpr int n_params = 5;
  static constexpr bool checks_target = true;  // targets are probabilities: [0, 1]
  template <class V>
  static FL_INLINE typename Traits<V>::VI target_outside(V t) {
    return (t < V{}) | (t > typename Traits<V>::T(1));
  }
  // Integer n up to this take the polynomial forms below (no second exp, no log1mexp pass).
  static constexpr int kMaxIntN = 8;
  template <class T> struct Params {
    T n, n1, inv_n, log_n, y_small, clip;
    int ni;    // n when it is an integer in [3, kMaxIntN], else 0
    bool two;  // n = 2 (the default): the closed forms below
    bool intn;  // ni != 0
    bool from_logits;
    explicit Params(const double* p)
        : n(static_cast<T>(p[0])), n1(static_cast<T>(p[0] + 1.0)),
          inv_n(static_cast<T>(1.0 / p[0])),
          log_n(static_cast<T>(p[1])), y_small(static_cast<T>(p[2])), clip(static_cast<T>(p[4])),
          ni(p[0] >= 3.0 && p[0] <= kMaxIntN && p[0] == static_cast<double>(static_cast<int>(p[0]))
                 ? static_cast<int>(p[0])
                 : 0),
          two(p[0] == 2.0), intn(ni != 0), from_logits(p[3] != 0.0) {}
  };
  // 0: any n, 1: n = 2, 2: integer n in [3, kMaxIntN] (logits); 3: probabilities, any n
  static constexpr int n_split = 4;
  template <class P>
  static FL_INLINE int split(const P& p) {
    return !p.from_logits ? 3 : p.two ? 1 : (p.intn ? 2 : 0);
  }
  template <class P>
  static FL_INLINE void set_split(P& p, int k) {
    p.two = k == 1;
    p.intn = k == 2;
    p.from_logits = k != 3;
  }

  // For A >= 0: P = exp(-A), L1 = log(1 - P) and iD = 1 / (1 - P), with 1 - P accurate in both
  // of Maechler's ranges. One reduction A = -(k ln2 + r), one polynomial, one division.
  template <class V>
  static FL_INLINE void log1mexp(V A, V& P, V& L1, V& iD) {
    using Tr = Traits<V>;
    using T = typename Tr::T;
    using VI = typename Tr::VI;
    using C = MathConst<T>;
    V D;
    vexp_neg_1m(A, P, D);
    const auto small = A <= C::ln2;
    // log D: D = 2^e m, m in [sqrt(1/2), sqrt(2)), log m = 2 atanh((m - 1)/(m + 1)); for
    // P < 1 - sqrt(1/2) straight from P: log1p(-P) = 2 atanh(-P / (2 - P)).
    const auto near = (~small) & (P < T(1) - T(1) / C::sqrt2);
    const VI di = bits(select(D > C::min_normal, D, set1<V>(T(1))));
    VI e = ((di >> Tr::mant_bits) & Tr::exp_mask) - Tr::exp_bias;
    V m = from_bits<V>((di & Tr::mant_mask) | Tr::one_bits);
    const VI hi = m > C::sqrt2;
    m = select(hi, m * T(0.5), m);
    e = (e - hi) & ~near;
    const V num = select(near, -P, m - T(1));
    const V den = select(near, T(2) - P, m + T(1));
    const V d = T(1) / (den * D);
    iD = den * d;
    const V ef = small_int_to_float<V>(e);
    L1 = ef * C::ln2_hi + (ef * C::ln2_lo + atanh2_series(num * D * d));
  }

  static constexpr bool logistic_pre = true;
  template <class P>
  static FL_INLINE bool logistic_on(const P& p) {
    return p.from_logits;
  }

  // General n: log1mexp(n y) in a stage of its own: x = {P, log(1 - P), 1 / (1 - P)}.
  static constexpr int n_pre2 = 3;
  template <class P>
  static FL_INLINE bool pre2_on(const P& p) {
    return !p.two && !p.intn;
  }
  template <class V>
  static FL_INLINE void pre2(const Params<typename Traits<V>::T>& p, V z, Logistic<V>& lg) {
    const V y = select(z < V{}, -z, V{}) + lg.l1;  // softplus(-z)
    log1mexp(p.n * y, lg.x[0], lg.x[1], lg.x[2]);
  }

  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval(const Params<typename Traits<V>::T>& p, V z, V t, V aux, V& l, V& g,
                             V& h) {
    if (!p.from_logits) {
      eval_prob<VAL, GRAD, HESS>(p, z, t, l, g, h);
      return;
    }
    eval_logistic<VAL, GRAD, HESS>(p, z, t, aux, logistic_stages<SigmoidPowerCrossEntropy>(p, z),
                                   l, g, h);
  }

  // Probabilities (from_logits = false): P = q^n through A = -n log q and log1mexp.
  template <class V>
  static FL_INLINE V clipped(const Params<typename Traits<V>::T>& p, V q) {
    using T = typename Traits<V>::T;
    q = select(q < p.clip, set1<V>(p.clip), q);
    return select(q > T(1) - p.clip, set1<V>(T(1) - p.clip), q);
  }
  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval_prob(const Params<typename Traits<V>::T>& p, V q, V t, V& l, V& g,
                                  V& h) {
    using T = typename Traits<V>::T;
    q = clipped(p, q);
    const V A = -(p.n * vlog(q));
    V P, L1, iD;
    log1mexp(A, P, L1, iD);
    const V t1 = T(1) - t;
    const V iq = T(1) / q;
    const V PiD = P * iD;  // P / (1 - P)
    if constexpr (VAL) l = t * A - t1 * L1;
    if constexpr (GRAD) g = (p.n * iq) * (t1 * PiD - t);
    if constexpr (HESS) h = (p.n * (iq * iq)) * (t + t1 * PiD * ((p.n - T(1)) + p.n * PiD));
  }

  // From lg = vlogistic(z).
  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void eval_logistic(const Params<typename Traits<V>::T>& p, V z, V t, V,
                                      const Logistic<V>& lg, V& l, V& g, V& h) {
    using T = typename Traits<V>::T;
    auto neg = z < V{};
    const V er = lg.e * lg.r;
    const V s = select(neg, er, lg.r);
    const V sn = select(neg, lg.r, er);
    const V y = select(neg, -z, V{}) + lg.l1;  // softplus(-z) = -log p
    const V t1 = T(1) - t;
    if (p.two) {
      // n = 2: P = s^2 and 1 - P = s' (1 + s), so that no second exp is needed:
      //   log(1 - P) = log1p(-P) = 2 atanh(-P / (2 - P))       for P < 1 - sqrt(1/2),
      //              = -softplus(z) + log1p(s)                 above (s > 0.54, no cancellation),
      //   log1p(s) = ln 2 + 2 atanh((s - 1) / (s + 3)) = ln 2 + 2 atanh(-s' / (s + 3));
      //   g = s' P / (1 - P) = s^2 / (1 + s),   n (s' + g) - s = s' (2 + s) / (1 + s).
      // One division gives both 1 / (1 + s) and the atanh argument.
      using C = MathConst<T>;
      const V P = s * s;
      const auto near = P < T(1) - T(1) / C::sqrt2;
      const V num = select(near, -P, -sn);
      const V den = select(near, T(2) - P, s + T(3));
      const V s1 = s + T(1);
      const V d = recip_bounded(den * s1);  // den in [1, 4], s1 in [1, 2]
      const V is1 = den * d;  // 1 / (1 + s)
      const V at = atanh2_series(num * s1 * d);
      const V sp_pos = select(neg, V{}, z) + lg.l1;  // softplus(z)
      const V L1 = select(near, at, (at + C::ln2) - sp_pos);
      const V gr = s * s * is1;
      if constexpr (VAL) l = T(2) * (t * y) - t1 * L1;
      if constexpr (GRAD) g = T(2) * (t1 * gr - t * sn);
      if constexpr (HESS) h = T(2) * (t1 * gr * (sn * (s + T(2)) * is1) + t * s * sn);
      return;
    }
    if (p.intn) {
      // Integer n in [3, kMaxIntN]: P = s^n and 1 - P = s' Q, Q = 1 + s + ... + s^(n-1) in
      // [1, n], so that, as for n = 2, no second exp is needed:
      //   log(1 - P) = log1p(-P) = 2 atanh(-P / (2 - P))   for P < 1 - sqrt(1/2),
      //              = -softplus(z) + log Q                  above (Q = 2^e m as in vlog),
      //   g = s' P / (1 - P) = P / Q,
      //   n (s' + g) - s = (n - s Q) / Q = s' R / Q,  R = sum_(j < n) (n - j) s^j
      // (n - s Q = sum_(k = 1..n) (1 - s^k), each term s' times a polynomial: no cancellation
      // where s' vanishes). One division gives both 1 / Q and the atanh argument.
      using Tr = Traits<V>;
      using VI = typename Tr::VI;
      using C = MathConst<T>;
      V Q = set1<V>(T(1)), P = s, R = set1<V>(T(1));
      for (int k = 1; k < p.ni; ++k) {
        Q = Q * s + T(1);
        P = P * s;
        R = R * s + static_cast<T>(k + 1);
      }
      const auto near = P < T(1) - T(1) / C::sqrt2;
      const VI qi = bits(Q);
      VI e = ((qi >> Tr::mant_bits) & Tr::exp_mask) - Tr::exp_bias;
      V m = from_bits<V>((qi & Tr::mant_mask) | Tr::one_bits);  // [1, 2)
      const VI hi = m > C::sqrt2;
      m = select(hi, m * T(0.5), m);
      e = e - hi;
      const V num = select(near, -P, m - T(1));
      const V den = select(near, T(2) - P, m + T(1));
      const V d = recip_bounded(den * Q);  // den in [1, 4], Q in [1, n]
      const V iQ = den * d;  // 1 / Q
      const V at = atanh2_series(num * Q * d);
      const V ef = small_int_to_float<V>(e);
      const V sp_pos = select(neg, V{}, z) + lg.l1;  // softplus(z)
      const V L1 = select(near, at, (ef * C::ln2_hi + (ef * C::ln2_lo + at)) - sp_pos);
      const V gr = P * iQ;
      if constexpr (VAL) l = t * (p.n * y) - t1 * L1;
      if constexpr (GRAD) g = p.n * (t1 * gr - t * sn);
      if constexpr (HESS) h = p.n * (t1 * gr * (sn * R * iQ) + t * s * sn);
      return;
    }
    const V A = p.n * y;
    const V P = lg.x[0], L1 = lg.x[1], iD = lg.x[2];  // log1mexp(A), from pre2
    const auto tiny = y < p.y_small;
    const V gr = select(tiny, set1<V>(p.inv_n), sn * P * iD);
    if constexpr (VAL) l = t * A - t1 * select(tiny, p.log_n - z, L1);
    if constexpr (GRAD) g = p.n * (t1 * gr - t * sn);
    if constexpr (HESS) {
      // n (s' + g) - s = N / (1 - P) with N = E((n + 1) y) - (n + 1) E(y) >= 0 (see above):
      // no cancellation where s' and 1 - P vanish together (large z).
      const V N = vexp_m1_plus(p.n1 * y) - p.n1 * vexp_m1_plus(y);
      const V Dn = select(tiny, T(0.5) * p.n1 * y, N * iD);
      h = p.n * (t1 * gr * Dn + t * s * sn);
    }
  }

  template <class V>
  static FL_INLINE V fisher_hess(const Params<typename Traits<V>::T>& p, V z, V, V) {
    if (!p.from_logits) {
      const V q = clipped(p, z);
      V P, L1, iD;
      log1mexp(-(p.n * vlog(q)), P, L1, iD);
      const V iq = typename Traits<V>::T(1) / q;
      return (p.n * p.n) * (P * iD) * (iq * iq);
    }
    V e, r, l1;
    vlogistic(z, e, r, l1);
    auto neg = z < V{};
    const V sn = select(neg, r, e * r);
    const V y = select(neg, -z, V{}) + l1;
    V P, L1, iD;
    log1mexp(p.n * y, P, L1, iD);
    const V gr = select(y < p.y_small, set1<V>(p.inv_n), sn * P * iD);
    return (p.n * p.n) * sn * gr;
  }
};
