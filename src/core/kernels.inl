// fastloss — the generic kernel source, compiled once per ISA.
//
// An ISA translation unit (isa_baseline.cpp, isa_avx2.cpp, isa_avx512.cpp, the emu512
// test path, and the isa_*_rows.cpp second halves) defines FASTLOSS_ISA_NAME,
// FASTLOSS_VEC_BYTES and FASTLOSS_KERNEL_PART and includes this file; its compile flags
// choose the instructions.
// Everything here lives in namespace fastloss::<ISA> so that no inline function compiled
// with AVX-512 flags can be merged by the linker into another ISA's code; nothing from the
// standard library is instantiated here for the same reason. Only table() and the two fill
// functions leave the translation unit.
//
// Kernels see one block of contiguous values of the compute type (the driver gathers,
// converts and broadcasts), run full vectors, then one padded partial vector for the tail.

#include <cstdint>
#include <type_traits>
#include <utility>

#include "kernel_api.hpp"

namespace fastloss {
namespace FASTLOSS_ISA_NAME {

#define FASTLOSS_IN_ISA_NAMESPACE 1
#include "simd.hpp"
#include "vecmath.hpp"
#include "registry.hpp"

namespace {

template <class Loss, class T, int MODE>
struct ElemStep {
  using V = typename VecOf<T>::V;
  using Tr = Traits<V>;
  static constexpr bool kVArr = (MODE & kValueArray) != 0;
  static constexpr bool kVSum = (MODE & kValueSum) != 0;
  static constexpr bool kVal = kVArr || kVSum;
  static constexpr bool kG = (MODE & kGrad) != 0;
  static constexpr bool kH = (MODE & kHess) != 0;
  static constexpr bool kWIn = (MODE & kWeighted) != 0;
  // A loss with a weight factor (class weights read from the target) is always weighted.
  static constexpr bool kW = kWIn || Loss::has_weight_factor;

  typename Loss::template Params<T> p;  // not const: elem_kernel fixes its split flag
  const V gs;
  const V floor;
  const typename Tr::VI abs_mask;  // clears the sign bit when hessian="abs"
  const bool fisher;
  const bool omit;  // nan_policy="omit"

  explicit ElemStep(const ElemBlock<T>& b)
      : p(b.params),
        gs(set1<V>(static_cast<T>(b.gscale))),
        floor(set1<V>(b.hess_policy == kHessClip ? static_cast<T>(b.hess_floor)
                                                 : -static_cast<T>(__builtin_huge_val()))),
        abs_mask(b.hess_policy == kHessAbs ? ~iset1<V>(Tr::sign_mask) : iset1<V>(-1)),
        fisher(b.hess_policy == kHessFisher),
        omit(b.omit_nan) {}

  // PRE: lg is vlogistic(f), computed by the kernel's pre-passes (Loss::eval_logistic).
  template <bool VAL, bool G, bool H, bool PRE>
  FL_INLINE void eval(V f, V y, V a, const Logistic<V>& lg, V& l, V& g, V& h) const {
    if constexpr (PRE) Loss::template eval_logistic<VAL, G, H>(p, f, y, a, lg, l, g, h);
    else Loss::template eval<VAL, G, H>(p, f, y, a, l, g, h);
  }

