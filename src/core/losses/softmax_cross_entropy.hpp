// softmax_cross_entropy(logits x[..., K], target; class_weight c, label_smoothing eps,
//                       ignore_index, from_logits, log_base)
//
// Target distribution q = (1 - eps) t + eps / K, where t is the one-hot of the class index
// or the given probability row. With p = softmax(x), lse = log sum_k exp(x_k):
//   l       = sum_k c_k q_k (-log p_k) = a lse - sum_k c_k q_k x_k,   a = sum_k c_k q_k
//   dl/dx_j = a p_j - c_j q_j
//   d2l/dx_j^2 = a p_j (1 - p_j)            (the diagonal; "xgboost" doubles it,
//                                            "lightgbm" multiplies by K / (K - 1);
//                                            "fisher" takes a under q's model expectation)
// (PyTorch's cross_entropy with weight and label_smoothing gives the same l per sample.)
// A row whose class index is ignore_index, or whose probability target puts all its mass on
// class ignore_index, gives 0 and is left out of the mean (the binding computes the
// denominator: sum of sample_weight x c_y over kept rows for indices, of sample_weight for
// probability targets).
//
// from_logits = false: x holds probabilities p, clipped to [clip, 1] and used as given (no
// renormalisation): l = -sum_k c_k q_k log p_k, dl/dp_j = -c_j q_j / p_j,
// d2l/dp_j^2 = c_j q_j / p_j^2.
//
// Everything is scaled by 1 / ln(log_base) and by the row's sample weight.
// Parameters: [0] label_smoothing, [1] has ignore_index, [2] ignore_index, [3] from_logits,
// [4] clip, [5] 1 / ln(log_base).
struct SoftmaxCrossEntropy {
  static constexpr bool streams = true;  // RowOut (softmax_rows.hpp)
  template <int MODE, class T>
  static void rows(const RowBlock<T>& b) noexcept {
    using V = typename VecOf<T>::V;
    using Tr = Traits<V>;
    using VI = typename Tr::VI;
    constexpr int W = Tr::W;
    constexpr bool kVArr = (MODE & kValueArray) != 0, kVSum = (MODE & kValueSum) != 0;
    constexpr bool kG = (MODE & kGrad) != 0, kH = (MODE & kHess) != 0;
    constexpr bool kD = kG || kH;

    const std::int64_t K = b.K;
    const T eps = static_cast<T>(b.params[0]);
    const bool has_ig = b.params[1] != 0.0;
    const std::int64_t ig = ignore_index_param(b.params[2]);
    const bool from_logits = b.params[3] != 0.0;
    const T clip = static_cast<T>(b.params[4]);
    const double scale = b.params[5];
    const T epsK = eps / static_cast<T>(K);
    double csum = static_cast<double>(K);
    if (b.class_w) {
      csum = 0.0;
      for (std::int64_t k = 0; k < K; ++k) csum += b.class_w[k];
    }
    const V floor = set1<V>(b.hess_policy == kHessClip ? static_cast<T>(b.hess_floor)
                                                       : -static_cast<T>(__builtin_huge_val()));
    double vsum = 0.0;
    SoftmaxStats<T> st;
    VI tout{};  // probability targets outside [0, 1]
    const bool fisher = b.hess_policy == kHessFisher;

    // A confident row (softmax_rows.hpp): the gradient a p - c q and the Hessian a' p (1 - p)
    // at its largest logit kmax, from p = 1 / S and 1 - p = S1 / S (cq: c q at kmax; ah: a',
    // the Hessian's a).
    auto confident_fix = [&](std::int64_t kmax, double S, double S1, double a, double cq,
                             double ah, double ds, T* g, T* h) {
      const double p = 1.0 / S, om = S1 / S;
      if constexpr (kG) g[kmax] = static_cast<T>(((a - cq) - a * om) * ds);
      if constexpr (kH) {
        double hk = ah * b.hess_factor * p * om;
        if (b.hess_policy == kHessClip && hk < b.hess_floor) hk = b.hess_floor;
        h[kmax] = static_cast<T>(hk * ds);
      }
    };

    // The common case as one short routine: integer labels, no class weights, logits, and rows
    // of W to 2048 logits (one softmax chunk): softmax_rows_short for a batch of rows
    // (ShortRow), the batch's logs, then each row's value and gradient pass, with the chunk,
    // target and class-weight machinery left out. The same formulas as the general path below
    // (log S from the float64 vector log, not libm's: the value may differ in its last bits).
    // A row holding NaN, +inf or only -inf goes the general way, which rewrites the whole row
    // over the partial exps the short routine may have left in it.
    const bool lean_ok = from_logits && b.labels && !b.class_w && !b.tprob && K >= W &&
                         K <= softmax_chunk<T>(1);
    auto lean_row = [&](const T* x, std::int64_t y, T sw, T* g, T* h, const ShortRow<T>& q,
                        double& value) __attribute__((always_inline)) {
      const std::int64_t nfull = K - K % W;
      const std::int64_t kt = K - W;  // the last vector, overlapping when W does not divide K
      T* e = kG ? g : h;  // exp(x - mc), scaled in place below
      const double a = (1.0 - eps) + epsK * csum;
      // a lse - sum_k q_k x_k with lse = mc + log1p(S1), as a log1p(S1) + sum_k q_k (mc - x_k):
      // no cancellation where the label's logit is the largest and the loss is small. (Explicit
      // fmas: the same rounding in every mode, whatever the compiler would contract.)
      const double m = static_cast<double>(q.mc);
      const double qdx = __builtin_fma(1.0 - eps, m - static_cast<double>(x[y]),
                                       epsK * __builtin_fma(csum, m, -q.sx));
      value = __builtin_fma(a, q.log_s, qdx) * scale * sw;
      if constexpr (kD) {
        const double ds = scale * static_cast<double>(sw) * b.gscale;
        const V vd = set1<V>(static_cast<T>(ds));
        const V hf = set1<V>(static_cast<T>(a * b.hess_factor));  // fisher: a, no class weights
        const V r = set1<V>(static_cast<T>(1.0 / q.S));
        // (a p - q) ds = e (a ds / S) - q ds: one multiply-add per vector (a ds / S rounded
        // as the general path's a ds r with r = 1 / S, so that both give the same bits).
        const V ga = set1<V>(static_cast<T>(a * ds * (1.0 / q.S)));
        const V gc = set1<V>(static_cast<T>(static_cast<double>(epsK) * ds));
        auto put = [&](std::int64_t k, V ev) __attribute__((always_inline)) {
          if constexpr (kH) {
            const V p = ev * r;
            store(h + k, max_nan1(hf * p * (T(1) - p), floor) * vd);
          }
          if constexpr (kG) store(g + k, ev * ga - gc);
        };
        // The label's entry, e_y ga - gc as the vector step rounds it, taken before the pass
        // overwrites e and stored after it: no read of g[y] right behind the vector store that
        // wrote it (a store-to-load forwarding stall on every row).
        T gy{};
        if constexpr (kG) {
          const T ey = y < nfull ? e[y] : q.et[y - kt];
          const V gyv = set1<V>(ey) * ga - gc;
          gy = gyv[0];
        }
        for (std::int64_t j = 0; j < nfull; j += W) put(j, load<V>(e + j));
        if (nfull < K) put(kt, q.et);  // the overlapped lanes get the same values again
        if constexpr (kG) g[y] = static_cast<T>(static_cast<double>(gy) - (1.0 - eps) * ds);
        if (q.kmax >= 0)
          confident_fix(q.kmax, q.S, q.S1, a, (q.kmax == y ? 1.0 - eps : 0.0) + epsK, a, ds, g, h);
      }
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
        short_rows<kD>(b, kG ? g0 : h0, !(kG ? og.on : oh.on), i0, nb, has_ig, ig, eps != T(0),
                       batch);
      for (int r = 0; r < nb; ++r) {
        const std::int64_t i = i0 + r;
        const T* x = b.logits + i * K;
        const T* t = b.tprob ? b.tprob + i * K : nullptr;
        T* g = kG ? g0 + r * K : nullptr;
        T* h = kH ? h0 + r * K : nullptr;
        const T sw = b.weight ? b.weight[i] : T(1);
        const std::int64_t y = b.labels ? b.labels[i] : -1;
        bool ignored = b.labels ? is_ignored(y, has_ig, ig, K) : (has_ig && t[ig] == T(1));
        double value = 0.0;
        bool bad = false;  // a NaN in this row (for nan_policy="omit")
        // (The value takes the same route below either way, so that the compiler's
        // contractions of its arithmetic are the same in every mode.)
        const bool lean = lean_ok && batch[r].ok;
        if (lean) lean_row(x, y, sw, g, h, batch[r], value);
        if (!lean && !ignored && from_logits) {
          // Pass 1, with the row sums the value needs fused in: sum c x, sum c t, sum c t x.
          typename Tr::Acc acx{}, act{}, actx{};
          VI tnan{};
          auto visit = [&](V v, VI live, std::int64_t k0) {
            // Lanes not live are zeroed through c (the class weights, or 1).
            V c = select(live, b.class_w ? load_live<V>(b.class_w + k0, live) : set1<V>(T(1)), V{});
            V xv = select(live, v, V{});
            if (eps != T(0)) acx += to_acc(select(c != V{}, c * xv, V{}));  // as actx
            if (t) {
              V tv = load_live<V>(t + k0, live);
              tnan |= (tv != tv);
              tout |= (tv < V{}) | (tv > T(1));
              act += to_acc(c * tv);
              const V ct = c * tv;
              actx += to_acc(select(ct != V{}, ct * xv, V{}));  // c t = 0 at x = -inf: 0
            }
          };
          T* e_row = kG ? g : (kH ? h : nullptr);
          if (eps != T(0) || t || b.class_w) softmax_pass1<T>(x, K, e_row, st, visit);
          else softmax_pass1<T>(x, K, e_row, st, [](V, VI, std::int64_t) {});
          bad = st.nan || any_lane(tnan);
          // value = a lse - sum_k c_k q_k x_k = a log_s + sum_k c_k q_k (M - x_k), as in lean_row.
          double a, qdx;
          const double sx = (eps != T(0)) ? hsum(acx) : 0.0;
          const double smooth = epsK * __builtin_fma(csum, st.M, -sx);
          if (b.labels) {
            const double cy = b.class_w ? b.class_w[y] : 1.0;
            a = (1.0 - eps) * cy + epsK * csum;
            qdx = __builtin_fma((1.0 - eps) * cy, st.M - static_cast<double>(x[y]), smooth);
          } else {
            const double ct = hsum(act);
            a = (1.0 - eps) * ct + epsK * csum;
            double tdx = __builtin_fma(ct, st.M, -hsum(actx));  // sum_k c_k t_k (M - x_k)
            if (st.kmax >= 0) {
              // A confident row, whose loss can be far below the rounding of c t x: the sum
              // again, of terms that are all >= 0 (no cancellation).
              const V vM = set1<V>(static_cast<T>(st.M));
              typename Tr::Acc ad{};
              for (std::int64_t k = 0; k < K; k += W) {
                const int live_n = (K - k < W) ? static_cast<int>(K - k) : W;
                const VI live = lane_index<V>() < live_n;
                V ctk = load_live<V>(t + k, live);
                if (b.class_w) ctk = ctk * load_live<V>(b.class_w + k, live);
                const V gap = vM - load_live<V>(x + k, live);
                ad += to_acc(select(live & (ctk != V{}), ctk * gap, V{}));  // 0 at t = 0, x = -inf
              }
              tdx = hsum(ad);
            }
            qdx = __builtin_fma(1.0 - eps, tdx, smooth);
          }
          value = __builtin_fma(a, st.log_s, qdx) * scale * sw;
          if constexpr (kD) {
            const double ds = scale * static_cast<double>(sw) * b.gscale;
            const V va = set1<V>(static_cast<T>(a));
            const V vd = set1<V>(static_cast<T>(ds));
            // hessian="fisher": the expected Hessian, a with q replaced by its model expectation
            // (1 - eps) p + eps/K: sum_k c_k p_k (1 - eps) + eps/K sum_k c_k. Equal to a without
            // class weights.
            double ah = a;
            if (fisher && b.class_w) {
              const T* ev = kG ? g : h;
              double cp = 0.0;
              for (int c = 0; c < st.nchunks; ++c) {
                const std::int64_t k0 = c * st.chunk;
                const std::int64_t n = (K - k0 < st.chunk) ? K - k0 : st.chunk;
                double part = 0.0;
                for (std::int64_t j = 0; j < n; ++j)
                  part += static_cast<double>(b.class_w[k0 + j]) * ev[k0 + j];
                cp += part * st.r[c];
              }
              ah = (1.0 - eps) * cp + epsK * csum;
            }
            const V hf = set1<V>(static_cast<T>(ah * b.hess_factor));
            T* e = kG ? g : h;  // where pass 1 left exp(x - m_c)
            const V ceps = set1<V>(epsK), c1 = set1<V>(T(1) - eps);
            // One vector of the gradient / Hessian from exp values ev (scaled by r).
            auto step = [&](V ev, V r, V c, V tv, V& gv, V& hv) {
              V p = ev * r;
              V cq = c * ceps;
              if (t) cq = cq + c * c1 * tv;
              // clip, then weight
              if constexpr (kH) hv = max_nan1(hf * p * (T(1) - p), floor) * vd;
              gv = (va * p - cq) * vd;
            };
            for (int c = 0; c < st.nchunks; ++c) {
              const std::int64_t k0 = c * st.chunk;
              const std::int64_t n = (K - k0 < st.chunk) ? K - k0 : st.chunk;
              const V r = set1<V>(static_cast<T>(st.r[c]));
              std::int64_t j = 0;
              V gv{}, hv{};
              const V one = set1<V>(T(1));
              // A chunk whose length is not a multiple of W ends with one vector overlapping the
              // previous one: its exp values are saved before the loop overwrites them in place,
              // so that the overlapped lanes are recomputed from the same inputs.
              const bool overlap = (n % W) != 0 && n >= W;
              const std::int64_t kt = k0 + n - W;
              const V et = overlap ? load<V>(e + kt) : V{};
              if (!b.class_w && !t) {  // the common case: no per-class loads (as lean_row)
                const V ga = set1<V>(static_cast<T>(a * ds * st.r[c]));
                const V gc = set1<V>(static_cast<T>(static_cast<double>(epsK) * ds));
                for (; j + W <= n; j += W) {
                  const std::int64_t k = k0 + j;
                  const V ev = load<V>(e + k);
                  if constexpr (kH) {
                    const V p = ev * r;
                    store(h + k, max_nan1(hf * p * (T(1) - p), floor) * vd);
                  }
                  if constexpr (kG) store(g + k, ev * ga - gc);
                }
              }
              for (; j + W <= n; j += W) {
                const std::int64_t k = k0 + j;
                step(load<V>(e + k), r, b.class_w ? load<V>(b.class_w + k) : one,
                     t ? load<V>(t + k) : V{}, gv, hv);
                if constexpr (kG) store(g + k, gv);
                if constexpr (kH) store(h + k, hv);
              }
              if (overlap) {
                step(et, r, b.class_w ? load<V>(b.class_w + kt) : one, t ? load<V>(t + kt) : V{},
                     gv, hv);
                if constexpr (kG) store(g + kt, gv);
                if constexpr (kH) store(h + kt, hv);
                j = n;
              }
              for (; j < n; ++j) {  // the tail, scalar
                const std::int64_t k = k0 + j;
                const double p = static_cast<double>(e[k]) * st.r[c];
                const double ck = b.class_w ? static_cast<double>(b.class_w[k]) : 1.0;
                double cq = ck * epsK;
                if (t) cq += ck * (1.0 - eps) * static_cast<double>(t[k]);
                if constexpr (kH) {
                  double hk = ah * b.hess_factor * p * (1.0 - p);
                  if (b.hess_policy == kHessClip && !(hk >= b.hess_floor))
                    hk = hk != hk ? hk : b.hess_floor;
                  h[k] = static_cast<T>(hk * ds);
                }
                if constexpr (kG) g[k] = static_cast<T>((a * p - cq) * ds);
              }
            }
            if (b.labels && kG) {
              const double cy = b.class_w ? b.class_w[y] : 1.0;
              g[y] = static_cast<T>(static_cast<double>(g[y]) - (1.0 - eps) * cy * ds);
            }
            if (st.kmax >= 0) {
              const std::int64_t km = st.kmax;
              const double ck = b.class_w ? static_cast<double>(b.class_w[km]) : 1.0;
              const double tk = t ? static_cast<double>(t[km]) : (km == y ? 1.0 : 0.0);
              confident_fix(km, st.S, st.S1, a, ck * ((1.0 - eps) * tk + epsK), ah, ds, g, h);
            }
          }
        } else if (!lean && !ignored) {
          // Probabilities in: one pass, no softmax.
          const double ds = scale * static_cast<double>(sw) * b.gscale;
          const V vd = set1<V>(static_cast<T>(ds));
          typename Tr::Acc acc{};
          VI nanm{};
          for (std::int64_t k = 0; k < K; k += W) {
            const int live_n = (K - k < W) ? static_cast<int>(K - k) : W;
            const VI live = lane_index<V>() < live_n;
            V pv = load_live<V>(x + k, live);
            nanm |= (pv != pv) & live;
            pv = select(live, pv, set1<V>(T(1)));
            V pc = select(pv < clip, set1<V>(clip), pv);
            pc = select(pc > T(1), set1<V>(T(1)), pc);
            V c = b.class_w ? load_live<V>(b.class_w + k, live) : set1<V>(T(1));
            V q = set1<V>(epsK);
            if (t) {
              V tv = load_live<V>(t + k, live);
              nanm |= (tv != tv) & live;
              tout |= (tv < V{}) | (tv > T(1));
              q = q + (T(1) - eps) * tv;
            } else {
              q = select(lane_index<V>() + iset1<V>(static_cast<typename Tr::I>(k)) ==
                             iset1<V>(static_cast<typename Tr::I>(y)),
                         q + (T(1) - eps), q);
            }
            V cq = select(live, c * q, V{});
            if constexpr (kVArr || kVSum) acc += to_acc(cq * vlog(pc));
            V ip = T(1) / pc;
            store_n(g, k, -(cq * ip) * vd, live_n, kG);
            if constexpr (kH) {
              // fisher: q replaced by its expectation (1 - eps) p + eps/K under the model.
              V cqh = fisher ? select(live, c * ((T(1) - eps) * pc + epsK), V{}) : cq;
              store_n(h, k, max_nan1(cqh * ip * ip, floor) * vd, live_n, kH);
            }
          }
          bad = any_lane(nanm);
          value = -hsum(acc) * scale * sw;
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
