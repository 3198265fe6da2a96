// Softmax over one row, shared by the multiclass losses: the chunked online log-sum-exp.
//
// The row is cut into chunks of at most `chunk` elements (2048, or more for rows of more
// than 2048 * kMaxChunks logits). For each chunk c: its max m_c (the chunk is read from
// memory once and stays in L1 for the next loop), then e = exp(x - m_c), summed in float64
// and, when a gradient is wanted, stored into the gradient row. Finally
//   M = max_c m_c,  S = sum_c s_c exp(m_c - M),  lse = M + log S,
// and the softmax is p = e * r_c with r_c = exp(m_c - M) / S, applied by the caller while it
// writes the gradient. So the logits are read from memory once and the gradient row is
// written once; for rows larger than the caches, the second touch of the gradient row (the
// rescaling) hits L2/L3. One exp per logit (vexp_nonpos: x - m_c <= 0; probabilities below
// 2^-126 (float32) or 2^-1022 (float64) of the chunk's largest flush to 0).
//
// NaN anywhere in the row makes the statistics NaN (st.nan). Padded tail lanes hold -inf,
// whose exp is 0.
//
// Confident rows. S = 1 + S1, where 1 is the largest logit's term and S1 the sum of the
// others. Where p_max = 1 / S > 1/2 (S < 2; the largest logit is then unique), S1 is summed
// again apart from the 1 (softmax_rest), so that log S = log1p(S1) and 1 - p_max = S1 / S keep
// their relative accuracy however small S1 is: the compute-type sums above lose the terms
// that the 1 absorbs (with logits (30, 0), S1 = 9.4e-14 would be 0 in float32). The row's
// loss at its largest logit, its gradient p - 1 there and its Hessian p (1 - p) come from
// them (kmax: that logit's index; -1 where S >= 2 and S1 = S - 1 is accurate enough). One
// more pass over the row, for these rows only.

// ignore_index, passed as a double parameter: as an int64 without overflow (a value beyond
// 2^53 is not exact, but the binding has compared the labels with the exact one: every label
// outside [0, K) that reached a kernel is ignore_index, which is_ignored uses).
FL_INLINE std::int64_t ignore_index_param(double v) {
  if (!(v < 9.2e18)) return INT64_MAX;
  if (!(v > -9.2e18)) return INT64_MIN;
  return static_cast<std::int64_t>(v);
}
FL_INLINE bool is_ignored(std::int64_t y, bool has_ig, std::int64_t ig, std::int64_t K) {
  return has_ig && (y == ig || y < 0 || y >= K);
}

template <class T>
struct SoftmaxStats {
  static constexpr int kMaxChunks = 512;
  std::int64_t chunk = 0;
  int nchunks = 0;
  T m[kMaxChunks];
  double s[kMaxChunks];
  double lse = 0.0;
  double M = 0.0;      // the row's largest logit
  double log_s = 0.0;  // log sum_k exp(x_k - M) (lse = M + log_s, kept apart for accuracy)
  double S = 0.0;      // sum_k exp(x_k - M)
  double S1 = 0.0;     // S - 1, accurate (see above)
  std::int64_t kmax = -1;  // where S < 2: the index of the largest logit
  double r[kMaxChunks];  // exp(m_c - M) / S
  bool nan = false;
};

template <class T>
FL_INLINE std::int64_t softmax_chunk(std::int64_t K) {
  std::int64_t c = 2048;
  while ((K + c - 1) / c > SoftmaxStats<T>::kMaxChunks) c *= 2;
  return c;
}

// log S from S = 1 + S1: log1p(S1) for a confident row (S < 2), where S1 is accurate and S
// is not; log S elsewhere (the same value to rounding, and a cheaper function).
FL_INLINE double log_sum(double S, double S1) {
  return S < 2.0 ? __builtin_log1p(S1) : __builtin_log(S);
}

