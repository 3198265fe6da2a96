// softmax_focal(logits x[..., K], target; gamma, alpha, class_weight, label_smoothing,
//               ignore_index)
//
// Multiclass focal loss (Lin et al. 2017, the softmax form). With p = softmax(x), the target
// distribution q = (1 - eps) t + eps / K (t the one-hot of the class index or the given
// probability row), a_k = alpha_k c_k q_k (alpha per class or scalar, c the class weights)
// and f(p) = (1 - p)^gamma log p:
//   l = -sum_k a_k f(p_k)
// Since d log p_k / dx_j = delta_kj - p_j, with phi_k = df/dlog p at p_k,
//   phi(p)  = (1 - p)^gamma - gamma p (1 - p)^(gamma - 1) log p,
//   dl/dx_j = p_j S - a_j phi_j,                  S = sum_k a_k phi_k,
// and with phi'(p) = dphi/dp = -2 gamma (1-p)^(gamma-1) - gamma (1-p)^(gamma-1) log p
//                              + gamma (gamma - 1) p (1-p)^(gamma-2) log p,
//   d2l/dx_j^2 = p_j (1 - p_j) S - p_j^2 T_j - a_j phi'_j p_j (1 - p_j)^2,
//   T_j = sum_{k != j} a_k p_k phi'_k.
// (The j = k term of T is folded into the last term, so that (1 - p)^(gamma - 1), unbounded
// for gamma < 1 as p -> 1, always meets enough factors (1 - p) to stay finite. 1 - p is
// taken from expm1 of log p where p > 1/2, so it keeps its accuracy near 1, and is clamped
// below at the dtype's epsilon inside negative powers.) gamma = 0 gives the cross-entropy:
// phi = 1, phi' = 0. The exact diagonal can be negative for gamma > 0 (docs/losses.md).
// "fisher": the Hessian is linear in q, so its expectation under the model is the Hessian at
// q = (1 - eps) p + eps / K (a class equal to ignore_index contributes nothing: its p is
// left out); the gradient stays that of the given target.
//
// Index targets without label smoothing take a short path: only a_y is non-zero, so S and T
// are scalars from x_y (in float64) and the row is read once: pass 1 leaves exp(x - m_c) in
// the gradient (or Hessian) row, and the output pass scales it in place, as
// softmax_cross_entropy does (one exp per logit; 1 - p of the one class that may exceed 1/2
// is recomputed through expm1).
// Otherwise a second pass computes the per-class terms, keeping a_j phi_j and
// a_j p_j phi'_j in the gradient / Hessian rows, and a third writes the outputs.
//
// from_logits = false: x holds probabilities p, clipped to [clip, 1 - clip] and used as given
// (no renormalisation, as softmax_cross_entropy), l = -sum_k a_k f(p_k) and, with
// phi = p df/dp as above,
//   dl/dp_k    = -a_k phi_k / p_k
//   d2l/dp_k^2 = a_k (phi_k - p_k phi'_k) / p_k^2
// (gamma = 0: -c q / p and c q / p^2, the cross-entropy's). "fisher" takes a_k at the model's
// expected target q = (1 - eps) p_k [k != ignore_index] + (1 - p_ig) eps / K, as for logits.
//
// ignore_index and class weights as in softmax_cross_entropy (class weights of index targets
// also enter the mean's denominator, computed by the binding). Parameters: [0] label_smoothing,
// [1] has ignore_index, [2] ignore_index, [3] gamma, [4] alpha (scalar, when class_aux is null),
// [5] from_logits, [6] clip.
struct SoftmaxFocal {
  template <class T>
  struct Gamma {
    T g;
    int kind;  // 0: gamma = 0, 2: gamma = 2, 1: any other
    T c1;      // gamma < 1: om_min^(gamma - 1), the clamped (1 - p)^(gamma - 1)
  };

