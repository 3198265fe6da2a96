// fastloss — the parallel driver (see driver.hpp for the contract).
#include "driver.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FASTLOSS_HAVE_ATFORK 1
#endif

namespace fastloss {

namespace {

std::atomic<int> g_threads{0};
std::atomic<std::int64_t> g_serial_threshold{kSerialThreshold};
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(__clang__)
constexpr std::int64_t kStreamDefault = kStreamMinBytes;
constexpr bool kStreamAvailable = true;
#else
constexpr std::int64_t kStreamDefault = kStreamNever;
constexpr bool kStreamAvailable = false;
#endif
std::atomic<std::int64_t> g_stream_min_bytes{kStreamDefault};

// Thread budget shared by concurrent calls (docs/design.md, "Threads"): the threads that
// running calls hold, calling threads included; the worker threads among them (held beyond
// the calling threads) and the most workers held at once (for tests).
std::atomic<int> g_threads_in_use{0};
std::atomic<int> g_workers_in_use{0};
std::atomic<int> g_workers_peak{0};
// A team of more than one thread has run in this process; set in a forked child of such a
// process, whose OpenMP runtime may wait forever for the parent's worker threads.
std::atomic<bool> g_ran_team{false};
std::atomic<bool> g_forked_child{false};

#ifdef FASTLOSS_HAVE_ATFORK
void on_fork_child() {
  if (g_ran_team.load()) g_forked_child.store(true);
  g_threads_in_use.store(0);  // calls running in other parent threads do not exist here
  g_workers_in_use.store(0);
}
[[maybe_unused]] const int g_atfork_registered = pthread_atfork(nullptr, nullptr, &on_fork_child);
#endif

// Holds the threads of one call for its duration: min(wanted, budget left), at least the
// calling thread itself.
class ThreadLease {
 public:
  explicit ThreadLease(int wanted) {
    const int budget = get_num_threads();
    int cur = g_threads_in_use.load();
    do {
      n_ = std::max(1, std::min(wanted, budget - cur));
    } while (!g_threads_in_use.compare_exchange_weak(cur, cur + n_));
    if (n_ > 1) {
      const int workers = g_workers_in_use.fetch_add(n_ - 1) + n_ - 1;
      int peak = g_workers_peak.load();
      while (workers > peak && !g_workers_peak.compare_exchange_weak(peak, workers)) {
      }
      g_ran_team.store(true);
    }
  }
  ~ThreadLease() {
    if (n_ > 1) g_workers_in_use.fetch_sub(n_ - 1);
    g_threads_in_use.fetch_sub(n_);
  }
  ThreadLease(const ThreadLease&) = delete;
  ThreadLease& operator=(const ThreadLease&) = delete;
  int threads() const { return n_; }

