// Defaults shared by the elementwise loss structs; a loss overrides what it needs.
//
// A loss struct provides:
//   n_params, Params<T>(const double*)           its scalar parameters, in the Python order
//   eval<VAL, GRAD, HESS>(p, f, y, a, l, g, h)    value, gradient, Hessian of lanes f, y
//                                                 (a: the per-element parameter, if any)
//   fisher_hess(p, f, y, a)                       the expected Hessian
// and may set:
//   has_aux             it reads a per-element parameter array (e.g. pos_weight)
//   has_weight_factor   weight_factor(p, y) multiplies the sample weight (class weights
//                       looked up from the target), in the value, the derivatives and the
//                       mean's denominator alike
//   aux_on,             false when, under p, the per-element parameter or the weight factor
//   weight_factor_on    is an identity that eval does not need (a split's plain case): the
//                       kernel then skips its loads or its products
//   checks_target       target_outside(y) marks targets outside the loss's domain (e.g. a
//                       probability outside [0, 1]); the call then raises ValueError
//   target_domain       which domain that is (TargetDomain), for the error message
//   aux_is_input        the per-element array is data (margin_ranking's x2), not a parameter:
//                       nan_policy treats a NaN there as a missing value
//   n_split, split,     parameters that switch the whole formula (from_logits, gamma = 2):
//   set_split           split(p) in [0, n_split) names the combination; the kernel runs one
//                       copy of its loop per combination, in which set_split(p, k) has made
//                       them constants, so that eval's branches on them leave the loop
//   logistic_pre,       the loss starts from vlogistic(f) (e = exp(-|f|), r, log1p(e)) when
//   logistic_on,        logistic_on(p): the kernel then computes them in two earlier passes
//   eval_logistic       over a short stretch of the block and calls
//                       eval_logistic<VAL, GRAD, HESS>(p, f, y, a, lg, l, g, h) with them
//                       (three short dependency chains in a row keep more of the vector
//                       units busy than one long one); eval must give the same results
//   n_pre2, pre2_on,    and, when pre2_on(p), a second stage: pre2(p, f, lg) fills lg.x[0 ..
//   pre2                n_pre2) from f and the first stage, in a pass of its own (eval and
//                       the kernel's tail call it the same way)
struct ElementwiseLoss {
  static constexpr bool logistic_pre = false;
  template <class P>
  static FL_INLINE bool logistic_on(const P&) {
    return false;
  }
  static constexpr int n_pre2 = 0;
  template <class P>
  static FL_INLINE bool pre2_on(const P&) {
    return false;
  }
  template <class P, class V, class Lg>
  static FL_INLINE void pre2(const P&, V, Lg&) {}
  static constexpr bool has_aux = false;
  static constexpr bool aux_is_input = false;
  static constexpr int target_domain = kDomainUnit;
  static constexpr bool has_weight_factor = false;
  static constexpr bool checks_target = false;
  template <class V>
  static FL_INLINE typename Traits<V>::VI target_outside(V) {
    return typename Traits<V>::VI{};
  }
  template <class P, class V>
  static FL_INLINE V weight_factor(const P&, V) {
    return set1<V>(1);
  }
  // Whether the kernel reads the per-element parameter (has_aux) and applies the weight
  // factor (has_weight_factor) under p: a split may make either of them an identity.
  template <class P>
  static FL_INLINE bool aux_on(const P&) {
    return true;
  }
  template <class P>
  static FL_INLINE bool weight_factor_on(const P&) {
    return true;
  }
  static constexpr int n_split = 1;
  template <class P>
  static FL_INLINE int split(const P&) {
    return 0;
  }
  template <class P>
  static FL_INLINE void set_split(P&, int) {}
};

// The stages a logistic loss starts from, for one vector: vlogistic(f), then pre2 when
// pre2_on(p). The kernel's padded tail and a loss's own eval call this; the kernel's main
// loop runs the same stages as separate passes.
template <class Loss, class P, class V>
FL_INLINE Logistic<V> logistic_stages(const P& p, V f) {
  Logistic<V> lg = vlogistic(f);
  if (Loss::pre2_on(p)) Loss::pre2(p, f, lg);
  return lg;
}
