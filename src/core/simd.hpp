// fastloss — portable SIMD lanes.
//
// Included only from kernels.inl, inside the namespace of one ISA (fastloss::baseline,
// fastloss::avx2, ...), after the standard headers it needs. It must not include anything.
//
// Why GCC/Clang vector extensions rather than intrinsics: one generic source is compiled once
// per ISA, and the width of a lane type follows FASTLOSS_VEC_BYTES (16 for the x86-64 and
// NEON baselines, 32 for AVX2, 64 for AVX-512). Arithmetic, comparisons and bit operations on
// these types lower to the native instructions of the ISA the translation unit is compiled
// for; a width wider than the hardware's is split by the compiler, never scalarised.

#ifndef FASTLOSS_VEC_BYTES
#error "FASTLOSS_VEC_BYTES must be defined by the ISA translation unit"
#endif

#define FL_INLINE inline __attribute__((always_inline))

typedef float vf __attribute__((vector_size(FASTLOSS_VEC_BYTES)));
typedef double vd __attribute__((vector_size(FASTLOSS_VEC_BYTES)));
typedef std::int32_t vi32 __attribute__((vector_size(FASTLOSS_VEC_BYTES)));
typedef std::int64_t vi64 __attribute__((vector_size(FASTLOSS_VEC_BYTES)));
typedef std::uint32_t vu32 __attribute__((vector_size(FASTLOSS_VEC_BYTES)));  // for shifts
typedef std::uint64_t vu64 __attribute__((vector_size(FASTLOSS_VEC_BYTES)));  // that wrap
// Float64 accumulator for float lanes: two native double vectors (the low and high halves
// of the float vector, converted). A single double vector of twice the native width would
// make the compiler shuffle it through memory.
struct FAcc {
  vd lo{}, hi{};
};

template <class V> struct Traits;

template <> struct Traits<vf> {
  using T = float;
  using VI = vi32;
  using VU = vu32;
  using I = std::int32_t;
  using Acc = FAcc;
  static constexpr int W = FASTLOSS_VEC_BYTES / 4;
  static constexpr int mant_bits = 23;
  static constexpr I exp_bias = 127;
  static constexpr I exp_mask = 0xff;
  static constexpr I mant_mask = 0x7fffff;
  static constexpr I sign_mask = static_cast<I>(0x80000000u);
  static constexpr I one_bits = 0x3f800000;  // bits of 1.0f
};

template <> struct Traits<vd> {
  using T = double;
  using VI = vi64;
  using VU = vu64;
  using I = std::int64_t;
  using Acc = vd;
  static constexpr int W = FASTLOSS_VEC_BYTES / 8;
  static constexpr int mant_bits = 52;
  static constexpr I exp_bias = 1023;
  static constexpr I exp_mask = 0x7ff;
  static constexpr I mant_mask = 0xfffffffffffffLL;
  static constexpr I sign_mask = static_cast<I>(0x8000000000000000ull);
  static constexpr I one_bits = 0x3ff0000000000000LL;  // bits of 1.0
};

template <class T> struct VecOf;
template <> struct VecOf<float> { using V = vf; };
template <> struct VecOf<double> { using V = vd; };

