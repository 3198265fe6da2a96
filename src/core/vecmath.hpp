// fastloss — vectorised elementary functions over SIMD lanes (float32 and float64).
//
// Included from kernels.inl inside one ISA namespace (see simd.hpp); includes nothing.
//
// Accuracy (measured over the full input range by tests/test_vecmath.py; the figures are
// in docs/design.md, "Vector math"): exp, log within 2 ulp; log1p, expm1 within 3 ulp;
// softplus, sigmoid, log_sigmoid within 4 ulp. Subnormal inputs and outputs, +-0, +-inf and
// NaN follow C99 Annex F (exp(-inf) = 0, log(0) = -inf, log(x < 0) = NaN, expm1(-inf) = -1).
//
// Methods (textbook facts, no borrowed code):
//  * exp/expm1: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, with ln2 split in a
//    high part exact in n * ln2_hi (fdlibm's split for float64; the 0.693359375 split for
//    float32); then for float64 the Taylor series of expm1(r) = sum r^k / k!, truncated where
//    the next term is below 2^-60 relative (degree 13), for float32 a degree-6 polynomial
//    with minimax relative error (fitted here, see exp_tail);
//    exp's polynomial by Horner's rule down to its constant 1 (exp_reduced), expm1's as
//    r + r^2 (...) (expm1_reduced). 2^n is applied in two halves so that subnormal results
//    are formed by one rounding.
//  * log: x = m 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(f), f = (m-1)/(m+1),
//    |f| <= 0.1716, the atanh series sum f^(2k+1)/(2k+1) truncated below 2^-55 (float64,
//    9 terms after f), or for float32 three terms after f with minimax coefficients (fitted
//    here, see atanh2_series). Subnormal x is scaled by 2^mant_bits.
//  * log1p: 2 atanh(x / (2 + x)) for 1 + x in [sqrt(1/2), sqrt(2)] (the same series as log,
//    with no rounding of 1 + x); elsewhere log(u) + (x - (u - 1)) / u, u = 1 + x, where the
//    second term corrects the rounding of u (the classical correction, as in fdlibm's log1p);
//    one division per vector.
//  * expm1: 2^n expm1(r) + (2^n - 1) for moderate n, exp(x) for large x.
//  * softplus(x) = max(x, 0) + log1p(exp(-|x|)), the log1p on [0, 1] by a short form
//    (vlog1p_unit); sigmoid from e = exp(-|x|);
//    log_sigmoid(x) = -softplus(-x).

template <class T> struct MathConst;
template <> struct MathConst<float> {
  static constexpr float log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 0.693359375f;
  static constexpr float ln2_lo = -2.12194440e-4f;
  static constexpr float ln2 = 0.693147180559945309f;
  static constexpr float shifter = 12582912.0f;  // 1.5 * 2^23
  static constexpr float exp_hi = 89.0f;          // exp overflows above 88.7228
  static constexpr float exp_lo = -104.0f;        // exp underflows to 0 below -103.9721
  static constexpr float expm1_lo = -30.0f;       // expm1(x) rounds to -1 below about -17.3
  static constexpr int expm1_big_n = 30;          // 2^n - 1 == 2^n in float32 above this
  static constexpr float min_normal = 1.17549435e-38f;
  static constexpr float sqrt2 = 1.41421356237309505f;
  static constexpr float subnormal_scale = 8388608.0f;  // 2^23
};
template <> struct MathConst<double> {
  static constexpr double log2e = 1.44269504088896340736;
  static constexpr double ln2_hi = 6.93147180369123816490e-01;
  static constexpr double ln2_lo = 1.90821492927058770002e-10;
  static constexpr double ln2 = 0.693147180559945309417;
  static constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double exp_hi = 710.0;                // exp overflows above 709.7827
  static constexpr double exp_lo = -746.0;               // exp underflows to 0 below -745.1332
  static constexpr double expm1_lo = -60.0;              // expm1(x) rounds to -1 below about -37.4
  static constexpr int expm1_big_n = 60;
  static constexpr double min_normal = 2.2250738585072014e-308;
  static constexpr double sqrt2 = 1.41421356237309505;
  static constexpr double subnormal_scale = 4503599627370496.0;  // 2^52
};