  template <bool PRE = false>
  FL_INLINE void operator()(V f, V y, V w, V a, const Logistic<V>& lg, V& l, V& g, V& h) const {
    if constexpr (kH) {
      if (fisher) {
        eval<kVal, kG, false, PRE>(f, y, a, lg, l, g, h);
        h = Loss::fisher_hess(p, f, y, a);
      } else {
        eval<kVal, kG, true, PRE>(f, y, a, lg, l, g, h);
      }
      h = from_bits<V>(bits(max_nan1(h, floor)) & abs_mask);
    } else {
      eval<kVal, kG, false, PRE>(f, y, a, lg, l, g, h);
    }
    if constexpr (Loss::has_weight_factor) {
      if (Loss::weight_factor_on(p)) {
        if constexpr (kWIn) w = w * Loss::weight_factor(p, y);
        else w = Loss::weight_factor(p, y);
      } else if constexpr (!kWIn) {
        w = set1<V>(T(1));  // the products by it below fold away
      }
    }
    if constexpr (kW) {
      V ws = w * gs;
      if constexpr (kVal) l = l * w;
      if constexpr (kG) g = g * ws;
      if constexpr (kH) h = h * ws;
    } else {
      if constexpr (kG) g = g * gs;
      if constexpr (kH) h = h * gs;
    }
    if (omit) {
      auto valid = (f == f) & (y == y);
      if constexpr (kWIn) valid = valid & (w == w);
      if constexpr (Loss::aux_is_input) valid = valid & (a == a);
      if constexpr (kVal) l = select(valid, l, V{});
      if constexpr (kG) g = select(valid, g, V{});
      if constexpr (kH) h = select(valid, h, V{});
    }
  }
};

template <bool B>
struct BoolTag {
  static constexpr bool value = B;
};

template <class Loss, int K, class P, class F>
FL_INLINE void run_split(int v, P& p, F& f) {
  if constexpr (K > 0) {
    if (v == K) {
      Loss::set_split(p, K);
      f();
      return;
    }
    run_split<Loss, K - 1>(v, p, f);
  } else {
    Loss::set_split(p, 0);
    f();
  }
}

template <class Loss, class T, int MODE>
void elem_kernel(const ElemBlock<T>& b) noexcept {
  using S = ElemStep<Loss, T, MODE>;
  using V = typename S::V;
  using Tr = typename S::Tr;
  constexpr int W = Tr::W;
  S step(b);
  typename Tr::Acc acc{};
  V l{}, g{}, h{}, w{}, a{};
  typename Tr::VI outside{};
  // The 0/1 class split of the value sum (b.class1_sum): a run-time switch, off by default.
  const bool split = S::kVSum && b.class1_sum != nullptr;
  typename Tr::Acc acc1{};
  typename Tr::VI n1{}, nonbin{};
  const V one = set1<V>(T(1));
  auto split_add = [&](V y, V l, typename Tr::VI live) __attribute__((always_inline)) {
    const auto is1 = (y == one) & live;
    acc1 += to_acc(select(is1, l, V{}));
    n1 -= is1;  // true lanes are -1
    nonbin |= live & ~is1 & (y != V{});
  };
  const std::int64_t n = b.n;
  std::int64_t i = 0;
  constexpr std::int64_t kPreStretch = 256;  // (logistic_pre) the buffers of it stay in L1
  // Streaming stores (ElemBlock::stream): per output, on or off for the whole block.
  const int smask = kHaveStoreNT ? b.stream : 0;
  const bool s_v = S::kVArr && (smask & 1), s_g = S::kG && (smask & 2), s_h = S::kH && (smask & 4);
  StreamOut<V, kPreStretch> so_v, so_g, so_h;
  if (s_v) so_v.begin(b.value);
  if (s_g) so_g.begin(b.grad);
  if (s_h) so_h.begin(b.hess);
  auto flush_streams = [&](int m) __attribute__((always_inline)) {
    if (s_v) so_v.flush(m);
    if (s_g) so_g.flush(m);
    if (s_h) so_h.flush(m);
  };
  auto finish_streams = [&]() __attribute__((always_inline)) {
    if (s_v) so_v.finish();
    if (s_g) so_g.finish();
    if (s_h) so_h.finish();
  };
  // One full vector at element `at`, the j-th element of its stretch (where it is staged when
  // its output streams); the value sum in float64, per vector (DESIGN's "accumulated in
  // float64").
  auto vec = [&](std::int64_t at, std::int64_t j, const Logistic<V>& lg, auto pre)
                 __attribute__((always_inline)) {
    V f = load<V>(b.pred + at);
    V y = load<V>(b.target + at);
    if constexpr (Loss::checks_target) outside |= Loss::target_outside(y);
    if constexpr (S::kWIn) w = load<V>(b.weight + at);
    if constexpr (Loss::has_aux) {
      if (Loss::aux_on(step.p)) a = load<V>(b.aux + at);
    }
    step.template operator()<decltype(pre)::value>(f, y, w, a, lg, l, g, h);
    if constexpr (S::kVArr) store(s_v ? so_v.slot() + j : b.value + at, l);
    if constexpr (S::kVSum) {
      acc += to_acc(l);
      if (split) split_add(y, l, iset1<V>(-1));
    }
    if constexpr (S::kG) store(s_g ? so_g.slot() + j : b.grad + at, g);
    if constexpr (S::kH) store(s_h ? so_h.slot() + j : b.hess + at, h);
  };
  // The tail: one padded vector through the same code (so that an element gives the same
  // bits wherever it falls).
  auto tail = [&](auto pre) __attribute__((always_inline)) {
    const int rem = static_cast<int>(n - i);
    if (rem <= 0) return;
    T fb[W] = {}, yb[W] = {}, wb[W] = {}, ab[W] = {}, lb[W], gb[W], hb[W];
    for (int k = 0; k < rem; ++k) {
      fb[k] = b.pred[i + k];
      yb[k] = b.target[i + k];
      if constexpr (S::kWIn) wb[k] = b.weight[i + k];
      if constexpr (Loss::has_aux) ab[k] = b.aux[i + k];
    }
    if constexpr (Loss::checks_target) outside |= Loss::target_outside(load<V>(yb));
    Logistic<V> lg{};
    if constexpr (decltype(pre)::value) lg = logistic_stages<Loss>(step.p, load<V>(fb));
    step.template operator()<decltype(pre)::value>(load<V>(fb), load<V>(yb), load<V>(wb),
                                                   load<V>(ab), lg, l, g, h);
    if constexpr (S::kVSum) {
      auto live = lane_index<V>() < rem;
      acc += to_acc(select(live, l, V{}));
      if (split) split_add(load<V>(yb), l, live);
    }
    store(lb, l);
    store(gb, g);
    store(hb, h);
    for (int k = 0; k < rem; ++k) {
      if constexpr (S::kVArr) b.value[i + k] = lb[k];
      if constexpr (S::kG) b.grad[i + k] = gb[k];
      if constexpr (S::kH) b.hess[i + k] = hb[k];
    }
  };
  // AVX-512 only: the stretch kAhead elements on, prefetched (inputs, and outputs ahead of
  // their stores), while the passes over this one compute. Measured in one process against
  // the build without it, float32, N = 2e7, 2 threads, Xeon: sigmoid_cross_entropy and
  // sigmoid_focal 0.91-0.93x the time on AVX-512, whose 16-lane passes leave the hardware
  // prefetcher behind; on AVX2 1.01-1.06x (the passes are slower there, and the prefetches
  // are instructions more), so not there.
  auto prefetch_ahead = [&](std::int64_t at) __attribute__((always_inline)) {
    if constexpr (FASTLOSS_VEC_BYTES != 64) return;
    constexpr std::int64_t kAhead = 2 * kPreStretch, kBytes = kPreStretch * sizeof(T);
    const std::int64_t off = (at + kAhead) * static_cast<std::int64_t>(sizeof(T));
    prefetch_bytes<false>(b.pred, off, kBytes);
    prefetch_bytes<false>(b.target, off, kBytes);
    if constexpr (S::kWIn) prefetch_bytes<false>(b.weight, off, kBytes);
    if constexpr (Loss::has_aux) {
      if (Loss::aux_on(step.p)) prefetch_bytes<false>(b.aux, off, kBytes);
    }
    if constexpr (S::kVArr) {
      if (!s_v) prefetch_bytes<true>(b.value, off, kBytes);
    }
    if constexpr (S::kG) {
      if (!s_g) prefetch_bytes<true>(b.grad, off, kBytes);
    }
    if constexpr (S::kH) {
      if (!s_h) prefetch_bytes<true>(b.hess, off, kBytes);
    }
  };
  auto all = [&]() __attribute__((always_inline)) {
    if constexpr (Loss::logistic_pre) {
      if (Loss::logistic_on(step.p)) {
        // Three passes over each stretch of kPreStretch elements: e = exp(-|f|); r and
        // log1p(e) from e; the loss from the three. Each pass is a short dependency chain
        // per vector, so the out-of-order core overlaps many vectors; one fused pass is one
        // long chain that it cannot see past (about 1.35x slower, float32 AVX2, Zen 3).
        // A loss with a second stage (pre2: values of f and the first three alone) gets a
        // fourth pass for it before the last.
        constexpr int kX = Loss::n_pre2;
        alignas(64) T eb[kPreStretch], rb[kPreStretch], l1b[kPreStretch];
        alignas(64) T xb[kX > 0 ? kX : 1][kPreStretch];
        const bool pre2 = Loss::pre2_on(step.p);
        while (n - i >= W) {
          const std::int64_t full = (n - i) / W * W;
          const std::int64_t m = full < kPreStretch ? full : kPreStretch;
          const T* f = b.pred + i;
          prefetch_ahead(i);
          for (std::int64_t j = 0; j < m; j += W) store(eb + j, vexp_neg(-abs(load<V>(f + j))));
          for (std::int64_t j = 0; j < m; j += W) {
            V r, l1;
            vlogistic_e(load<V>(eb + j), r, l1);
            store(rb + j, r);
            store(l1b + j, l1);
          }
          auto stage1 = [&](std::int64_t j) __attribute__((always_inline)) {
            return Logistic<V>{load<V>(eb + j), load<V>(rb + j), load<V>(l1b + j), {}};
          };
          if constexpr (kX > 0) {
            if (pre2) {
              for (std::int64_t j = 0; j < m; j += W) {
                Logistic<V> lg = stage1(j);
                Loss::pre2(step.p, load<V>(f + j), lg);
                for (int q = 0; q < kX; ++q) store(xb[q] + j, lg.x[q]);
              }
            }
          }
          for (std::int64_t j = 0; j < m; j += W) {
            Logistic<V> lg = stage1(j);
            if constexpr (kX > 0) {
              if (pre2)
                for (int q = 0; q < kX; ++q) lg.x[q] = load<V>(xb[q] + j);
            }
            vec(i + j, j, lg, BoolTag<true>{});
          }
          if (smask) flush_streams(static_cast<int>(m));
          i += m;
        }
        finish_streams();
        tail(BoolTag<true>{});
        return;
      }
    }
    if (smask) {
      while (n - i >= W) {
        const std::int64_t full = (n - i) / W * W;
        const std::int64_t m = full < kPreStretch ? full : kPreStretch;
        for (std::int64_t j = 0; j < m; j += W) vec(i + j, j, Logistic<V>{}, BoolTag<false>{});
        flush_streams(static_cast<int>(m));
        i += m;
      }
      finish_streams();
    } else {
      for (; i + W <= n; i += W) vec(i, 0, Logistic<V>{}, BoolTag<false>{});
    }
    tail(BoolTag<false>{});
  };
  // Parameters that switch the whole formula (from_logits, a special exponent) are fixed to
  // constants in one copy of the loop per combination, so that eval's branches on them are
  // decided outside the loop.
  run_split<Loss, Loss::n_split - 1>(Loss::split(step.p), step.p, all);
  if (smask) store_fence();
  if constexpr (S::kVSum) *b.value_sum = hsum(acc);
  if (split) {
    *b.class1_sum = hsum(acc1);
    std::int64_t c1 = 0;
    for (int k = 0; k < W; ++k) c1 += static_cast<std::int64_t>(n1[k]);
    *b.class1_count = c1;
    *b.non_binary = any_lane(nonbin) ? 1 : 0;
  }
  if constexpr (Loss::checks_target) {
    if (b.bad_target && any_lane(outside)) *b.bad_target = 1;
  }
}

// Sum of the effective weights (sample weight, 1 when absent, times the loss's weight
// factor) of the elements that count, and their number.
template <class Loss, class T>
void weight_kernel(const WeightBlock<T>& b) noexcept {
  using V = typename VecOf<T>::V;
  using Tr = Traits<V>;
  constexpr int W = Tr::W;
  typename Tr::Acc sum{}, cnt{};
  const V one = set1<V>(T(1));
  const typename Loss::template Params<T> p(b.params);
  auto accumulate = [&](V f, V y, V w, V a, typename Tr::VI live) {
    auto valid = live;
    if (b.omit_nan) valid = valid & (f == f) & (y == y) & (w == w);
    if constexpr (Loss::aux_is_input) {
      if (b.omit_nan) valid = valid & (a == a);
    } else {
      (void)a;
    }
    if constexpr (Loss::has_weight_factor) w = w * Loss::weight_factor(p, y);
    sum += to_acc(select(valid, w, V{}));
    cnt += to_acc(select(valid, one, V{}));
  };
  std::int64_t i = 0;
  const auto all = iset1<V>(-1);
  for (; i + W <= b.n; i += W) {
    accumulate(load<V>(b.pred + i), load<V>(b.target + i),
               b.weight ? load<V>(b.weight + i) : one,
               Loss::aux_is_input ? load<V>(b.aux + i) : V{}, all);
  }
  const int rem = static_cast<int>(b.n - i);
  if (rem > 0) {
    T fb[W] = {}, yb[W] = {}, wb[W] = {}, ab[W] = {};
    for (int k = 0; k < rem; ++k) {
      fb[k] = b.pred[i + k];
      yb[k] = b.target[i + k];
      wb[k] = b.weight ? b.weight[i + k] : T(1);
      if constexpr (Loss::aux_is_input) ab[k] = b.aux[i + k];
    }
    accumulate(load<V>(fb), load<V>(yb), load<V>(wb), load<V>(ab), lane_index<V>() < rem);
  }
  *b.weight_sum = hsum(sum);
  *b.n_valid = static_cast<std::int64_t>(hsum(cnt));
}

#include "pairwise_kernels.inl"

template <int FN, class V>
FL_INLINE V apply_math(V x) {
  if constexpr (FN == kExp) return vexp(x);
  if constexpr (FN == kLog) return vlog(x);
  if constexpr (FN == kLog1p) return vlog1p(x);
  if constexpr (FN == kExpm1) return vexpm1(x);
  if constexpr (FN == kSoftplus) return vsoftplus(x);
  if constexpr (FN == kSigmoid) return vsigmoid(x);
  if constexpr (FN == kLogSigmoid) return vlog_sigmoid(x);
}

template <int FN, class T>
void math_kernel(const T* x, T* y, std::int64_t n) noexcept {
  using V = typename VecOf<T>::V;
  constexpr int W = Traits<V>::W;
  std::int64_t i = 0;
  for (; i + W <= n; i += W) store(y + i, apply_math<FN>(load<V>(x + i)));
  const int rem = static_cast<int>(n - i);
  if (rem > 0) {
    T xb[W] = {}, yb[W];
    for (int k = 0; k < rem; ++k) xb[k] = x[i + k];
    store(yb, apply_math<FN>(load<V>(xb)));
    for (int k = 0; k < rem; ++k) y[i + k] = yb[k];
  }
}

// Table entries: a kernel for each used mode (mode_used), null for the others, which are
// then never instantiated.
template <class Loss, class T, int M>
constexpr ElemFn<T> elem_entry() {
  if constexpr (mode_used(M)) return &elem_kernel<Loss, T, (M & ~kOmitNaN)>;
  else return nullptr;
}
template <class Loss, class T, int M>
constexpr RowFn<T> row_entry() {
  if constexpr (mode_used(M)) return &Loss::template rows<M, T>;
  else return nullptr;
}
template <class Loss, class T, int M>
constexpr GroupFn<T> group_entry() {
  if constexpr (mode_used(M)) return &group_kernel<Loss, T, M>;
  else return nullptr;
}

template <class Loss, class T, int... M>
void fill_modes(ElemFn<T>* row, std::integer_sequence<int, M...>) {
  ((row[M] = elem_entry<Loss, T, M>()), ...);
}

template <class Loss, class T, int... M>
void fill_row_modes(RowFn<T>* row, std::integer_sequence<int, M...>) {
  ((row[M] = row_entry<Loss, T, M>()), ...);
}

template <class Loss, class T, int... M>
void fill_group_modes(GroupFn<T>* row, std::integer_sequence<int, M...>) {
  ((row[M] = group_entry<Loss, T, M>()), ...);
}

template <class T, int... F>
void fill_math(void (**row)(const T*, T*, std::int64_t) noexcept, std::integer_sequence<int, F...>) {
  ((row[F] = &math_kernel<F, T>), ...);
}

}  // namespace

// The ISA's table is filled by two translation units that include this file (built in
// parallel, and each half the size for the compiler): part 0 (isa_<name>.cpp) the
// elementwise kernels, the weight pass and the vector math, and table(); part 1
// (isa_<name>_rows.cpp) the row-wise and pairwise kernels.
void fill_elementwise(KernelTable& t);
void fill_rowwise(KernelTable& t);

#if FASTLOSS_KERNEL_PART == 0
void fill_elementwise(KernelTable& t) {
  t.isa = FASTLOSS_STRINGIFY(FASTLOSS_ISA_NAME);
  t.vec_bytes = FASTLOSS_VEC_BYTES;
  int id = 0;
#define FASTLOSS_FILL_LOSS(name, S)                                                   \
  fill_modes<S, float>(t.elem_f32[id], std::make_integer_sequence<int, kModeCount>{});  \
  fill_modes<S, double>(t.elem_f64[id], std::make_integer_sequence<int, kModeCount>{}); \
  t.weight_f32[id] = &weight_kernel<S, float>;                                         \
  t.weight_f64[id] = &weight_kernel<S, double>;                                        \
  t.has_weight_factor[id] = S::has_weight_factor;                                      \
  t.has_aux[id] = S::has_aux;                                                          \
  t.target_domain[id] = S::target_domain;                                              \
  t.aux_is_input[id] = S::aux_is_input;                                                \
  t.stream_pays[id] = kHaveStoreNT && (FASTLOSS_VEC_BYTES >= 64 || !S::logistic_pre);  \
  ++id;
  FASTLOSS_ELEMENTWISE_LOSSES(FASTLOSS_FILL_LOSS)
#undef FASTLOSS_FILL_LOSS
  fill_math<float>(t.math_f32, std::make_integer_sequence<int, kNumMathFn>{});
  fill_math<double>(t.math_f64, std::make_integer_sequence<int, kNumMathFn>{});
}

const KernelTable& table() {
  static const KernelTable t = [] {
    KernelTable r{};
    fill_elementwise(r);
    fill_rowwise(r);
    return r;
  }();
  return t;
}
#elif FASTLOSS_KERNEL_PART == 1
// A row loss's `streams` member (true: it writes through RowOut), false when it has none.
template <class S, class = void>
struct RowStreams {
  static constexpr bool value = false;
};
template <class S>
struct RowStreams<S, std::void_t<decltype(S::streams)>> {
  static constexpr bool value = S::streams;
};

void fill_rowwise(KernelTable& t) {
  int id = 0;
#define FASTLOSS_FILL_ROW_LOSS(name, S)                                                  \
  fill_row_modes<S, float>(t.row_f32[id], std::make_integer_sequence<int, kRowModes>{});  \
  fill_row_modes<S, double>(t.row_f64[id], std::make_integer_sequence<int, kRowModes>{}); \
  t.row_stream_pays[id] = kHaveStoreNT && RowStreams<S>::value;                          \
  ++id;
  FASTLOSS_ROWWISE_LOSSES(FASTLOSS_FILL_ROW_LOSS)
#undef FASTLOSS_FILL_ROW_LOSS
  id = 0;
#define FASTLOSS_FILL_GROUP_LOSS(name, S)                                                    \
  fill_group_modes<S, float>(t.group_f32[id], std::make_integer_sequence<int, kRowModes>{});  \
  fill_group_modes<S, double>(t.group_f64[id], std::make_integer_sequence<int, kRowModes>{}); \
  ++id;
  FASTLOSS_PAIRWISE_LOSSES(FASTLOSS_FILL_GROUP_LOSS)
#undef FASTLOSS_FILL_GROUP_LOSS
}
#else
#error "FASTLOSS_KERNEL_PART must be 0 or 1"
#endif

}  // namespace FASTLOSS_ISA_NAME
}  // namespace fastloss