  // f, phi, phi' of vectors p, om = 1 - p, lp = log p. With r = log p / (1 - p) (-> -1 as
  // p -> 1), phi = (1-p)^gamma (1 - gamma p r) and
  // phi' = (1-p)^(gamma-1) (-2 gamma - gamma log p + gamma (gamma - 1) p r): the only negative
  // power left is (1-p)^(gamma-1) for gamma < 1, clamped at 1 - p = om_min; the positive
  // powers keep their relative accuracy however close p is to 1.
  template <class T, class V>
  static FL_INLINE void terms(const Gamma<T>& G, V p, V om, V lp, V& f, V& phi, V& dphi) {
    if (G.kind == 0) {
      f = lp;
      phi = set1<V>(T(1));
      dphi = V{};
      return;
    }
    // p log p and p r are 0 at p = 0 (a logit of -inf), not 0 * inf.
    if (G.kind == 2) {  // (1-p)^2: no powers to clamp
      f = (om * om) * lp;
      const V plp = select(p != V{}, p * lp, V{});
      // (1-p)^2 - 2 p log p (1-p), factored: no product for the compiler to fuse into the
      // subtraction in one mode and not in another (the value shares (1-p)^2 only in some).
      phi = om * (om - T(2) * plp);
      dphi = T(-4) * om - T(2) * lp * om + T(2) * plp;
      return;
    }
    using C = MathConst<T>;
    constexpr T om_min = sizeof(T) == 4 ? T(1.1920929e-7) : T(2.220446049250313e-16);
    const auto ok = om >= C::min_normal;
    const V ob = select(ok, om, set1<V>(C::min_normal));
    const V io = T(1) / ob;
    const V pw = vexp_neg(G.g * vlog(ob));  // (1-p)^gamma; argument <= 0
    const V r = select(ok, lp * io, set1<V>(T(-1)));
    V pw1 = pw * io;
    if (G.g < T(1)) pw1 = select(om < om_min, set1<V>(G.c1), pw1);
    const V pr = select(p != V{}, p * r, V{});
    f = pw * lp;
    phi = pw * (T(1) - G.g * pr);
    dphi = pw1 * (-(T(2) * G.g) - G.g * lp + (G.g * (G.g - T(1))) * pr);
  }
  // The same for one double p (the short path's target class).
  static FL_INLINE void terms1(double g, double p, double om, double lp, double& f, double& phi,
                               double& dphi, double om_min) {
    if (g == 0.0) {
      f = lp;
      phi = 1.0;
      dphi = 0.0;
      return;
    }
    auto power = [](double b, double e) {
      return e == 0.0 ? 1.0 : (e == 1.0 ? b : (e == 2.0 ? b * b : __builtin_pow(b, e)));
    };
    const double r = om > 0.0 ? lp / om : -1.0;
    const double pr = p > 0.0 ? p * r : 0.0;  // 0 at p = 0 (log p = -inf), not 0 * inf
    const double pw = power(om, g);
    const double pw1 = power(g >= 1.0 ? om : (om < om_min ? om_min : om), g - 1.0);
    f = pw * lp;
    phi = pw * (1.0 - g * pr);
    dphi = pw1 * (-2.0 * g - g * lp + g * (g - 1.0) * pr);
  }

  // The short path's scalars, from log p of the target class y and its weight ay = a_y: the
  // value -a_y f, S = a_y phi, T = a_y p phi' and y's own gradient and Hessian entries (before
  // the sample weight and the Hessian policy).
  struct TargetTerms {
    double value, S, T, gy, hy;
  };
  static FL_INLINE TargetTerms target_terms(double gamma, double lpy, double ay, double om_min) {
    const double py = __builtin_exp(lpy);
    const double omy = py < 0.5 ? 1.0 - py : -__builtin_expm1(lpy);  // 1 - p accurately
    double f, phi, dphi;
    terms1(gamma, py, omy, lpy, f, phi, dphi, om_min);
    const double pd = py > 0.0 ? py * dphi : 0.0;  // dphi = +inf at p = 0
    return {-ay * f, ay * phi, ay * pd, -ay * phi * omy, ay * omy * (py * phi - pd * omy)};
  }