// The series of exp on the reduced range |r| <= ln2/2, exp(r) = 1 + r + r^2 T(r): T by Horner's
// rule, shared by expm1_reduced and exp_reduced. float64: T is the Taylor series 1/2! + r/3! + ...
// truncated where the next term is below 2^-60 (degree 13 in all). float32: T is a degree-4
// polynomial (degree 6 in all) fitted here to the minimax relative error of expm1 on
// |r| <= 1.001 ln2/2 (Lawson's iteration on 3,000 points against mpmath); with its coefficients
// rounded to float32 the fit is within 0.3 * 2^-24 of expm1 and 0.11 * 2^-24 of exp, relative,
// where the Taylor series would need degree 7 for the same.
FL_INLINE vf exp_tail(vf r) {
  vf p = set1<vf>(0x1.6bebf4p-10f);  // 0.0013882511
  p = p * r + 0x1.1227f8p-7f;         // 0.008366581
  p = p * r + 0x1.555674p-5f;         // 0.0416672
  p = p * r + 0x1.5554b0p-3f;         // 0.16666543
  return p * r + 0x1.fffffep-2f;      // 0.49999997
}
FL_INLINE vd exp_tail(vd r) {
  vd p = set1<vd>(1.0 / 6227020800.0);  // 1/13!
  p = p * r + 1.0 / 479001600.0;         // 1/12!
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  return p * r + 0.5;
}
// expm1 on the reduced range: r + r^2 (1/2! + r/3! + ...).
template <class V> FL_INLINE V expm1_reduced(V r) { return (r * r) * exp_tail(r) + r; }
// exp on the reduced range by Horner's rule down to the constant term: one operation fewer
// than expm1_reduced(r) + 1, the last step one multiply-add onto 1 (a single rounding where
// the ISA has FMA).
template <class V> FL_INLINE V exp_reduced(V r) {
  using T = typename Traits<V>::T;
  return (exp_tail(r) * r + T(1)) * r + T(1);
}

// 2^n for integer lanes n within the normal exponent range.
template <class V> FL_INLINE V pow2i(typename Traits<V>::VI n) {
  using Tr = Traits<V>;
  return from_bits<V>((n + Tr::exp_bias) << Tr::mant_bits);
}
// v * 2^n for |n| <= 2 * (bias - 1): two exact steps, one final rounding.
template <class V> FL_INLINE V ldexp2(V v, typename Traits<V>::VI n) {
  typename Traits<V>::VI h = n >> 1;
  return (v * pow2i<V>(h)) * pow2i<V>(n - h);
}

// Cody-Waite reduction: x = n ln2 + r, with n rounded into the low mantissa bits of
// k = x log2(e) + sh by the shifter sh (1.5 * 2^mant_bits, plus an offset added to n).
template <class V> FL_INLINE V reduce_ln2_shift(V x, typename Traits<V>::T sh, V& k) {
  using C = MathConst<typename Traits<V>::T>;
  k = x * C::log2e + sh;
  V nf = k - sh;
  V r = x - nf * C::ln2_hi;
  return r - nf * C::ln2_lo;
}

// The reduction shared by exp and expm1, with n as integer lanes.
template <class V> FL_INLINE V reduce_ln2(V x, typename Traits<V>::VI& n) {
  using C = MathConst<typename Traits<V>::T>;
  V k;
  V r = reduce_ln2_shift(x, C::shifter, k);
  n = bits(k) - bits(set1<V>(C::shifter));
  return r;
}

template <class V> FL_INLINE V vexp(V x) {
  using T = typename Traits<V>::T;
  using C = MathConst<T>;
  // Clamp (NaN passes through: comparisons with NaN are false). Past the clamps the result
  // overflows to inf or underflows to 0 by itself in ldexp2.
  V xc = select(x > C::exp_hi, set1<V>(C::exp_hi), x);
  xc = select(xc < C::exp_lo, set1<V>(C::exp_lo), xc);
  typename Traits<V>::VI n;
  V r = reduce_ln2(xc, n);
  V p = exp_reduced(r);
  return ldexp2(p, n);
}