 private:
  int n_ = 1;
};

// IEEE half -> float, exact (every half is a float).
float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1f;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal half: normalise
      int e = -1;
      do {
        mant <<= 1;
        ++e;
      } while ((mant & 0x400u) == 0);
      bits = sign | (static_cast<std::uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <class S>
inline S read_as(const char* p) {
  S v;
  std::memcpy(&v, p, sizeof(S));
  return v;
}

template <class T>
inline T convert_one(Src src, const char* p) {
  switch (src) {
    case Src::f16: return static_cast<T>(half_to_float(read_as<std::uint16_t>(p)));
    case Src::f32: return static_cast<T>(read_as<float>(p));
    case Src::f64: return static_cast<T>(read_as<double>(p));
    case Src::f128: return static_cast<T>(read_as<long double>(p));
    case Src::b1: return static_cast<T>(read_as<std::uint8_t>(p) != 0);
    case Src::i8: return static_cast<T>(read_as<std::int8_t>(p));
    case Src::i16: return static_cast<T>(read_as<std::int16_t>(p));
    case Src::i32: return static_cast<T>(read_as<std::int32_t>(p));
    case Src::i64: return static_cast<T>(read_as<std::int64_t>(p));
    case Src::u8: return static_cast<T>(read_as<std::uint8_t>(p));
    case Src::u16: return static_cast<T>(read_as<std::uint16_t>(p));
    case Src::u32: return static_cast<T>(read_as<std::uint32_t>(p));
    case Src::u64: return static_cast<T>(read_as<std::uint64_t>(p));
  }
  return T(0);
}

// Walks elements [start, start + count) of the call's index space in C order.
struct Cursor {
  int ndim;
  const std::int64_t* shape;
  std::int64_t idx[kMaxDims];

  Cursor(const ElemCall& c, std::int64_t start) : ndim(c.ndim), shape(c.shape) {
    for (int d = ndim - 1; d >= 0; --d) {
      idx[d] = start % shape[d];
      start /= shape[d];
    }
  }
  std::int64_t offset(const std::int64_t* strides) const {
    std::int64_t o = 0;
    for (int d = 0; d < ndim; ++d) o += idx[d] * strides[d];
    return o;
  }
  // Elements left in the innermost row from the current position.
  std::int64_t row_left() const { return shape[ndim - 1] - idx[ndim - 1]; }
  void advance(std::int64_t k) {
    idx[ndim - 1] += k;
    for (int d = ndim - 1; d > 0 && idx[d] >= shape[d]; --d) {
      idx[d] = 0;
      ++idx[d - 1];
    }
  }
};

template <class T>
void gather(const ElemCall& c, const Operand& op, std::int64_t start, std::int64_t count, T* dst) {
  Cursor cur(c, start);
  const std::int64_t s = op.strides[c.ndim - 1];
  std::int64_t k = 0;
  while (k < count) {
    const std::int64_t m = std::min(count - k, cur.row_left());
    const char* p = op.data + cur.offset(op.strides);
    if (op.src == Src::f32 && sizeof(T) == 4) {
      for (std::int64_t j = 0; j < m; ++j) dst[k + j] = static_cast<T>(read_as<float>(p + j * s));
    } else if (op.src == Src::f64 && sizeof(T) == 8) {
      for (std::int64_t j = 0; j < m; ++j) dst[k + j] = static_cast<T>(read_as<double>(p + j * s));
    } else {
      for (std::int64_t j = 0; j < m; ++j) dst[k + j] = convert_one<T>(op.src, p + j * s);
    }
    k += m;
    cur.advance(m);
  }
}

template <class T>
void scatter(const ElemCall& c, const OutOperand& op, std::int64_t start, std::int64_t count,
             const T* src) {
  Cursor cur(c, start);
  const std::int64_t s = op.strides[c.ndim - 1];
  std::int64_t k = 0;
  while (k < count) {
    const std::int64_t m = std::min(count - k, cur.row_left());
    char* p = op.data + cur.offset(op.strides);
    for (std::int64_t j = 0; j < m; ++j) std::memcpy(p + j * s, src + k + j, sizeof(T));
    k += m;
    cur.advance(m);
  }
}

enum class Access { absent, direct, scalar, gathered };

template <class T>
Access input_access(const ElemCall& c, const Operand& op) {
  if (!op.data) return Access::absent;
  bool all_zero = true;
  for (int d = 0; d < c.ndim; ++d) all_zero = all_zero && op.strides[d] == 0;
  if (all_zero) return Access::scalar;
  const bool native = (sizeof(T) == 4 && op.src == Src::f32) || (sizeof(T) == 8 && op.src == Src::f64);
  if (native && c.ndim == 1 && op.strides[0] == static_cast<std::int64_t>(sizeof(T)))
    return Access::direct;
  return Access::gathered;
}

template <class T>
bool output_direct(const ElemCall& c, const OutOperand& op) {
  return c.ndim == 1 && op.strides[0] == static_cast<std::int64_t>(sizeof(T));
}

// Per-thread scratch: one block of T per operand that needs it, 64-byte aligned.
struct Scratch {
  std::unique_ptr<char[]> raw;
  char* base = nullptr;
  std::size_t per_thread = 0;
  Scratch(int nthreads, int nbuf, std::size_t block_bytes) {
    per_thread = static_cast<std::size_t>(nbuf) * block_bytes;
    if (per_thread == 0) return;
    raw.reset(new char[per_thread * static_cast<std::size_t>(nthreads) + 64]);
    base = raw.get() + (64 - reinterpret_cast<std::uintptr_t>(raw.get()) % 64) % 64;
  }
  char* thread_base(int tid) const { return base ? base + per_thread * tid : nullptr; }
};

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Resolves the input pointers of one block: direct views, the thread's broadcast scalar
// buffer, or the thread's gather buffer.
constexpr int kInputs = 4;  // pred, target, weight, aux

template <class T>
struct InputPlan {
  Access acc[kInputs];
  const Operand* ops[kInputs];
  int slot[kInputs];  // scratch slot, -1 for none
};

template <class T>
struct Run {
  const ElemCall& c;
  InputPlan<T> in;
  bool out_direct[3];
  const OutOperand* outs[3];
  int out_slot[3];
  int nbuf = 0;
  int stream = 0;  // ElemBlock::stream: the direct outputs that the kernels stream

  explicit Run(const ElemCall& call) : c(call) {
    const Operand* ops[kInputs] = {&c.pred, &c.target, &c.weight, &c.aux};
    for (int k = 0; k < kInputs; ++k) {
      in.ops[k] = ops[k];
      in.acc[k] = input_access<T>(c, *ops[k]);
      in.slot[k] = (in.acc[k] == Access::scalar || in.acc[k] == Access::gathered) ? nbuf++ : -1;
    }
    const OutOperand* os[3] = {&c.value, &c.grad, &c.hess};
    std::int64_t out_bytes = 0;
    for (int k = 0; k < 3; ++k) {
      outs[k] = os[k];
      out_direct[k] = !os[k]->data || output_direct<T>(c, *os[k]);
      out_slot[k] = out_direct[k] ? -1 : nbuf++;
      if (os[k]->data) out_bytes += c.n * static_cast<std::int64_t>(sizeof(T));
    }
    // Streaming stores (driver.hpp): the contiguous outputs aligned to their element size
    // (NumPy's always are; a view into a byte buffer may not be).
    if (c.table->stream_pays[c.loss] &&
        out_bytes >= g_stream_min_bytes.load(std::memory_order_relaxed)) {
      for (int k = 0; k < 3; ++k) {
        if (os[k]->data && out_direct[k] &&
            reinterpret_cast<std::uintptr_t>(os[k]->data) % sizeof(T) == 0)
          stream |= 1 << k;
      }
    }
  }

  T* buf(char* tbase, int slot) const {
    return reinterpret_cast<T*>(tbase + static_cast<std::size_t>(slot) * kBlock * sizeof(T));
  }

  void prepare_thread(char* tbase) const {
    for (int k = 0; k < kInputs; ++k) {
      if (in.acc[k] == Access::scalar) {
        const T v = convert_one<T>(in.ops[k]->src, in.ops[k]->data);
        T* b = buf(tbase, in.slot[k]);
        for (std::int64_t j = 0; j < kBlock; ++j) b[j] = v;
      }
    }
  }

  const T* input(char* tbase, int k, std::int64_t start, std::int64_t count) const {
    switch (in.acc[k]) {
      case Access::absent: return nullptr;
      case Access::direct: return reinterpret_cast<const T*>(in.ops[k]->data) + start;
      case Access::scalar: return buf(tbase, in.slot[k]);
      case Access::gathered: {
        T* b = buf(tbase, in.slot[k]);
        gather<T>(c, *in.ops[k], start, count, b);
        return b;
      }
    }
    return nullptr;
  }

  T* output(char* tbase, int k, std::int64_t start) const {
    if (!outs[k]->data) return nullptr;
    if (out_direct[k]) return reinterpret_cast<T*>(outs[k]->data) + start;
    return buf(tbase, out_slot[k]);
  }

  void flush(char* tbase, int k, std::int64_t start, std::int64_t count) const {
    if (outs[k]->data && !out_direct[k]) scatter<T>(c, *outs[k], start, count, buf(tbase, out_slot[k]));
  }
};

template <class T>
ElemFn<T> elem_fn(const ElemCall& c) {
  if constexpr (sizeof(T) == 4) return c.table->elem_f32[c.loss][c.mode];
  else return c.table->elem_f64[c.loss][c.mode];
}

template <class T>
void run_typed(ElemCall& c) {
  const std::int64_t nblocks = (c.n + kBlock - 1) / kBlock;
  if (nblocks == 0) {
    c.value_sum = 0.0;
    return;
  }
  Run<T> run(c);
  const ThreadLease lease(threads_for(c.n, nblocks));
  const int nt = lease.threads();
  Scratch scratch(nt, run.nbuf, kBlock * sizeof(T));
  std::vector<double> partial((c.mode & kValueSum) ? nblocks : 0);
  std::vector<unsigned char> bad(nblocks, 0);
  const bool split = c.class_split && (c.mode & kValueSum);
  std::vector<double> split_sum(split ? nblocks : 0);
  std::vector<std::int64_t> split_count(split ? nblocks : 0);
  std::vector<unsigned char> split_other(split ? nblocks : 0);
  const ElemFn<T> fn = elem_fn<T>(c);

#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
    char* tbase = scratch.thread_base(thread_id());
    run.prepare_thread(tbase);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (std::int64_t b = 0; b < nblocks; ++b) {
      const std::int64_t start = b * kBlock;
      const std::int64_t count = std::min(kBlock, c.n - start);
      ElemBlock<T> blk;
      blk.pred = run.input(tbase, 0, start, count);
      blk.target = run.input(tbase, 1, start, count);
      blk.weight = run.input(tbase, 2, start, count);
      blk.aux = run.input(tbase, 3, start, count);
      blk.value = run.output(tbase, 0, start);
      blk.grad = run.output(tbase, 1, start);
      blk.hess = run.output(tbase, 2, start);
      blk.n = count;
      blk.params = c.params;
      blk.gscale = c.gscale;
      blk.hess_policy = c.hess_policy;
      blk.hess_floor = c.hess_floor;
      blk.value_sum = partial.empty() ? nullptr : &partial[b];
      blk.bad_target = &bad[b];
      blk.omit_nan = (c.mode & kOmitNaN) != 0;
      blk.stream = run.stream;
      blk.class1_sum = split ? &split_sum[b] : nullptr;
      blk.class1_count = split ? &split_count[b] : nullptr;
      blk.non_binary = split ? &split_other[b] : nullptr;
      fn(blk);
      for (int k = 0; k < 3; ++k) run.flush(tbase, k, start, count);
    }
  }
  c.value_sum = partial.empty() ? 0.0 : pairwise_sum(partial.data(), nblocks);
  c.bad_target = std::find(bad.begin(), bad.end(), 1) != bad.end();
  if (split) {
    c.class1_sum = pairwise_sum(split_sum.data(), nblocks);
    c.class1_count = 0;
    for (auto v : split_count) c.class1_count += v;
    c.non_binary = std::find(split_other.begin(), split_other.end(), 1) != split_other.end();
  }
}

template <class T>
WeightResult weight_typed(const ElemCall& c, bool omit_nan) {
  WeightResult r;
  const std::int64_t nblocks = (c.n + kBlock - 1) / kBlock;
  if (nblocks == 0) return r;
  Run<T> run(c);
  const ThreadLease lease(threads_for(c.n, nblocks));
  const int nt = lease.threads();
  Scratch scratch(nt, run.nbuf, kBlock * sizeof(T));
  std::vector<double> wsum(nblocks);
  std::vector<std::int64_t> nvalid(nblocks);
  WeightFn<T> fn;
  if constexpr (sizeof(T) == 4) fn = c.table->weight_f32[c.loss];
  else fn = c.table->weight_f64[c.loss];
  // Only the inputs are read; pred and target take part in the NaN check.
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
    char* tbase = scratch.thread_base(thread_id());
    run.prepare_thread(tbase);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (std::int64_t b = 0; b < nblocks; ++b) {
      const std::int64_t start = b * kBlock;
      const std::int64_t count = std::min(kBlock, c.n - start);
      WeightBlock<T> blk;
      blk.pred = run.input(tbase, 0, start, count);
      blk.target = run.input(tbase, 1, start, count);
      blk.weight = run.input(tbase, 2, start, count);
      // An aux operand that is data (margin_ranking's x2) takes part in the NaN check.
      blk.aux = c.table->aux_is_input[c.loss] ? run.input(tbase, 3, start, count) : nullptr;
      blk.n = count;
      blk.params = c.params;
      blk.omit_nan = omit_nan;
      blk.weight_sum = &wsum[b];
      blk.n_valid = &nvalid[b];
      fn(blk);
    }
  }
  r.weight_sum = pairwise_sum(wsum.data(), nblocks);
  for (std::int64_t b = 0; b < nblocks; ++b) r.n_valid += nvalid[b];
  return r;
}

template <class T>
void rows_typed(RowCall& c) {
  const std::int64_t rpb = std::max<std::int64_t>(1, kBlock / std::max<std::int64_t>(1, c.K));
  const std::int64_t nblocks = (c.rows + rpb - 1) / rpb;
  if (nblocks == 0) {
    c.value_sum = 0.0;
    return;
  }
  const ThreadLease lease(threads_for(c.rows * c.K, nblocks));
  const int nt = lease.threads();
  std::vector<double> partial((c.mode & kValueSum) ? nblocks : 0);
  std::vector<unsigned char> bad(nblocks, 0);
  RowFn<T> fn;
  if constexpr (sizeof(T) == 4) fn = c.table->row_f32[c.loss][c.mode & (kRowModes - 1)];
  else fn = c.table->row_f64[c.loss][c.mode & (kRowModes - 1)];
  const T* logits = static_cast<const T*>(c.logits);
  const T* tprob = static_cast<const T*>(c.tprob);
  const T* weight = static_cast<const T*>(c.weight);
  T* value = static_cast<T*>(c.value);
  T* grad = static_cast<T*>(c.grad);
  T* hess = static_cast<T*>(c.hess);
  // Streaming stores (driver.hpp) for the gradient and Hessian rows: the same bound on the
  // call's array outputs, and outputs aligned to their element size. A gradient alone in rows
  // of fewer than kRowStreamMinK logits does not stream under a nonzero bound: measured on the
  // Xeon (float32, 2e7 logits, 2 threads, 10 alternating runs, docs/design.md), plain stores
  // took 0.91x the time at K = 100, 0.93x at 250, 0.98x at 500 and 1.07x at 1000 for
  // softmax_cross_entropy value_and_grad (softmax_focal alike), while grad_hess at K = 100
  // streamed faster. A bound of 0 streams every call (as the tests force it).
  constexpr std::int64_t kRowStreamMinK = 768;
  int stream = 0;
  {
    const std::int64_t out_bytes =
        ((grad ? 1 : 0) + (hess ? 1 : 0)) * c.rows * c.K * static_cast<std::int64_t>(sizeof(T));
    const std::int64_t bound = g_stream_min_bytes.load(std::memory_order_relaxed);
    const bool short_lone = !hess && c.K < kRowStreamMinK && bound > 0;
    if (c.table->row_stream_pays[c.loss] && out_bytes > 0 && out_bytes >= bound && !short_lone) {
      if (grad && reinterpret_cast<std::uintptr_t>(grad) % sizeof(T) == 0) stream |= 2;
      if (hess && reinterpret_cast<std::uintptr_t>(hess) % sizeof(T) == 0) stream |= 4;
    }
  }
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (std::int64_t b = 0; b < nblocks; ++b) {
    const std::int64_t r0 = b * rpb;
    const std::int64_t nr = std::min(rpb, c.rows - r0);
    RowBlock<T> blk;
    blk.logits = logits + r0 * c.K;
    blk.rows = nr;
    blk.K = c.K;
    blk.labels = c.labels ? c.labels + r0 : nullptr;
    blk.tprob = tprob ? tprob + r0 * c.K : nullptr;
    blk.weight = weight ? weight + r0 : nullptr;
    blk.class_w = static_cast<const T*>(c.class_w);
    blk.class_aux = static_cast<const T*>(c.class_aux);
    blk.value = value ? value + r0 : nullptr;
    blk.grad = grad ? grad + r0 * c.K : nullptr;
    blk.hess = hess ? hess + r0 * c.K : nullptr;
    blk.params = c.params;
    blk.gscale = c.gscale;
    blk.hess_policy = c.hess_policy;
    blk.hess_floor = c.hess_floor;
    blk.hess_factor = c.hess_factor;
    blk.omit_nan = c.omit_nan;
    blk.value_sum = partial.empty() ? nullptr : &partial[b];
    blk.bad_target = &bad[b];
    blk.stream = stream;
    fn(blk);
  }
  c.value_sum = partial.empty() ? 0.0 : pairwise_sum(partial.data(), nblocks);
  c.bad_target = std::find(bad.begin(), bad.end(), 1) != bad.end();
}

}  // namespace