// ---- construction, memory --------------------------------------------------
template <class V> FL_INLINE V set1(typename Traits<V>::T x) {
  // x - 0 keeps -0.0 and NaN payloads; the compiler emits one broadcast.
  return x - V{};
}
template <class V> FL_INLINE typename Traits<V>::VI iset1(typename Traits<V>::I x) {
  return x - typename Traits<V>::VI{};
}
template <class V> FL_INLINE V load(const typename Traits<V>::T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
template <class V> FL_INLINE void store(typename Traits<V>::T* p, V v) {
  __builtin_memcpy(p, &v, sizeof(V));
}

// ---- bit casts and selection ----------------------------------------------
template <class V> FL_INLINE typename Traits<V>::VI bits(V v) {
  return (typename Traits<V>::VI)v;  // same-size vector cast: a bit cast
}
template <class V> FL_INLINE V from_bits(typename Traits<V>::VI v) {
  return (V)v;
}
// m is a comparison result (all ones or all zeros per lane). Written as the vector ?: (not
// as and/andnot/or of the bits) so that the compiler sees the comparison and the choice
// together: select(x < lo, lo, x) becomes one MAXPS (which has exactly these semantics, NaN
// and signed zeros included), select(m, 0, x) one ANDNPS, and other choices a blend in the
// floating-point domain.
template <class V> FL_INLINE V select(typename Traits<V>::VI m, V a, V b) {
  return m ? a : b;
}
template <class V> FL_INLINE V abs(V x) {
  return from_bits<V>(bits(x) & ~iset1<V>(Traits<V>::sign_mask));
}
// copysign(1, x) for x != 0, and 0 for x == 0 (NaN gives NaN): the subgradient PyTorch uses.
template <class V> FL_INLINE V sign(V x) {
  V one = set1<V>(1);
  V s = from_bits<V>(bits(one) | (bits(x) & iset1<V>(Traits<V>::sign_mask)));
  s = select(x == V{}, V{}, s);
  return select(x != x, x, s);
}
// max/min that return a when a is NaN (a NaN input propagates through the first argument).
template <class V> FL_INLINE V max_nan1(V a, V b) { return select(a < b, b, a); }
template <class V> FL_INLINE V min_nan1(V a, V b) { return select(a > b, b, a); }

// 1 / x for x known to be finite, positive and far from the range's ends (the callers pass
// products of values in [1, 4]). float32 on AVX-512: VRCP14PS (relative error below 2^-14)
// and one Newton step, r + r (1 - x r), whose error is below 2^-27 before its own rounding:
// within about half an ulp more than a division's, in 3 instructions that pipeline, where
// VDIVPS on 16 lanes occupies the divider for 8-10 cycles per vector. Elsewhere a division.
template <class V> FL_INLINE V recip_bounded(V x) {
#if FASTLOSS_VEC_BYTES == 64 && defined(__AVX512F__) && !defined(__clang__)
  if constexpr (sizeof(typename Traits<V>::T) == 4) {
    const V r = __builtin_ia32_rcp14ps512_mask(x, x, static_cast<unsigned short>(0xffff));
    return r + r * (typename Traits<V>::T(1) - x * r);
  }
#endif
  return typename Traits<V>::T(1) / x;
}

// Integer -> float conversion for small |i| (< 2^22) without a 64-bit convert instruction:
// adding i to the bits of 1.5 * 2^mant_bits gives exactly 1.5 * 2^mant_bits + i.
template <class V> FL_INLINE V small_int_to_float(typename Traits<V>::VI i) {
  using Tr = Traits<V>;
  const V magic = set1<V>(static_cast<typename Tr::T>(1.5) *
                          static_cast<typename Tr::T>(typename Tr::I(1) << Tr::mant_bits));
  return from_bits<V>(bits(magic) + i) - magic;
}

// ---- reductions into float64 --------------------------------------------------
#if FASTLOSS_VEC_BYTES == 16
#define FASTLOSS_LO_HALF 0, 1
#define FASTLOSS_HI_HALF 2, 3
#elif FASTLOSS_VEC_BYTES == 32
#define FASTLOSS_LO_HALF 0, 1, 2, 3
#define FASTLOSS_HI_HALF 4, 5, 6, 7
#elif FASTLOSS_VEC_BYTES == 64
#define FASTLOSS_LO_HALF 0, 1, 2, 3, 4, 5, 6, 7
#define FASTLOSS_HI_HALF 8, 9, 10, 11, 12, 13, 14, 15
#else
#error "unsupported FASTLOSS_VEC_BYTES"
#endif

// The float64 image of a float vector, as accumulator halves.
struct FHalves {
  vd lo, hi;
};
#if FASTLOSS_VEC_BYTES == 32 && defined(__AVX__) && !defined(__clang__)
// GCC lowers the generic form below for 8 floats into four 128-bit conversions and inserts
// (through the stack); VCVTPS2PD of each 128-bit half is two instructions fewer per vector
// in every float32 reduction loop.
typedef float vf_half __attribute__((vector_size(16)));
FL_INLINE FHalves to_acc(vf v) {
  const vf_half lo = __builtin_ia32_ps_ps256(v);
  const vf_half hi = __builtin_ia32_vextractf128_ps256(v, 1);
  return {__builtin_ia32_cvtps2pd256(lo), __builtin_ia32_cvtps2pd256(hi)};
}
#elif FASTLOSS_VEC_BYTES == 64 && defined(__AVX512F__) && !defined(__clang__)
// The same for 16 floats: GCC lowers the generic form into four 128-bit conversions, two
// extracts and two inserts; VCVTPS2PD of each 256-bit half (the low one is free, the high one
// one shuffle) is five instructions fewer per vector (measured in one process against the
// build without it: sigmoid_focal 0.95x the time in L2, Xeon, float32, one thread).
typedef float vf_half __attribute__((vector_size(32)));
FL_INLINE FHalves to_acc(vf v) {
  const vf_half lo = __builtin_shufflevector(v, v, FASTLOSS_LO_HALF);
  const vf_half hi = __builtin_shufflevector(v, v, FASTLOSS_HI_HALF);
  constexpr int kCurrentRounding = 4;  // _MM_FROUND_CUR_DIRECTION (the conversion is exact)
  return {__builtin_ia32_cvtps2pd512_mask(lo, vd{}, 0xff, kCurrentRounding),
          __builtin_ia32_cvtps2pd512_mask(hi, vd{}, 0xff, kCurrentRounding)};
}
#else
FL_INLINE FHalves to_acc(vf v) {
  return {__builtin_convertvector(__builtin_shufflevector(v, v, FASTLOSS_LO_HALF), vd),
          __builtin_convertvector(__builtin_shufflevector(v, v, FASTLOSS_HI_HALF), vd)};
}
#endif
// A lane vector pinned in a register (an empty asm): a product passed through it is rounded
// on its own in every kernel, so that a sum of two products contracts the same way (one FMA,
// with the other product's rounding) whatever the surrounding code lets the compiler see.
template <class V> FL_INLINE V pinned(V v) {
#if (defined(__x86_64__) || defined(__i386__)) && FASTLOSS_VEC_BYTES == 64 && !defined(__AVX512F__)
  __asm__("" : "+m"(v));  // the emulated 64-byte vectors (a test path) live in two registers
#elif defined(__x86_64__) || defined(__i386__)
  __asm__("" : "+v"(v));
#elif defined(__aarch64__)
  __asm__("" : "+w"(v));
#endif
  return v;
}
// A float64 vector as it is, pinned, so that the compiler cannot contract the product that
// formed it into the accumulator's add (l * w + acc as one FMA in one kernel mode and two
// roundings in another would give the value sums of __call__ and value_and_grad different
// last bits).
FL_INLINE vd to_acc(vd v) { return pinned(v); }
FL_INLINE FAcc& operator+=(FAcc& a, const FHalves& h) {
  a.lo += h.lo;
  a.hi += h.hi;
  return a;
}

// A vector of N lanes of E (N a power of two; the halves of the native vectors below).
template <class E, int N>
struct VecN {
  typedef E type __attribute__((vector_size(N * sizeof(E))));
};

// A fixed order, so that every run of one ISA gives the same bits: the upper half added to
// the lower half, until one lane is left (log2 W dependent additions, not W - 1: a sum is
// on the path from a row's exps to its outputs).
template <int N, std::size_t... I>
FL_INLINE double hsum_halves(typename VecN<double, N>::type a, std::index_sequence<I...>) {
  if constexpr (N == 1) {
    return a[0];
  } else {
    using H = typename VecN<double, N / 2>::type;
    const H lo = __builtin_shufflevector(a, a, I...);
    const H hi = __builtin_shufflevector(a, a, (I + N / 2)...);
    return hsum_halves<N / 2>(lo + hi, std::make_index_sequence<(N >= 4 ? N / 4 : 1)>{});
  }
}
FL_INLINE double hsum(vd a) {
  return hsum_halves<Traits<vd>::W>(a, std::make_index_sequence<Traits<vd>::W / 2>{});
}
FL_INLINE double hsum(const FAcc& a) { return hsum(a.lo + a.hi); }

// Lane index vector 0, 1, ..., W-1 (for masking partial vectors).
template <class V> FL_INLINE typename Traits<V>::VI lane_index() {
  typename Traits<V>::VI r;
  for (int i = 0; i < Traits<V>::W; ++i) r[i] = i;
  return r;
}

// Horizontal max: a tree of adjacent pairs (lane 2i against 2i + 1, as one vector of the
// even lanes against one of the odd lanes), log2 W dependent steps. Each step keeps its left
// operand unless the right one is greater, over contiguous runs of lanes, so the result is
// the first lane (in lane order) holding the maximum, exactly as a left-to-right scan: a NaN
// lane is skipped, except in lane 0 (the result is then NaN), and of +0 and -0 the first
// wins. (NaN is tracked separately.)
template <class E, int N, std::size_t... I>
FL_INLINE E hmax_pairs(typename VecN<E, N>::type v, std::index_sequence<I...>) {
  if constexpr (N == 1) {
    return v[0];
  } else {
    using H = typename VecN<E, N / 2>::type;
    const H even = __builtin_shufflevector(v, v, (2 * I)...);
    const H odd = __builtin_shufflevector(v, v, (2 * I + 1)...);
    return hmax_pairs<E, N / 2>(odd > even ? odd : even,
                                std::make_index_sequence<(N >= 4 ? N / 4 : 1)>{});
  }
}
template <class V> FL_INLINE typename Traits<V>::T hmax(V v) {
  constexpr int W = Traits<V>::W;
  return hmax_pairs<typename Traits<V>::T, W>(v, std::make_index_sequence<W / 2>{});
}
// True when any lane of a comparison mask is set.
// (A lane-by-lane loop with || makes GCC spill the mask and branch per lane; here one VPTEST
// where the ISA has it, else an OR of 64-bit pieces.)
template <class VI> FL_INLINE bool any_lane(VI m) {
  static_assert(sizeof(VI) == FASTLOSS_VEC_BYTES, "a mask of the native width");
  typedef long long vq __attribute__((vector_size(FASTLOSS_VEC_BYTES)));
  const vq u = (vq)m;
#if defined(__AVX__) && FASTLOSS_VEC_BYTES == 32
  return !__builtin_ia32_ptestz256(u, u);
#elif defined(__SSE4_1__) && FASTLOSS_VEC_BYTES == 16
  return !__builtin_ia32_ptestz128(u, u);
#else
  long long r = 0;
  for (int i = 0; i < FASTLOSS_VEC_BYTES / 8; ++i) r |= u[i];
  return r != 0;
#endif
}

// Software prefetch of the cache lines holding bytes [off, off + n) from p, for reading
// (Write = false) or ahead of stores (true: PREFETCHW only where the compile flags enable
// PRFCHW, which the x86 ISA flags here do not: PREFETCHT0 like a read, which still takes the
// line's miss off the stores' path). The address is formed as an integer: it may lie past the
// end of p's array (a prefetch never faults, and a line that is not used again only costs a
// little bandwidth).
template <bool Write>
FL_INLINE void prefetch_bytes(const void* p, std::int64_t off, std::int64_t n) {
  const auto a = reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(off);
  const std::uintptr_t first = a & ~std::uintptr_t{63}, last = (a + n - 1) & ~std::uintptr_t{63};
  for (std::uintptr_t c = first; c <= last; c += 64)
    __builtin_prefetch(reinterpret_cast<const void*>(c), Write ? 1 : 0, 3);
}

// Loads the live lanes of p (a prefix of the vector), 0 elsewhere; never reads past them.
template <class V> FL_INLINE V load_live(const typename Traits<V>::T* p, typename Traits<V>::VI live) {
  constexpr int W = Traits<V>::W;
  if (live[W - 1]) return load<V>(p);
  typename Traits<V>::T buf[W] = {};
  for (int i = 0; i < W && live[i]; ++i) buf[i] = p[i];
  return load<V>(buf);
}
// Stores the first n lanes of v at base + k (when `enabled`).
template <class V> FL_INLINE void store_n(typename Traits<V>::T* base, std::int64_t k, V v, int n,
                                          bool enabled) {
  constexpr int W = Traits<V>::W;
  if (!enabled) return;
  if (n == W) {
    store(base + k, v);
    return;
  }
  typename Traits<V>::T buf[W];
  store(buf, v);
  for (int i = 0; i < n; ++i) base[k + i] = buf[i];
}

// ---- non-temporal stores --------------------------------------------------
// store_nt(p, v): v to p, which is aligned to sizeof(V), with a non-temporal store where the
// ISA has one (x86: MOVNTPS/MOVNTPD of the widest register the flags allow; a lane type wider
// than that is stored in pieces), a plain store elsewhere. kHaveStoreNT says which.
#if defined(__clang__)
constexpr bool kHaveStoreNT = true;
template <class V> FL_INLINE void store_nt(typename Traits<V>::T* p, V v) {
  __builtin_nontemporal_store(v, reinterpret_cast<V*>(p));
}
#elif defined(__GNUC__) && defined(__SSE2__)
constexpr bool kHaveStoreNT = true;
#if defined(__AVX512F__)
constexpr int kNTBytes = 64;
#elif defined(__AVX__)
constexpr int kNTBytes = 32;
#else
constexpr int kNTBytes = 16;
#endif
typedef float nt_vf __attribute__((vector_size(kNTBytes)));
typedef double nt_vd __attribute__((vector_size(kNTBytes)));
FL_INLINE void store_nt_native(float* p, nt_vf v) {
#if defined(__AVX512F__)
  __builtin_ia32_movntps512(p, v);
#elif defined(__AVX__)
  __builtin_ia32_movntps256(p, v);
#else
  __builtin_ia32_movntps(p, v);
#endif
}
FL_INLINE void store_nt_native(double* p, nt_vd v) {
#if defined(__AVX512F__)
  __builtin_ia32_movntpd512(p, v);
#elif defined(__AVX__)
  __builtin_ia32_movntpd256(p, v);
#else
  __builtin_ia32_movntpd(p, v);
#endif
}
template <class T> struct NTVec;
template <> struct NTVec<float> { using V = nt_vf; };
template <> struct NTVec<double> { using V = nt_vd; };
template <class V> FL_INLINE void store_nt(typename Traits<V>::T* p, V v) {
  using T = typename Traits<V>::T;
  using NV = typename NTVec<T>::V;
  static_assert(sizeof(V) % kNTBytes == 0, "lane type narrower than the NT store");
  for (int k = 0; k < static_cast<int>(sizeof(V) / kNTBytes); ++k) {
    NV piece;
    __builtin_memcpy(&piece, reinterpret_cast<const char*>(&v) + k * kNTBytes, kNTBytes);
    store_nt_native(p + k * (kNTBytes / static_cast<int>(sizeof(T))), piece);
  }
}
#else
constexpr bool kHaveStoreNT = false;
template <class V> FL_INLINE void store_nt(typename Traits<V>::T* p, V v) { store(p, v); }
#endif

// Orders this thread's non-temporal stores before its later stores (SFENCE on x86).
FL_INLINE void store_fence() {
#if defined(__SSE__) || defined(__x86_64__)
  __builtin_ia32_sfence();
#else
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

// The streamed outputs of one block (ElemBlock::stream). The kernel stores each stretch's
// vectors into `stage` (L1) at the positions it would have stored them in the output; flush()
// then writes the staged elements out with non-temporal stores of whole vectors at 64-byte
// aligned addresses (the first elements of the block up to such an address, and the last
// ones past the last whole vector, with plain stores). A staged vector may straddle two
// output vectors: the elements left over wait in the stage for the next stretch.
template <class V, int kStretch>
struct StreamOut {
  using T = typename Traits<V>::T;
  static constexpr int W = Traits<V>::W;
  alignas(64) T stage[kStretch + 2 * W];
  T* dst = nullptr;
  std::int64_t wpos = 0;  // elements of dst written
  int pend = 0;           // staged elements not yet written (dst[wpos ...])
  int head = 0;           // elements still to write plainly before dst's first 64-byte line

  FL_INLINE void begin(T* d) {
    dst = d;
    wpos = 0;
    pend = 0;
    const auto a = reinterpret_cast<std::uintptr_t>(d);
    head = static_cast<int>(((64 - a % 64) % 64) / sizeof(T));
  }
  FL_INLINE T* slot() { return stage + pend; }  // where the stretch's element 0 goes
  // The kernel has staged m more elements (m >= 1).
  FL_INLINE void flush(int m) {
    const int total = pend + m;
    int s = 0;
    if (head > 0) {
      s = head < total ? head : total;
      for (int k = 0; k < s; ++k) dst[wpos + k] = stage[k];
      wpos += s;
      head -= s;
    }
    int full = 0;
    if (head == 0) {
      full = (total - s) / W * W;
      for (int q = 0; q < full; q += W) store_nt(dst + wpos + q, load<V>(stage + s + q));
      wpos += full;
    }
    pend = total - s - full;  // < W
    if (pend > 0) store(stage, load<V>(stage + s + full));
  }
  // Writes what is still staged (plain stores); dst[0 .. wpos) is then complete.
  FL_INLINE void finish() {
    for (int k = 0; k < pend; ++k) dst[wpos + k] = stage[k];
    wpos += pend;
    pend = 0;
  }
};