// The reduction of reduce_ln2 with B added to the rounding shifter (1.5 * 2^mant_bits + B:
// still exact, and n = k - shifter is unchanged but for which way an exact tie rounds). The low
// bits of k then hold n + B, so that bits(k) << mant_bits is the float 2^(n + B - bias) in one
// shift (the bits above the exponent field fall off), given n + B in [1, 2 bias]. Two integer
// operations fewer than reduce_ln2 followed by pow2i.
template <class V, int B> FL_INLINE V reduce_ln2_pow2(V x, V& pow2) {
  using Tr = Traits<V>;
  using T = typename Tr::T;
  V k;
  V r = reduce_ln2_shift(x, MathConst<T>::shifter + static_cast<T>(B), k);
  pow2 = from_bits<V>((typename Tr::VI)((typename Tr::VU)bits(k) << Tr::mant_bits));
  return r;
}

// 2^-k for 0 <= k < 1000, exactly, at compile time.
template <class T> constexpr T exp2_neg(int k) {
  T v = 1;
  for (int i = 0; i < k; ++i) v *= T(0.5);
  return v;
}

// exp for x <= 0 (NaN passes): no overflow side, so 2^n is applied as 2^(n + L) (normal for
// every n down to the subnormal floor: L = 64 for float32, 600 for float64) times the exact
// 2^-L, one rounding as in vexp, with the same results (subnormals included).
template <class V> FL_INLINE V vexp_neg(V x) {
  using Tr = Traits<V>;
  using T = typename Tr::T;
  using C = MathConst<T>;
  constexpr int kLift = sizeof(T) == 8 ? 600 : 64;
  V xc = select(x < C::exp_lo, set1<V>(C::exp_lo), x);
  V scale;
  V r = reduce_ln2_pow2<V, Tr::exp_bias + kLift>(xc, scale);
  V p = exp_reduced(r);
  return (p * scale) * exp2_neg<T>(kLift);
}

// exp for -(bias - 1) ln2 <= x <= 0 (NaN passes), where 2^n is normal: applied in one step
// (a result just below the smallest normal at the low end is formed by one rounding), no
// clamp. Used by vexp_nonpos, and alone where the range is known (a softmax row whose logits
// span less than exp_nonpos_span).
template <class V> FL_INLINE V vexp_nonpos_normal(V x) {
  V scale;
  V r = reduce_ln2_pow2<V, Traits<V>::exp_bias>(x, scale);
  return exp_reduced(r) * scale;
}
// The span max - min of a row's logits below which every x - max is in vexp_nonpos_normal's
// range (ln 2 inside its bound, for the rounding of the test and of x - max).
template <class T> constexpr double exp_nonpos_span() {
  return static_cast<double>(Traits<typename VecOf<T>::V>::exp_bias - 2) * MathConst<double>::ln2;
}

// exp for x <= 0 (softmax's x - max): no overflow side, and results below the smallest
// normal (x < log(2^-(bias-1)), about -87.3 for float32, -708.4 for float64) flush to 0,
// so 2^n is applied in one step. Within 1 ulp of vexp elsewhere. The same bits on every ISA;
// on AVX-512 without a clamp (below).
template <class V> FL_INLINE V vexp_nonpos(V x) {
  using Tr = Traits<V>;
  using T = typename Tr::T;
  const T lo = -static_cast<T>(Tr::exp_bias - 1) * MathConst<T>::ln2;
#if FASTLOSS_VEC_BYTES == 64 && defined(__AVX512F__) && !defined(__clang__)
  // AVX-512: VSCALEFPS/PD applies 2^n for any n, so no clamp: p * 2^n with one rounding (the
  // same bits as 2^n built from its exponent field below), and the lanes below lo (or -inf)
  // zeroed by the mask of one comparison that is true for NaN (NaN passes).
  {
    constexpr int kNotLessUnordered = 0x15;  // _CMP_NLT_UQ
    constexpr int kCurrentRounding = 4;      // _MM_FROUND_CUR_DIRECTION
    V k;
    const V r = reduce_ln2_shift(x, MathConst<T>::shifter, k);
    const V nf = k - MathConst<T>::shifter;
    const V p = exp_reduced(r);
    if constexpr (sizeof(T) == 4) {
      const auto m = __builtin_ia32_cmpps512_mask(x, set1<V>(lo), kNotLessUnordered,
                                                  static_cast<unsigned short>(0xffff),
                                                  kCurrentRounding);
      return __builtin_ia32_scalefps512_mask(p, nf, V{}, m, kCurrentRounding);
    } else {
      const auto m = __builtin_ia32_cmppd512_mask(x, set1<V>(lo), kNotLessUnordered,
                                                  static_cast<unsigned char>(0xff),
                                                  kCurrentRounding);
      return __builtin_ia32_scalefpd512_mask(p, nf, V{}, m, kCurrentRounding);
    }
  }
#endif
  auto tiny = x < lo;
  return select(tiny, V{}, vexp_nonpos_normal(select(tiny, set1<V>(lo), x)));
}