// The sum of exp(x_k - mc) over the entries of x[0, n) that are not equal to mc (float64 sums
// of the vector terms), and in kmax the index of the first entry equal to mc (-1: none).
template <class T>
FL_INLINE double softmax_rest(const T* x, std::int64_t n, T mc, std::int64_t& kmax) {
  using V = typename VecOf<T>::V;
  using Tr = Traits<V>;
  using VI = typename Tr::VI;
  constexpr int W = Tr::W;
  const V vmc = set1<V>(mc);
  typename Tr::Acc acc{};
  kmax = -1;
  for (std::int64_t k = 0; k < n; k += W) {
    const int live_n = (n - k < W) ? static_cast<int>(n - k) : W;
    const VI live = lane_index<V>() < live_n;
    const V v = select(live, load_live<V>(x + k, live), vmc);
    const VI at = v == vmc;
    if (kmax < 0 && any_lane(at & live))
      for (int j = 0; j < live_n; ++j)
        if (x[k + j] == mc) {
          kmax = k + j;
          break;
        }
    acc += to_acc(select(at, V{}, vexp_nonpos(v - vmc)));
  }
  return hsum(acc);
}

// visit(x, live, k0): called once per vector of logits at offset k0, with the lanes that are
// new in this vector set in `live` (the last vector of a chunk may overlap the previous one,
// or be padded with -inf when the row is shorter than a vector; lanes not live must not
// count); lets a loss fuse its own row sums into the same read.
template <class T, class Visit>
FL_INLINE void softmax_pass1(const T* x, std::int64_t K, T* e_out, SoftmaxStats<T>& st,
                             Visit&& visit) {
  using V = typename VecOf<T>::V;
  using Tr = Traits<V>;
  using VI = typename Tr::VI;
  constexpr int W = Tr::W;
  const T ninf = -static_cast<T>(__builtin_huge_val());
  const VI all = iset1<V>(-1);
  st.chunk = softmax_chunk<T>(K);
  st.nchunks = static_cast<int>((K + st.chunk - 1) / st.chunk);
  st.nan = false;
  VI nanm{};
  T M = ninf;
  for (int c = 0; c < st.nchunks; ++c) {
    const std::int64_t k0 = c * st.chunk;
    const std::int64_t n = (K - k0 < st.chunk) ? K - k0 : st.chunk;
    const std::int64_t nfull = n - n % W;
    const int rem = static_cast<int>(n - nfull);
    // The tail: for rows of at least W logits, the last W logits of the chunk (overlapping
    // the previous vector, with only the new lanes live); otherwise a -inf padded copy.
    const bool overlap = rem && n >= W;
    const std::int64_t tail_k = overlap ? k0 + n - W : k0 + nfull;
    V tail = set1<V>(ninf);
    VI tail_live{};
    if (overlap) {
      tail = load<V>(x + tail_k);
      tail_live = lane_index<V>() >= (W - rem);
    } else if (rem) {
      T xb[W];
      for (int j = 0; j < W; ++j) xb[j] = j < rem ? x[k0 + j] : ninf;
      tail = load<V>(xb);
      tail_live = lane_index<V>() < rem;
    }
    V vm = set1<V>(ninf);
    for (std::int64_t j = 0; j < nfull; j += W) {
      V v = load<V>(x + k0 + j);
      nanm |= (v != v);
      vm = select(v > vm, v, vm);
      visit(v, all, k0 + j);
    }
    if (rem) {
      nanm |= (tail != tail);
      vm = select(tail > vm, tail, vm);
      visit(tail, tail_live, tail_k);
    }
    const T mc = hmax(vm);
    if (mc == ninf) {  // a chunk of -inf only: its exps are 0 (and not NaN from -inf - -inf)
      if (e_out)
        for (std::int64_t j = 0; j < n; ++j) e_out[k0 + j] = T(0);
      st.m[c] = mc;
      st.s[c] = 0.0;
      continue;
    }
    const V vmc = set1<V>(mc);
    typename Tr::Acc acc{};
    // exp sums: in the compute type over runs of 32 vectors (at most 32 terms per lane),
    // then in float64.
    constexpr std::int64_t kRun = 32 * W;
    if (e_out) {
      for (std::int64_t j = 0; j < nfull;) {
        const std::int64_t jend = (nfull - j < kRun) ? nfull : j + kRun;
        V run{};
        for (; j < jend; j += W) {
          V e = vexp_nonpos(load<V>(x + k0 + j) - vmc);
          store(e_out + k0 + j, e);
          run += e;
        }
        acc += to_acc(run);
      }
      if (rem) {
        V e = vexp_nonpos(tail - vmc);
        if (overlap) {
          store(e_out + tail_k, e);  // rewrites the overlapped lanes with the same values
        } else {
          T eb[W];
          store(eb, e);
          for (int j = 0; j < rem; ++j) e_out[k0 + j] = eb[j];
        }
        acc += to_acc(select(tail_live, e, V{}));
      }
    } else {
      for (std::int64_t j = 0; j < nfull;) {
        const std::int64_t jend = (nfull - j < kRun) ? nfull : j + kRun;
        V run{};
        for (; j < jend; j += W) run += vexp_nonpos(load<V>(x + k0 + j) - vmc);
        acc += to_acc(run);
      }
      if (rem) acc += to_acc(select(tail_live, vexp_nonpos(tail - vmc), V{}));
    }
    st.m[c] = mc;
    st.s[c] = hsum(acc);
    M = mc > M ? mc : M;
  }
  st.nan = any_lane(nanm);
  double S = 0.0;
  if (st.nchunks == 1) {  // the common case: no rescaling between chunks
    S = st.s[0];
  } else {
    for (int c = 0; c < st.nchunks; ++c)
      if (st.s[c] > 0.0) S += st.s[c] * __builtin_exp(static_cast<double>(st.m[c]) - M);
  }
  double S1 = S - 1.0;
  st.kmax = -1;
  if (!st.nan && S >= 1.0 && S < 2.0) {  // a confident row: S1 apart from the largest logit's 1
    int cm = 0;
    while (st.m[cm] != M) ++cm;
    const std::int64_t k0 = cm * st.chunk;
    const std::int64_t n = (K - k0 < st.chunk) ? K - k0 : st.chunk;
    std::int64_t kk;
    S1 = softmax_rest(x + k0, n, M, kk);
    for (int c = 0; c < st.nchunks; ++c)
      if (c != cm && st.s[c] > 0.0) S1 += st.s[c] * __builtin_exp(static_cast<double>(st.m[c]) - M);
    S = 1.0 + S1;
    st.kmax = kk < 0 ? -1 : k0 + kk;
  }
  if (st.nchunks == 1) {
    st.r[0] = 1.0 / S;
  } else {
    for (int c = 0; c < st.nchunks; ++c)
      st.r[c] = st.s[c] > 0.0 ? __builtin_exp(static_cast<double>(st.m[c]) - M) / S : 0.0;
  }
  st.M = static_cast<double>(M);
  st.S = S;
  st.S1 = S1;
  st.log_s = log_sum(S, S1);
  st.lse = st.M + st.log_s;
  if (st.nan) {
    st.lse = __builtin_nan("");
    st.log_s = __builtin_nan("");
    for (int c = 0; c < st.nchunks; ++c) st.r[c] = __builtin_nan("");
  }
}