void run_rowwise(RowCall& c) {
  check_mode(c.mode & (kRowModes - 1));
  if (c.dtype == DType::f32) rows_typed<float>(c);
  else rows_typed<double>(c);
}

void check_mode(int mode) {
  if (!mode_used(mode))
    throw std::invalid_argument("fastloss: no kernel for mode " + std::to_string(mode) +
                                " (no output, or per-element values and their sum at once)");
}

double pairwise_sum(const double* x, std::int64_t n) {
  if (n <= 8) {
    double s = 0.0;
    for (std::int64_t i = 0; i < n; ++i) s += x[i];
    return s;
  }
  const std::int64_t h = n / 2;
  return pairwise_sum(x, h) + pairwise_sum(x + h, n - h);
}

void coalesce_dims(ElemCall& c) {
  Operand* ins[4] = {&c.pred, &c.target, &c.weight, &c.aux};
  OutOperand* outs[3] = {&c.value, &c.grad, &c.hess};
  // Drop size-1 dims.
  int nd = 0;
  for (int d = 0; d < c.ndim; ++d) {
    if (c.shape[d] == 1) continue;
    c.shape[nd] = c.shape[d];
    for (auto* o : ins) o->strides[nd] = o->strides[d];
    for (auto* o : outs) o->strides[nd] = o->strides[d];
    ++nd;
  }
  if (nd == 0) {  // a single element
    c.shape[0] = 1;
    for (auto* o : ins) o->strides[0] = o->data ? o->itemsize : 0;
    for (auto* o : outs) o->strides[0] = static_cast<std::int64_t>(c.dtype == DType::f32 ? 4 : 8);
    c.ndim = 1;
    return;
  }
  // Merge d into d+1 when every operand steps over dim d as one run of dim d+1.
  int out_nd = 0;
  for (int d = 0; d < nd; ++d) {
    if (out_nd > 0) {
      const int p = out_nd - 1;
      bool ok = true;
      for (auto* o : ins)
        ok = ok && (!o->data || o->strides[p] == o->strides[d] * c.shape[d]);
      for (auto* o : outs)
        ok = ok && (!o->data || o->strides[p] == o->strides[d] * c.shape[d]);
      if (ok) {
        c.shape[p] *= c.shape[d];
        for (auto* o : ins) o->strides[p] = o->strides[d];
        for (auto* o : outs) o->strides[p] = o->strides[d];
        continue;
      }
    }
    c.shape[out_nd] = c.shape[d];
    for (auto* o : ins) o->strides[out_nd] = o->strides[d];
    for (auto* o : outs) o->strides[out_nd] = o->strides[d];
    ++out_nd;
  }
  c.ndim = out_nd;
}