template <class V> FL_INLINE V vexpm1(V x) {
  using Tr = Traits<V>;
  using T = typename Tr::T;
  using C = MathConst<T>;
  V xc = select(x > C::exp_hi, set1<V>(C::exp_hi), x);
  xc = select(xc < C::expm1_lo, set1<V>(C::expm1_lo), xc);
  typename Tr::VI n;
  V r = reduce_ln2(xc, n);
  V q = expm1_reduced(r);
  // Moderate n: 2^n q + (2^n - 1), with 2^n exact and normal.
  typename Tr::VI big = n > C::expm1_big_n;
  typename Tr::VI ns = (n & ~big) | (iset1<V>(C::expm1_big_n) & big);
  V t = pow2i<V>(ns);
  V small = q * t + (t - T(1));
  V large = ldexp2(q + T(1), n);
  V res = select(big, large, small);
  return select(x == V{}, x, res);  // keep the sign of zero
}

// 2 atanh(f) = log((1 + f) / (1 - f)) for |f| <= 0.1716 (the series of vlog).
template <class V> FL_INLINE V atanh2_series(V f) {
  using T = typename Traits<V>::T;
  V s = f * f;
  V p;
  if constexpr (sizeof(T) == 8) {
    p = set1<V>(T(1.0 / 19));
    p = p * s + T(1.0 / 17);
    p = p * s + T(1.0 / 15);
    p = p * s + T(1.0 / 13);
    p = p * s + T(1.0 / 11);
    p = p * s + T(1.0 / 9);
    p = p * s + T(1.0 / 7);
    p = p * s + T(1.0 / 5);
    p = p * s + T(1.0 / 3);
  } else {
    // A degree-2 polynomial in s for the series' 1/3 + s/5 + s^2/7 + ..., fitted here to the
    // minimax relative error of 2 atanh(f) on |f| <= 1.001 * 0.17157 (as exp_tail's float32
    // fit): within 0.016 * 2^-24 with its coefficients rounded to float32.
    p = set1<V>(0x1.31e7f0p-3f);     // 0.14936817
    p = p * s + 0x1.995e92p-3f;      // 0.19988741
    p = p * s + 0x1.55557ap-2f;      // 0.33333388
  }
  V f2 = f + f;
  return (f2 * s) * p + f2;
}

template <class V> FL_INLINE V vlog(V x) {
  using Tr = Traits<V>;
  using T = typename Tr::T;
  using VI = typename Tr::VI;
  using C = MathConst<T>;
  // Subnormals: scale into the normal range and correct the exponent.
  VI sub = x < C::min_normal;
  V xs = select(sub, x * C::subnormal_scale, x);
  VI eadj = iset1<V>(Tr::mant_bits) & sub;
  VI xi = bits(xs);
  VI e = ((xi >> Tr::mant_bits) & Tr::exp_mask) - Tr::exp_bias - eadj;
  V m = from_bits<V>((xi & Tr::mant_mask) | Tr::one_bits);  // [1, 2)
  VI hi = m > C::sqrt2;
  m = select(hi, m * T(0.5), m);
  e = e - hi;  // hi lanes are -1: e + 1
  V logm = atanh2_series((m - T(1)) / (m + T(1)));
  V ef = small_int_to_float<V>(e);
  V res = ef * C::ln2_hi + (ef * C::ln2_lo + logm);
  const V inf = set1<V>(__builtin_huge_val());
  res = select(x == inf, inf, res);
  res = select(x == V{}, -inf, res);
  res = select(x < V{}, set1<V>(__builtin_nan("")), res);
  return select(x != x, x, res);
}