template <bool B> struct ClampTag {
  static constexpr bool value = B;
};

// A batch of short rows: softmax_rows_short's results for up to kShortBatch consecutive rows,
// kept until the batch's logarithms are taken together (short_row_logs) and each row's outputs
// are written. Batching lets a row's max and exp passes overlap the previous row's closing
// sums, and replaces one scalar log per row by a vector of them.
template <class T>
struct ShortRow {
  typename VecOf<T>::V et;  // the overlapping last vector's exps (softmax_rows_short)
  double S, S1, sx, log_s;
  std::int64_t kmax;
  T mc;
  T mn;  // the row's smallest logit (not where kExpNonposUnclamped)
  bool ok;  // the row went the short way (not ignored, sample weight not NaN, no NaN or
            // +inf logit, not all -inf)
};
constexpr int kShortBatch = 8;

// The same statistics for R rows of W <= K <= softmax_chunk(1) logits each (one chunk), as
// one short routine without the chunk machinery: about 1.5x faster at K = 100, where that
// machinery is a large part of a row (float32, AVX2, Zen 3). The R rows (x[r], results in
// *q[r]) run in lockstep, one vector of each row per step: a row's passes form one chain
// (its max, then its exps, then their sum), longer than the out-of-order core can see past
// at K = 100, so that two rows side by side take less time than one after the other; each
// row's arithmetic is the same either way (the same bits). Per row: the max mc (two running
// maxima: half the dependency chain; one MAXPS per vector, which skips NaN) and, where the
// exp needs its clamp (not on AVX-512), min mn, then e = exp(x - mc), stored into e_out[r]
// with Store and summed: S (float64, over runs of at most 32 terms per lane in the compute
// type). A NaN logit, or +inf, makes S NaN, which is
// how such a row is recognised (no NaN test per vector). The last vector overlaps the
// previous one when W does not divide K; its exps are returned in et only (e_out holds the
// full vectors' exps), for the caller's last output vector. S1 and kmax as in SoftmaxStats
// (confident rows). With sum_x, sx is the plain sum of x (for label smoothing). ok is false
// for a row holding NaN, +inf or only -inf (e_out may hold partial results): the chunked path
// handles those, and rewrites the whole row. (Such a row thus pays its exp pass twice: only
// data heavy in NaN rows would notice.)
// Where vexp_nonpos needs no clamp (AVX-512: VSCALEF), the rows' minima are not tracked and
// the exp loop is always vexp_nonpos: measured against the build with them (one thread,
// float32, 1,000 rows in L2, Xeon, median of 400 alternating calls, the same bits),
// softmax_cross_entropy 0.93x the time at K = 100, 0.97x at K = 16, 0.99x at K = 1000;
// softmax_focal 0.95x, 0.99x and 0.97x.
#if FASTLOSS_VEC_BYTES == 64 && defined(__AVX512F__) && !defined(__clang__)
constexpr bool kExpNonposUnclamped = true;
#else
constexpr bool kExpNonposUnclamped = false;
#endif