void run_elementwise(ElemCall& c) {
  check_mode(c.mode);
  if (c.dtype == DType::f32) run_typed<float>(c);
  else run_typed<double>(c);
}

WeightResult run_weight_pass(const ElemCall& c, bool omit_nan) {
  return c.dtype == DType::f32 ? weight_typed<float>(c, omit_nan) : weight_typed<double>(c, omit_nan);
}

void set_num_threads(int n) { g_threads.store(n > 0 ? n : 0); }
int explicit_num_threads() { return g_threads.load(); }

int get_num_threads() {
  const int n = g_threads.load();
  if (n > 0) return n;
#ifdef _OPENMP
  return std::max(1, omp_get_max_threads());
#else
  return 1;
#endif
}

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

int openmp_version() {
#ifdef _OPENMP
  return _OPENMP;
#else
  return 0;
#endif
}

int workers_peak(bool reset) {
  const int peak = g_workers_peak.load();
  if (reset) g_workers_peak.store(g_workers_in_use.load());
  return peak;
}

bool forked_child_serial() { return g_forked_child.load(); }

std::int64_t stream_min_bytes() { return g_stream_min_bytes.load(); }
std::int64_t set_stream_min_bytes(std::int64_t n) {
  return g_stream_min_bytes.exchange(n < 0 ? kStreamDefault : n);
}
bool streaming_stores_available() { return kStreamAvailable; }

std::int64_t serial_threshold() { return g_serial_threshold.load(); }
void set_serial_threshold(std::int64_t n) { g_serial_threshold.store(n < 0 ? kSerialThreshold : n); }

int threads_for(std::int64_t n_elements, std::int64_t n_blocks) {
  if (n_elements < g_serial_threshold.load()) return 1;
  if (g_forked_child.load()) return 1;
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;  // called from inside someone else's parallel region
#endif
  const std::int64_t nt = std::min<std::int64_t>(get_num_threads(), n_blocks);
  return static_cast<int>(std::max<std::int64_t>(1, nt));
}

}  // namespace fastloss