// log1p: for 1 + x in [sqrt(1/2), sqrt(2)], 2 atanh(x / (2 + x)) straight from x (no rounding
// of 1 + x enters); elsewhere u = 1 + x = m 2^k as in vlog, plus the correction c / u with
// c = x - (u - 1), the rounding error of u. There |log1p(x)| > 0.34 and c / u is below an ulp
// of the result, so 1/m in it is taken from the series variable, 1/m = (1 - f)/(1 + f)
// ~ 1 - 2f + 2f^2 (1% accurate for |f| <= 0.1716): one division in all. Denominators of
// lanes whose result is discarded are replaced so that no spurious FP exception is raised.
template <class V> FL_INLINE V vlog1p(V x) {
  using Tr = Traits<V>;
  using T = typename Tr::T;
  using VI = typename Tr::VI;
  using C = MathConst<T>;
  const V one = set1<V>(T(1));
  const V inf = set1<V>(__builtin_huge_val());
  V u = x + T(1);
  auto near = (x > T(1) / C::sqrt2 - T(1)) & (x < C::sqrt2 - T(1));
  auto finite_pos = (u > V{}) & (u < inf);
  V uc = select(finite_pos, u, one);
  VI ui = bits(uc);
  VI k = ((ui >> Tr::mant_bits) & Tr::exp_mask) - Tr::exp_bias;
  V m = from_bits<V>((ui & Tr::mant_mask) | Tr::one_bits);  // [1, 2)
  VI hi = m > C::sqrt2;
  m = select(hi, m * T(0.5), m);
  k = k - hi;
  V f = select(near, x, m - T(1)) / select(near, x + T(2), m + T(1));
  V s2 = atanh2_series(f);
  V c = select(finite_pos, x - (u - T(1)), V{});
  VI big = k > Tr::exp_bias - 1;  // c = 0 there anyway; keeps 2^-k normal
  VI kc = (big & iset1<V>(Tr::exp_bias - 1)) | (~big & k);
  V corr = c * pow2i<V>(-kc) * ((f + f) * (f - T(1)) + T(1));
  V kf = small_int_to_float<V>(k);
  V far = kf * C::ln2_hi + (s2 + (kf * C::ln2_lo + corr));
  V res = select(near, s2, far);
  res = select(x == inf, inf, res);
  res = select(u == V{}, -inf, res);
  res = select(u < V{}, set1<V>(__builtin_nan("")), res);
  res = select(x != x, x, res);
  return select(x == V{}, x, res);  // keep the sign of zero
}

// log1p(e) for e in [0, 1] (NaN passes), as used with e = exp(-|x|): no exponent extraction
// and no correction division. With u = 1 + e, f = (u - 1)/(u + 1) = e / (2 + e) when
// u <= sqrt 2; otherwise u/2 = m and f = (m - 1)/(m + 1) = (e - 1)/(e + 3), plus ln 2.
// log1p(e) = 2 atanh(f) (+ ln 2), |f| <= 0.1716, the same series as vlog.
template <class V> FL_INLINE V vlog1p_unit(V e) {
  using T = typename Traits<V>::T;
  using C = MathConst<T>;
  auto hi = e > T(C::sqrt2 - 1);
  V num = select(hi, e - T(1), e);
  V den = select(hi, e + T(3), e + T(2));
  V r = atanh2_series(num / den);
  return select(hi, r + C::ln2, r);
}

// log(1 + exp(x)), finite for every finite x.
template <class V> FL_INLINE V vsoftplus(V x) {
  V pos = select(x > V{}, x, V{});
  return pos + vlog1p_unit(vexp_neg(-abs(x)));
}
// sigmoid via e = exp(-|x|) <= 1: 1 / (1 + e) for x >= 0, e / (1 + e) for x < 0, so that the
// negative tail keeps full relative accuracy down to the subnormals.
template <class V> FL_INLINE V vsigmoid(V x) {
  using T = typename Traits<V>::T;
  V e = vexp_neg(-abs(x));
  V r = T(1) / (T(1) + e);
  return select(x < V{}, e * r, r);
}
template <class V> FL_INLINE V vlog_sigmoid(V x) { return -vsoftplus(-x); }

