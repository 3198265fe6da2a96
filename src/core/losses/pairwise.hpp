// pairwise_logistic and pairwise_hinge: the math of one pair of documents of a group.
//
// For documents i, j of one group with relevances r_i != r_j, let hi be the more relevant one
// and d = s_hi - s_lo the oriented score difference (d = sg (s_i - s_j), sg = sign(r_i - r_j)).
// A pair loss f(d) with f' = df/dd, f'' = d2f/dd2 gives, with pair weight w (1, or |r_i - r_j|
// with pair_weighting="relevance_difference"):
//   dL/ds_i += w sg f'(d),  dL/ds_j -= w sg f'(d),  d2L/ds_i^2 += w f''(d),  d2L/ds_j^2 += w f''(d)
// (sg^2 = 1). Ties (r_i == r_j) form no pair.
//
// pairwise_logistic (RankNet; Burges et al., ICML 2005), with sigma > 0 and z = sigma d:
//   f = softplus(-z) = log(1 + e^{-z}),  f' = -sigma sigmoid(-z),
//   f'' = sigma^2 sigmoid(z) sigmoid(-z)
// from one e = exp(-|z|) and one division (the tails keep their relative accuracy; any finite
// scores give finite results).
// pairwise_hinge, margin m: f = max(0, m - d), f' = -[d < m] (0 at the kink), f'' = 0.
// A NaN score or relevance gives NaN in each pair it takes part in.
// Parameters: [0] sigma (logistic) or margin (hinge), [1] pair weighting (0: 1, 1: |r_i - r_j|).
struct PairwiseLogistic {
  template <class T> struct Params {
    T sigma;
    explicit Params(const double* p) : sigma(static_cast<T>(p[0])) {}
  };
  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void pair(const Params<typename Traits<V>::T>& p, V d, V& f, V& f1, V& f2) {
    using T = typename Traits<V>::T;
    const V z = p.sigma * d;
    const V e = vexp_neg(-abs(z));
    const V r = T(1) / (T(1) + e);  // sigmoid(|z|)
    const V er = e * r;              // sigmoid(-|z|)
    const auto neg = z < V{};
    if constexpr (VAL) f = select(neg, -z, V{}) + vlog1p_unit(e);
    if constexpr (GRAD) f1 = -p.sigma * select(neg, r, er);
    if constexpr (HESS) f2 = (p.sigma * p.sigma) * (er * r);
  }
};

struct PairwiseHinge {
  template <class T> struct Params {
    T margin;
    explicit Params(const double* p) : margin(static_cast<T>(p[0])) {}
  };
  template <bool VAL, bool GRAD, bool HESS, class V>
  static FL_INLINE void pair(const Params<typename Traits<V>::T>& p, V d, V& f, V& f1, V& f2) {
    using T = typename Traits<V>::T;
    const V z = p.margin - d;
    const auto nan = z != z;
    if constexpr (VAL) f = max_nan1(z, V{});
    if constexpr (GRAD) f1 = select(nan, z, select(z > V{}, set1<V>(T(-1)), V{}));
    if constexpr (HESS) f2 = select(nan, z, V{});
  }
};