template <bool Store, int R, class T>
FL_INLINE void softmax_rows_short(const T* const* x, std::int64_t K, T* const* e_out, bool sum_x,
                                  ShortRow<T>* const* q) {
  using V = typename VecOf<T>::V;
  using Tr = Traits<V>;
  using VI = typename Tr::VI;
  constexpr int W = Tr::W;
  const T ninf = -static_cast<T>(__builtin_huge_val());
  const std::int64_t nfull = K - K % W;
  const int rem = static_cast<int>(K - nfull);
  const std::int64_t kt = K - W;               // the last vector, overlapping when rem > 0
  const VI tl = lane_index<V>() >= (W - rem);  // its new lanes
  V vm0[R], vm1[R], vn0[R], vn1[R];
  typename Tr::Acc ax[R];
  for (int r = 0; r < R; ++r) {
    vm0[r] = vm1[r] = set1<V>(ninf);
    if constexpr (!kExpNonposUnclamped)
      vn0[r] = vn1[r] = set1<V>(-ninf);  // running minima (MINPS: a NaN u leaves them)
    ax[r] = typename Tr::Acc{};
  }
  std::int64_t j = 0;
  for (; j + 2 * W <= nfull; j += 2 * W) {
    for (int r = 0; r < R; ++r) {
      const V u = load<V>(x[r] + j), v = load<V>(x[r] + j + W);
      vm0[r] = select(u > vm0[r], u, vm0[r]);  // MAXPS: a NaN u leaves vm0
      vm1[r] = select(v > vm1[r], v, vm1[r]);
      if constexpr (!kExpNonposUnclamped) {
        vn0[r] = select(u < vn0[r], u, vn0[r]);
        vn1[r] = select(v < vn1[r], v, vn1[r]);
      }
      if (sum_x) {
        ax[r] += to_acc(u);
        ax[r] += to_acc(v);
      }
    }
  }
  for (; j < nfull; j += W) {
    for (int r = 0; r < R; ++r) {
      const V u = load<V>(x[r] + j);
      vm0[r] = select(u > vm0[r], u, vm0[r]);
      if constexpr (!kExpNonposUnclamped) vn0[r] = select(u < vn0[r], u, vn0[r]);
      if (sum_x) ax[r] += to_acc(u);
    }
  }
  V tail[R];
  bool in_range = true;  // every row's logits span less than exp_nonpos_span
  V vmc[R];
  for (int r = 0; r < R; ++r) {
    tail[r] = V{};
    if (rem) {
      tail[r] = load<V>(x[r] + kt);
      vm1[r] = select(tail[r] > vm1[r], tail[r], vm1[r]);
      if constexpr (!kExpNonposUnclamped) vn1[r] = select(tail[r] < vn1[r], tail[r], vn1[r]);
      if (sum_x) ax[r] += to_acc(select(tl, tail[r], V{}));
    }
    vm0[r] = select(vm1[r] > vm0[r], vm1[r], vm0[r]);
    q[r]->mc = hmax(vm0[r]);
    q[r]->sx = sum_x ? hsum(ax[r]) : 0.0;
    vmc[r] = set1<V>(q[r]->mc);
    if constexpr (!kExpNonposUnclamped) {
      vn0[r] = select(vn1[r] < vn0[r], vn1[r], vn0[r]);
      q[r]->mn = -hmax(-vn0[r]);
      // (Rounding is monotone: with a computed span below the bound, every rounded x - mc is
      // above -exp_nonpos_span less a few ulp of it (about 1e-5 for float32), and the bound
      // leaves ln 2 to the normal range's end.)
      in_range = in_range && static_cast<double>(q[r]->mc) - static_cast<double>(q[r]->mn) <
                                 exp_nonpos_span<T>();
    }
  }
  typename Tr::Acc acc[R];
  V et[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = typename Tr::Acc{};
    et[r] = V{};
  }
  // exp(x - mc) with the clamp of vexp_nonpos (Clamp) or, when every row's logits span less
  // than exp_nonpos_span (every x - mc in the normal range: the common case), without it: the
  // same bits, three operations fewer per vector.
  auto exp_pass = [&](auto clamp) __attribute__((always_inline)) {
    auto ex = [](V u) __attribute__((always_inline)) {
      if constexpr (decltype(clamp)::value) return vexp_nonpos(u);
      else return vexp_nonpos_normal(u);
    };
    constexpr std::int64_t kRun = 32 * W;
    for (j = 0; j < nfull;) {
      const std::int64_t jend = (nfull - j < kRun) ? nfull : j + kRun;
      V run[R];
      for (int r = 0; r < R; ++r) run[r] = V{};
      for (; j < jend; j += W) {
        for (int r = 0; r < R; ++r) {
          const V ev = ex(load<V>(x[r] + j) - vmc[r]);
          if constexpr (Store) store(e_out[r] + j, ev);
          run[r] += ev;
        }
      }
      for (int r = 0; r < R; ++r) acc[r] += to_acc(run[r]);
    }
    if (rem) {  // kept in et, not stored: a store overlapping the last full vector would stall
      for (int r = 0; r < R; ++r) {
        et[r] = ex(tail[r] - vmc[r]);  // its reload (no store-to-load forwarding)
        acc[r] += to_acc(select(tl, et[r], V{}));
      }
    }
  };
  if (kExpNonposUnclamped || !in_range)
    exp_pass(ClampTag<true>{});
  else
    exp_pass(ClampTag<false>{});
  for (int r = 0; r < R; ++r) {
    ShortRow<T>& qr = *q[r];
    qr.et = et[r];
    qr.ok = false;
    if (qr.mc == ninf) continue;  // only -inf (or NaN and -inf)
    double S = hsum(acc[r]);
    if (S != S) continue;  // a NaN logit, or +inf (mc = inf, inf - inf)
    qr.S1 = S - 1.0;
    qr.kmax = -1;
    if (S < 2.0) {  // a confident row (S >= 1: the largest logit's term is 1)
      qr.S1 = softmax_rest(x[r], K, qr.mc, qr.kmax);
      S = 1.0 + qr.S1;
    }
    qr.S = S;
    qr.ok = true;
  }
}