// The pieces of a logistic loss from one exp and one division: for a = |z|,
//   e = exp(-a),  r = 1 / (1 + e) = sigmoid(a),  e r = sigmoid(-a),  l1 = log1p(e),
// so that sigmoid(+-z) and softplus(+-z) = max(+-z, 0) + l1 all follow. The two quotients
// 1/(1+e) and the log1p argument f = n/d (vlog1p_unit's) share the reciprocal of
// (1 + e) d; each comes out within about 2 ulp.
// vlogistic_e is the part after the exp (from e alone), so that a kernel can run the exp
// and the rest in separate passes (see elem_kernel's logistic pre-passes).
template <class V> FL_INLINE void vlogistic_e(V e, V& r, V& l1) {
  using T = typename Traits<V>::T;
  using C = MathConst<T>;
  auto hi = e > T(C::sqrt2 - 1);
  V num = select(hi, e - T(1), e);
  V den = select(hi, e + T(3), e + T(2));
  V one_e = e + T(1);
  V d = recip_bounded(one_e * den);  // one_e in [1, 2], den in [2, 4)
  r = den * d;
  V s = atanh2_series(num * one_e * d);
  l1 = select(hi, s + C::ln2, s);
}
template <class V> FL_INLINE void vlogistic(V z, V& e, V& r, V& l1) {
  e = vexp_neg(-abs(z));
  vlogistic_e(e, r, l1);
}
// The three of them, as a loss's eval_logistic receives them, and room for up to three
// values of the loss's own second stage (its pre2, see losses/base.hpp).
template <class V> struct Logistic {
  V e, r, l1;
  V x[3];
};
template <class V> FL_INLINE Logistic<V> vlogistic(V z) {
  Logistic<V> x{};
  vlogistic(z, x.e, x.r, x.l1);
  return x;
}

// For A >= 0 (NaN passes): P = exp(-A) and D = 1 - P, each to a few ulp of itself: D from
// expm1(-A) = 2^k expm1(r) + 2^k - 1 where A <= ln 2 (k in {0, -1}, so 2^k is exact), from
// 1 - P (P < 1/2, no cancellation) elsewhere. One reduction and one polynomial for both.
template <class V> FL_INLINE void vexp_neg_1m(V A, V& P, V& D) {
  using Tr = Traits<V>;
  using T = typename Tr::T;
  using C = MathConst<T>;
  constexpr int kLift = sizeof(T) == 8 ? 600 : 64;  // as in vexp_neg
  const V x = select(-A < C::exp_lo, set1<V>(C::exp_lo), -A);
  V scale;  // 2^(k + kLift)
  const V r = reduce_ln2_pow2<V, Tr::exp_bias + kLift>(x, scale);
  const V q = expm1_reduced(r);
  P = ((q + T(1)) * scale) * exp2_neg<T>(kLift);
  const auto small = A <= C::ln2;
  const V tk = scale * exp2_neg<T>(kLift);  // 2^k, exact where small (k in {0, -1})
  D = select(small, -(q * tk + (tk - T(1))), T(1) - P);
}

// E(u) = exp(-u) - 1 + u for u >= 0, without the cancellation of expm1(-u) + u at small u:
// below 1/2 the Taylor series u^2 sum_k c_k u^k, c_k = (-1)^k / (k + 2)!, truncated where
// the next term is below 2^-56 (float64, 14 terms) or 2^-26 (float32, 8 terms) of the first.
template <class V> FL_INLINE V vexp_m1_plus(V u) {
  using T = typename Traits<V>::T;
  constexpr int kTerms = sizeof(T) == 8 ? 14 : 8;
  struct Coef {
    double c[kTerms];
    constexpr Coef() : c{} {
      double f = 2.0;  // (k + 2)!
      for (int k = 0; k < kTerms; ++k) {
        c[k] = (k % 2 ? -1.0 : 1.0) / f;
        f *= k + 3;
      }
    }
  };
  constexpr Coef co;
  V poly = set1<V>(static_cast<T>(co.c[kTerms - 1]));
  for (int k = kTerms - 2; k >= 0; --k) poly = poly * u + static_cast<T>(co.c[k]);
  return select(u < T(0.5), u * u * poly, vexpm1(-u) + u);
}