  static constexpr bool streams = true;  // RowOut (softmax_rows.hpp)
  template <int MODE, class T>
  static void rows(const RowBlock<T>& b) noexcept {
    using V = typename VecOf<T>::V;
    using Tr = Traits<V>;
    using VI = typename Tr::VI;
    using I = typename Tr::I;
    constexpr int W = Tr::W;
    constexpr bool kVArr = (MODE & kValueArray) != 0, kVSum = (MODE & kValueSum) != 0;
    constexpr bool kVal = kVArr || kVSum;
    constexpr bool kG = (MODE & kGrad) != 0, kH = (MODE & kHess) != 0;
    constexpr T om_min = sizeof(T) == 4 ? T(1.1920929e-7) : T(2.220446049250313e-16);

    const std::int64_t K = b.K;
    const T eps = static_cast<T>(b.params[0]);
    const bool has_ig = b.params[1] != 0.0;
    const std::int64_t ig = ignore_index_param(b.params[2]);
    const double gamma = b.params[3];
    const double c1 = gamma < 1.0 ? __builtin_pow(static_cast<double>(om_min), gamma - 1.0) : 0.0;
    const Gamma<T> G{static_cast<T>(gamma), gamma == 0.0 ? 0 : (gamma == 2.0 ? 2 : 1),
                     static_cast<T>(c1)};
    const T alpha = static_cast<T>(b.params[4]);
    const bool from_logits = b.params[5] != 0.0;
    const T pclip = static_cast<T>(b.params[6]);
    const T epsK = eps / static_cast<T>(K);
    const bool fisher = b.hess_policy == kHessFisher;
    const bool clip = b.hess_policy == kHessClip;
    const bool habs = b.hess_policy == kHessAbs;
    const V floor = set1<V>(static_cast<T>(b.hess_floor));
    const V hf = set1<V>(static_cast<T>(b.hess_factor));
    const V ninf = set1<V>(-static_cast<T>(__builtin_huge_val()));
    double vsum = 0.0;
    SoftmaxStats<T> st;
    VI tout{};

    // a_y of a class index: alpha (per class or scalar) times the class weight.
    auto alpha_y = [&](std::int64_t y) {
      double ay = b.class_aux ? static_cast<double>(b.class_aux[y]) : static_cast<double>(alpha);
      return b.class_w ? ay * static_cast<double>(b.class_w[y]) : ay;
    };

    // The target class's Hessian entry hy under the policy, times the row's scale ds.
    auto hess_y = [&](double hy, double ds) {
      double hv = hy * b.hess_factor;
      if (clip && !(hv >= b.hess_floor)) hv = hv != hv ? hv : b.hess_floor;
      if (habs) hv = hv < 0 ? -hv : hv;
      return static_cast<T>(hv * ds);
    };

    // The short path as one short routine for rows of W to 2048 logits (one softmax chunk),
    // as softmax_cross_entropy's: softmax_rows_short for a batch of rows (ShortRow), the
    // batch's logs, then per row the target class's scalars and one output pass scaling the
    // exps in place. The same formulas as the short path below (to rounding: log S from the
    // float64 vector log, the gradient as e S ds / sum). A row holding NaN, +inf or only -inf
    // goes the general way, which rewrites the whole row over any partial exps left in it.
    const bool lean_ok = from_logits && b.labels && eps == T(0) && !(kH && fisher) && K >= W &&
                         K <= softmax_chunk<T>(1);
    auto lean_row = [&](const T* x, std::int64_t y, T sw, T* g, T* h, const ShortRow<T>& q,
                        double& value) __attribute__((always_inline)) {
      const std::int64_t nfull = K - K % W;
      const std::int64_t kt = K - W;  // the last vector, overlapping when W does not divide K
      T* e = kG ? g : h;  // exp(x - mc), scaled in place below (null: value only)
      const T mc = q.mc;
      const double S = q.S;
      const V et = q.et;
      const double log_s = q.log_s;
      const TargetTerms tt = target_terms(gamma, (static_cast<double>(x[y]) - mc) - log_s,
                                          alpha_y(y), static_cast<double>(om_min));
      value = tt.value;
      value *= static_cast<double>(sw);
      if constexpr (kG || kH) {
        const double ds = static_cast<double>(sw) * b.gscale;
        const V vds = set1<V>(static_cast<T>(ds));
        const V vS = set1<V>(static_cast<T>(tt.S));
        const V vT = set1<V>(static_cast<T>(tt.T));
        const V r = set1<V>(static_cast<T>(1.0 / S));
        const V vM = set1<V>(mc), vls = set1<V>(static_cast<T>(log_s));
        // Classes other than y: g_k = p_k S, h_k = p_k (1 - p_k) S - p_k^2 T.
        const V gS = set1<V>(static_cast<T>(tt.S * ds / S));  // p S ds = e (S ds / sum)
        auto put = [&](std::int64_t k, V ev) __attribute__((always_inline)) {
          V p = ev * r;
          if constexpr (kG) store(g + k, ev * gS);
          if constexpr (kH) {
            V om = T(1) - p;
            if (any_lane(p > T(0.5)))  // at most one class per row: 1 - p from expm1
              vexp_neg_1m(-((load<V>(x + k) - vM) - vls), p, om);
            V hv = (p * om * vS - p * p * vT) * hf;
            if (clip) hv = max_nan1(hv, floor);
            if (habs) hv = abs(hv);
            store(h + k, hv * vds);
          }
        };
        for (std::int64_t j = 0; j < nfull; j += W) put(j, load<V>(e + j));
        if (nfull < K) put(kt, et);  // the overlapped lanes get the same values again
        if constexpr (kG) g[y] = static_cast<T>(tt.gy * ds);
        if constexpr (kH) h[y] = hess_y(tt.hy, ds);
      }
    };
    // Probabilities in (from_logits = false): one pass, no softmax. Returns whether the row
    // holds a NaN (in x or in a probability target).
    auto prob_row = [&](const T* x, const T* t, std::int64_t y, T sw, T* g, T* h,
                        double& value) {
      const double ds = static_cast<double>(sw) * b.gscale;
      const V vds = set1<V>(static_cast<T>(ds));
      const V lo = set1<V>(pclip), hi = set1<V>(T(1) - pclip);
      // The model's expected target for "fisher" (the logits path's q_model, with p as given).
      const bool ig_in_row = has_ig && ig >= 0 && ig < K;
      T p_ig = T(0);
      if (ig_in_row) {
        p_ig = x[ig] < pclip ? pclip : (x[ig] > T(1) - pclip ? T(1) - pclip : x[ig]);
      }
      const V qm_eps = set1<V>((T(1) - p_ig) * epsK);
      typename Tr::Acc av{};
      VI nanm{};
      for (std::int64_t k = 0; k < K; k += W) {
        const int live_n = (K - k < W) ? static_cast<int>(K - k) : W;
        const VI live = lane_index<V>() < live_n;
        V pv = load_live<V>(x + k, live);
        nanm |= (pv != pv) & live;
        pv = select(live, pv, set1<V>(T(0.5)));
        V pc = select(pv < lo, lo, pv);
        pc = select(pc > hi, hi, pc);
        V a = b.class_aux ? load_live<V>(b.class_aux + k, live) : set1<V>(alpha);
        if (b.class_w) a = a * load_live<V>(b.class_w + k, live);
        V q;
        if (t) {
          const V tv = load_live<V>(t + k, live);
          nanm |= (tv != tv) & live;
          tout |= ((tv < V{}) | (tv > T(1))) & live;
          q = (T(1) - eps) * tv + epsK;
        } else {
          const auto hit =
              lane_index<V>() + iset1<V>(static_cast<I>(k)) == iset1<V>(static_cast<I>(y));
          q = select(hit, set1<V>(T(1) - eps + epsK), set1<V>(epsK));
        }
        const V aq = select(live, a * q, V{});
        const auto use = aq != V{};
        V f, phi, dphi;
        terms<T>(G, pc, T(1) - pc, vlog(pc), f, phi, dphi);
        const V ip = T(1) / pc;
        if (kVal) av += to_acc(select(use, aq * f, V{}));
        if constexpr (kG) store_n(g, k, select(use, -(aq * phi * ip), V{}) * vds, live_n, true);
        if constexpr (kH) {
          V ah = aq;
          if (fisher) {
            V pk = pc;
            if (ig_in_row) {
              const auto at_ig =
                  lane_index<V>() + iset1<V>(static_cast<I>(k)) == iset1<V>(static_cast<I>(ig));
              pk = select(at_ig, V{}, pc);
            }
            ah = select(live, a * ((T(1) - eps) * pk + qm_eps), V{});
          }
          V hv = select(ah != V{}, ah * (phi - pc * dphi) * (ip * ip), V{});
          if (clip) hv = max_nan1(hv, floor);
          if (habs) hv = abs(hv);
          store_n(h, k, hv * vds, live_n, true);
        }
      }
      value = -hsum(av) * static_cast<double>(sw);
      return any_lane(nanm);
    };

    const int nbatch = lean_ok ? short_batch<T>(K) : 1;
    ShortRow<T> batch[kShortBatch];

    // The gradient and Hessian rows, streamed when the block asks (RowOut).
    RowOut<T> og, oh;
    og.begin(kG ? b.grad : nullptr, K, (b.stream & 2) != 0);
    oh.begin(kH ? b.hess : nullptr, K, (b.stream & 4) != 0);
    for (std::int64_t i0 = 0; i0 < b.rows; i0 += nbatch) {
      const int nb = b.rows - i0 < nbatch ? static_cast<int>(b.rows - i0) : nbatch;
      T* const g0 = og.rows(i0);
      T* const h0 = oh.rows(i0);
      if (lean_ok)
        short_rows<kG || kH>(b, kG ? g0 : h0, !(kG ? og.on : oh.on), i0, nb, has_ig, ig, false,
                             batch);
      for (int r = 0; r < nb; ++r) {
        const std::int64_t i = i0 + r;
        const T* x = b.logits + i * K;
        const T* t = b.tprob ? b.tprob + i * K : nullptr;
        T* g = kG ? g0 + r * K : nullptr;
        T* h = kH ? h0 + r * K : nullptr;
        const T sw = b.weight ? b.weight[i] : T(1);
        const std::int64_t y = b.labels ? b.labels[i] : -1;
        const bool ignored = b.labels ? is_ignored(y, has_ig, ig, K) : (has_ig && t[ig] == T(1));
        double value = 0.0;
        bool bad = false;
        // Index targets without smoothing (the short path, below) whose outputs are not the
        // Fisher Hessian: pass 1 leaves exp(x - m_c) in an output row and the output pass
        // scales it, as softmax_cross_entropy does (one exp per logit).
        const bool fast = b.labels && eps == T(0);
        const bool reuse = fast && (kG || kH) && !(kH && fisher);
        T* e_row = reuse ? (kG ? g : h) : nullptr;
        const bool lean = lean_ok && batch[r].ok;
        if (lean) lean_row(x, y, sw, g, h, batch[r], value);
        if (!from_logits && !ignored) bad = prob_row(x, t, y, sw, g, h, value);
        if (from_logits && !lean && !ignored) {
          softmax_pass1<T>(x, K, e_row, st, [](V, VI, std::int64_t) {});
          bad = st.nan;
          const V vM = set1<V>(static_cast<T>(st.M));
          const V vls = set1<V>(static_cast<T>(st.log_s));
          // p, 1 - p and log p of the logits at k (lanes not live: p = 0).
          auto probs = [&](std::int64_t k, VI live, V& p, V& om, V& lp) {
            lp = select(live, (load_live<V>(x + k, live) - vM) - vls, ninf);
            vexp_neg_1m(-lp, p, om);
          };
          // Pass 2 over the row for a target distribution: qk(k, live, p) gives q_k; sums
          // value, S, T (split by p > 1/2) and keeps a phi in `gst`, a p phi' in `hst`.
          auto pass2 = [&](auto qk, T* gst, T* hst, double& val, double& S, double& Tlo,
                           double& Thi) {
            typename Tr::Acc av{}, as{}, alo{}, ahi{};
            VI tnan{};
            for (std::int64_t k = 0; k < K; k += W) {
              const int live_n = (K - k < W) ? static_cast<int>(K - k) : W;
              const VI live = lane_index<V>() < live_n;
              V p, om, lp;
              probs(k, live, p, om, lp);
              V a = b.class_aux ? load_live<V>(b.class_aux + k, live) : set1<V>(alpha);
              if (b.class_w) a = a * load_live<V>(b.class_w + k, live);
              const V q = qk(k, live, p, tnan);
              a = select(live, a * q, V{});
              V f, phi, dphi;
              terms<T>(G, p, om, lp, f, phi, dphi);
              // A class without target mass adds nothing, also where its logit is -inf (p = 0,
              // log p = -inf: 0, not 0 * inf).
              const auto use = live & (a != V{});
              const V aphi = select(use, a * phi, V{});
              const V tp = select(use & (p != V{}), a * p * dphi, V{});
              if (kVal) av += to_acc(select(use, a * f, V{}));
              as += to_acc(aphi);
              const auto big = p > T(0.5);
              ahi += to_acc(select(live & big, tp, V{}));
              alo += to_acc(select(live & ~big, tp, V{}));
              if (gst) store_n(gst, k, aphi, live_n, true);
              if (hst) store_n(hst, k, tp, live_n, true);
            }
            val = -hsum(av);
            S = hsum(as);
            Tlo = hsum(alo);
            Thi = hsum(ahi);
            if (any_lane(tnan)) bad = true;
          };
          auto q_target = [&](std::int64_t k, VI live, V, VI& tnan) -> V {
            if (t) {
              const V tv = load_live<V>(t + k, live);
              tnan |= (tv != tv) & live;
              tout |= ((tv < V{}) | (tv > T(1))) & live;
              return (T(1) - eps) * tv + epsK;
            }
            const auto hit =
                lane_index<V>() + iset1<V>(static_cast<I>(k)) == iset1<V>(static_cast<I>(y));
            return select(hit, set1<V>(T(1) - eps + epsK), set1<V>(epsK));
          };
          // The model's expected target. A class equal to ignore_index contributes nothing (its
          // samples are ignored): q = (1 - eps) p [k != ig] + (1 - p_ig) eps / K.
          const bool ig_in_row = has_ig && ig >= 0 && ig < K;
          const T p_ig =
              ig_in_row
                  ? static_cast<T>(__builtin_exp((static_cast<double>(x[ig]) - st.M) - st.log_s))
                  : T(0);
          const V qm_eps = set1<V>((T(1) - p_ig) * epsK);
          auto q_model = [&](std::int64_t k, VI, V p, VI&) -> V {
            V pk = p;
            if (ig_in_row) {
              const auto hit =
                  lane_index<V>() + iset1<V>(static_cast<I>(k)) == iset1<V>(static_cast<I>(ig));
              pk = select(hit, V{}, p);
            }
            return (T(1) - eps) * pk + qm_eps;
          };

          double Sg = 0.0, Sh = 0.0, Tlo = 0.0, Thi = 0.0;
          double gy = 0.0, hy = 0.0;  // the short path's outputs at y (before scaling)
          bool stored_g = false, stored_h = false;
          if (fast) {
            const double lpy = (static_cast<double>(x[y]) - st.M) - st.log_s;
            const TargetTerms tt =
                target_terms(gamma, lpy, alpha_y(y), static_cast<double>(om_min));
            value = tt.value;
            Sg = Sh = tt.S;
            Tlo = tt.T;
            gy = tt.gy;
            hy = tt.hy;
          } else if (kVal || kG || (kH && !fisher)) {
            double S = 0.0;
            pass2(q_target, kG ? g : nullptr, (kH && !fisher) ? h : nullptr, value, S, Tlo, Thi);
            Sg = Sh = S;
            stored_g = kG;
            stored_h = kH && !fisher;
          }
          if (kH && fisher) {
            double vdummy = 0.0;
            pass2(q_model, nullptr, h, vdummy, Sh, Tlo, Thi);
            stored_h = true;
          }
          value *= static_cast<double>(sw);
          if constexpr (kG || kH) {
            const double ds = static_cast<double>(sw) * b.gscale;
            const V vds = set1<V>(static_cast<T>(ds));
            const V vSg = set1<V>(static_cast<T>(Sg)), vSh = set1<V>(static_cast<T>(Sh));
            const V vTlo = set1<V>(static_cast<T>(Tlo)), vThi = set1<V>(static_cast<T>(Thi));
            // The short path's classes other than y: a_k = 0, so g_k = p_k S and
            // h_k = p_k (1 - p_k) S - p_k^2 T with T = a_y p_y phi'_y (= Tlo).
            auto short_out = [&](std::int64_t k, V p) {
              V om = T(1) - p;
              if (any_lane(p > T(0.5))) {  // at most one class per row: 1 - p from expm1
                V lp;
                probs(k, iset1<V>(-1), p, om, lp);
              }
              if constexpr (kG) store(g + k, p * vSg * vds);
              if constexpr (kH) {
                V hv = (p * om * vSh - p * p * vTlo) * hf;
                if (clip) hv = max_nan1(hv, floor);
                if (habs) hv = abs(hv);
                store(h + k, hv * vds);
              }
            };
            for (int c = 0; reuse && c < st.nchunks; ++c) {
              const std::int64_t k0 = c * st.chunk;
              const std::int64_t n = (K - k0 < st.chunk) ? K - k0 : st.chunk;
              const V r = set1<V>(static_cast<T>(st.r[c]));
              // A chunk whose length is not a multiple of W ends with one vector overlapping the
              // previous one; its exps are read before the loop overwrites them.
              const bool overlap = (n % W) != 0 && n >= W;
              const std::int64_t kt = k0 + n - W;
              const V et = overlap ? load<V>(e_row + kt) : V{};
              std::int64_t j = 0;
              for (; j + W <= n; j += W) short_out(k0 + j, load<V>(e_row + k0 + j) * r);
              if (overlap) {
                short_out(kt, et * r);
              } else {
                for (; j < n; ++j) {  // a row shorter than one vector
                  const std::int64_t k = k0 + j;
                  const double lp = (static_cast<double>(x[k]) - st.M) - st.log_s;
                  const double p = __builtin_exp(lp), om = -__builtin_expm1(lp);
                  if constexpr (kG) g[k] = static_cast<T>(p * Sg * ds);
                  if constexpr (kH) {
                    double hv = (p * om * Sh - p * p * Tlo) * b.hess_factor;
                    if (clip && !(hv >= b.hess_floor)) hv = hv != hv ? hv : b.hess_floor;
                    if (habs) hv = hv < 0 ? -hv : hv;
                    h[k] = static_cast<T>(hv * ds);
                  }
                }
              }
            }
            // A confident row (softmax_rows.hpp): at its largest logit, p S - a phi loses its
            // digits to cancellation; it is (S - a phi) - (1 - p) S with 1 - p = S1 / S.
            const std::int64_t km = (!reuse && stored_g) ? st.kmax : -1;
            const double aphi_km = km >= 0 ? static_cast<double>(g[km]) : 0.0;
            for (std::int64_t k = 0; !reuse && k < K; k += W) {
              const int live_n = (K - k < W) ? static_cast<int>(K - k) : W;
              const VI live = lane_index<V>() < live_n;
              V p, om, lp;
              probs(k, live, p, om, lp);
              if constexpr (kG) {
                const V gs = stored_g ? load_live<V>(g + k, live) : V{};
                store_n(g, k, (p * vSg - gs) * vds, live_n, true);
              }
              if constexpr (kH) {
                const V hs = stored_h ? load_live<V>(h + k, live) : V{};
                const V Tm = select(p > T(0.5), vTlo, vThi + (vTlo - hs));
                V hv = (p * om * vSh - p * p * Tm - hs * om * om) * hf;
                if (clip) hv = max_nan1(hv, floor);
                if (habs) hv = abs(hv);
                store_n(h, k, hv * vds, live_n, true);
              }
            }
            if (kG && km >= 0)
              g[km] = static_cast<T>(((Sg - aphi_km) - (st.S1 / st.S) * Sg) * ds);
            if (fast) {
              if constexpr (kG) g[y] = static_cast<T>(gy * ds);
              if constexpr (kH)
                if (!fisher) h[y] = hess_y(hy, ds);
            }
          }
        }
        if (!ignored && sw != sw) bad = true;
        if (ignored || (b.omit_nan && bad)) {
          value = 0.0;
          if constexpr (kG)
            for (std::int64_t k = 0; k < K; ++k) g[k] = T(0);
          if constexpr (kH)
            for (std::int64_t k = 0; k < K; ++k) h[k] = T(0);
        }
        if constexpr (kVArr) b.value[i] = static_cast<T>(value);
        if constexpr (kVSum) vsum += value;
      }
      og.done(nb);
      oh.done(nb);
    }
    finish_rows(og, oh);
    if constexpr (kVSum) *b.value_sum = vsum;
    if (b.bad_target && any_lane(tout)) *b.bad_target = 1;
  }
};