// Rows per batch for rows of K logits: at most kShortBatch, and few enough that the batch's
// exps (left in the output rows) stay in L1 until its outputs are written.
template <class T>
FL_INLINE int short_batch(std::int64_t K) {
  const std::int64_t n = 16384 / (K * static_cast<std::int64_t>(sizeof(T)));
  return n < 1 ? 1 : (n > kShortBatch ? kShortBatch : static_cast<int>(n));
}

// log S of the batch's short rows, by log_sum's rule (log1p(S1) for the confident rows,
// S < 2, rare; log S elsewhere), log S from the float64 vector log (within 2 ulp, not libm's).
template <class T>
FL_INLINE void short_row_logs(ShortRow<T>* rs, int n) {
  constexpr int WD = Traits<vd>::W;
  for (int r0 = 0; r0 < n; r0 += WD) {
    vd s = set1<vd>(2.0);
    for (int j = 0; j < WD && r0 + j < n; ++j)
      if (rs[r0 + j].ok) s[j] = rs[r0 + j].S;
    const vd ls = vlog(s);
    for (int j = 0; j < WD && r0 + j < n; ++j) {
      ShortRow<T>& q = rs[r0 + j];
      if (q.ok) q.log_s = q.S < 2.0 ? __builtin_log1p(q.S1) : ls[j];
    }
  }
}

// The first phase of a batch of nb short rows from row i0 of b: softmax_rows_short for the
// rows that are not ignored and whose sample weight is not NaN, two at a time (exps stored
// with Store into the batch's output rows, which start at e_rows: row i0 + r at e_rows + r K),
// then the batch's logs. A row with ok = false goes the caller's general way. pf_out: the
// output rows of the next batch are prefetched for writing (not when they stream).
template <bool Store, class T>
FL_INLINE void short_rows(const RowBlock<T>& b, T* e_rows, bool pf_out, std::int64_t i0, int nb,
                          bool has_ig, std::int64_t ig, bool sum_x, ShortRow<T>* batch) {
  const std::int64_t K = b.K;
  const T* xs[2];
  T* es[2];
  ShortRow<T>* qs[2];
  int n = 0;  // rows waiting for a partner
  const std::int64_t row_bytes = K * static_cast<std::int64_t>(sizeof(T));
  for (int r = 0; r < nb; ++r) {
    const std::int64_t i = i0 + r;
    // The same row of the next batch, prefetched: its logits, and its output row ahead of the
    // stores. Measured in one process against the build without it (float32, 200,000 x 100
    // from memory, 2 threads, Xeon): softmax_cross_entropy about 0.8x the time and
    // softmax_focal about 0.85x, on AVX-512 and on AVX2; in L2 (1,000 rows, 1 thread) up to
    // 5% slower on AVX-512 for the extra instructions.
    prefetch_bytes<false>(b.logits, (i + nb) * row_bytes, row_bytes);
    if (Store && pf_out) prefetch_bytes<true>(e_rows, (r + nb) * row_bytes, row_bytes);
    const T sw = b.weight ? b.weight[i] : T(1);
    batch[r].ok = false;
    if (is_ignored(b.labels[i], has_ig, ig, K) || sw != sw) continue;
    xs[n] = b.logits + i * K;
    es[n] = Store ? e_rows + r * K : nullptr;
    qs[n] = &batch[r];
    if (++n == 2) {
      softmax_rows_short<Store, 2, T>(xs, K, es, sum_x, qs);
      n = 0;
    }
  }
  if (n == 1) softmax_rows_short<Store, 1, T>(xs, K, es, sum_x, qs);
  short_row_logs(batch, nb);
}

// Where a batch of rows' gradients (or Hessians) go. Without streaming: the block's rows. With
// it (RowBlock::stream, and rows of at most kStage elements): a stage in L1 that mirrors the
// batch's rows, which the loss fills exactly as it would the output (the exps of pass 1, then
// the results scaled in place), and which done() writes out with non-temporal stores of whole
// aligned vectors (StreamOut, simd.hpp). A plain store reads each output line from memory
// before it overwrites it; the stage saves that read (a third of the traffic of a loss that
// reads the logits once and writes the gradient once), and the arithmetic is the same, so are
// the bits. The batch's rows are consecutive in the output (RowBlock rows are contiguous).
template <class T>
struct RowOut {
  using V = typename VecOf<T>::V;
  // short_batch's rows (16 KiB), or one row of up to that many bytes.
  static constexpr int kStage = 16384 / static_cast<int>(sizeof(T));
  StreamOut<V, kStage> so;
  T* out = nullptr;
  std::int64_t K = 0;
  bool on = false;

  FL_INLINE void begin(T* o, std::int64_t k, bool want) {
    out = o;
    K = k;
    on = kHaveStoreNT && want && o != nullptr && k <= kStage;
    if (on) so.begin(o);
  }
  // Row i0 of the block, where the batch that starts there goes (rows at a stride of K).
  FL_INLINE T* rows(std::int64_t i0) { return on ? so.slot() : (out ? out + i0 * K : nullptr); }
  // The batch of nb rows is complete.
  FL_INLINE void done(int nb) {
    if (on) so.flush(static_cast<int>(nb * K));
  }
  // The block is complete: its last elements (finish_rows then fences); true if it streamed.
  FL_INLINE bool finish() {
    if (!on) return false;
    so.finish();
    return true;
  }
};

// The block's gradient and Hessian rows are complete: their last elements, then one store
// fence for both.
template <class T>
FL_INLINE void finish_rows(RowOut<T>& g, RowOut<T>& h) {
  const bool sg = g.finish(), sh = h.finish();
  if (sg || sh) store_fence();
}
