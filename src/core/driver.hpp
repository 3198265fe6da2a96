// fastloss — the parallel driver: blocks, threads, gathering, deterministic reductions.
//
// Plain C++17, no Python. The bindings validate every argument and build a call; the driver
// then runs it without the GIL and cannot fail.
//
// Determinism: the flat index space is cut into blocks of kBlock elements, independent of
// the thread count; each block's float64 partial sum lands in its own slot, and the slots
// are combined by a fixed pairwise tree. Any thread count gives the same bits.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernel_api.hpp"

namespace fastloss {

constexpr std::int64_t kBlock = 8192;  // elements per block (a multiple of every lane width)
// Below this many elements a call runs on one thread: the cost of waking the OpenMP team
// (a few microseconds) exceeds the gain. Measured with bench/threshold.py; see docs/design.md.
constexpr std::int64_t kSerialThreshold = 16384;  // 2 blocks; 1.2x at 2 threads (docs/design.md)
// The threshold in force (kSerialThreshold unless bench/threshold.py changes it to measure).
std::int64_t serial_threshold();
void set_serial_threshold(std::int64_t n);
constexpr int kMaxDims = 64;

// Source element types an input operand may have; converted to the compute type in blocks.
enum class Src : int { f16, f32, f64, f128, b1, i8, i16, i32, i64, u8, u16, u32, u64 };

struct Operand {
  const char* data = nullptr;  // null: absent
  Src src = Src::f64;
  int itemsize = 8;
  std::int64_t strides[kMaxDims] = {};  // bytes, over the call's (coalesced) dims; 0 = broadcast
};

struct OutOperand {
  char* data = nullptr;  // null: not requested
  std::int64_t strides[kMaxDims] = {};
};

struct ElemCall {
  const KernelTable* table = nullptr;
  int loss = 0;
  DType dtype = DType::f64;
  std::int64_t n = 0;
  int ndim = 0;
  std::int64_t shape[kMaxDims] = {};
  Operand pred, target, weight, aux;
  OutOperand value, grad, hess;
  int mode = 0;  // ModeBits
  double params[kMaxParams] = {};
  double gscale = 1.0;
  int hess_policy = kHessExact;
  double hess_floor = 0.0;
  int nthreads = 1;
  bool class_split = false;  // with kValueSum: also the 0/1 class split of the sum (below)
  // results
  double value_sum = 0.0;
  bool bad_target = false;  // a target outside the loss's domain was seen
  double class1_sum = 0.0;        // class_split: the value sum over targets equal to 1
  std::int64_t class1_count = 0;  // class_split: how many targets equal 1
  bool non_binary = false;        // class_split: a target neither 0 nor 1 was seen
};

// A multiclass call: contiguous rows of K logits (the bindings convert when needed).
struct RowCall {
  const KernelTable* table = nullptr;
  int loss = 0;
  DType dtype = DType::f64;
  std::int64_t rows = 0;
  std::int64_t K = 0;
  const void* logits = nullptr;
  const std::int64_t* labels = nullptr;
  const void* tprob = nullptr;
  const void* weight = nullptr;
  const void* class_w = nullptr;
  const void* class_aux = nullptr;
  void* value = nullptr;
  void* grad = nullptr;
  void* hess = nullptr;
  int mode = 0;  // kValueArray | kValueSum | kGrad | kHess
  double params[kMaxParams] = {};
  double gscale = 1.0;
  int hess_policy = kHessExact;
  double hess_floor = 0.0;
  double hess_factor = 1.0;
  bool omit_nan = false;
  // result
  double value_sum = 0.0;
  bool bad_target = false;
};

// Throws std::invalid_argument for a mode that has no kernel (see mode_used).
void check_mode(int mode);

// Runs a multiclass kernel over blocks of max(1, block_size / K) rows.
void run_rowwise(RowCall& c);

struct WeightResult {
  double weight_sum = 0.0;
  std::int64_t n_valid = 0;
};

// Merges adjacent dims that every operand walks with one stride, drops size-1 dims.
void coalesce_dims(ElemCall& c);
// Runs the loss kernel over the whole call.
void run_elementwise(ElemCall& c);
// Sum of weights (1 where absent) and count of elements without NaN when omit_nan.
WeightResult run_weight_pass(const ElemCall& c, bool omit_nan);

// Threads: an explicit setting (set_num_threads) wins; otherwise the calling thread's
// omp_get_max_threads(), which OMP_NUM_THREADS and threadpoolctl set.
void set_num_threads(int n);  // n <= 0: back to the default
int get_num_threads();
int explicit_num_threads();
bool openmp_enabled();
int openmp_version();  // _OPENMP (yyyymm), 0 without OpenMP
// Threads a call of n_elements in n_blocks wants: 1 below the serial threshold, inside an
// enclosing OpenMP parallel region and in a child forked after a team ran; otherwise
// min(get_num_threads(), n_blocks). Concurrent calls then share get_num_threads() threads
// between them (driver.cpp, ThreadLease).
int threads_for(std::int64_t n_elements, std::int64_t n_blocks);
// The most OpenMP worker threads (beyond the calling threads) that running calls held at
// once since the last reset (for tests); never more than get_num_threads() - 1.
int workers_peak(bool reset);
// True in a child forked after this process ran a multi-threaded call: it runs serially.
bool forked_child_serial();

// Streaming stores (docs/design.md, "Streaming stores"). In a call whose array outputs
// (values, gradients, Hessians) total at least stream_min_bytes() bytes, the elementwise
// kernels write the contiguous outputs with non-temporal stores: a plain store reads each
// cache line of the output before it overwrites it, a third of the memory traffic of a loss
// that reads two arrays and writes one. The kernels stage each stretch of results in L1 and
// write whole aligned vectors from there, so the arithmetic, the blocks and the results'
// bits are the same either way. Off by default where the build has no such stores.
constexpr std::int64_t kStreamMinBytes = std::int64_t(16) << 20;  // measured: docs/design.md
constexpr std::int64_t kStreamNever = INT64_MAX;
std::int64_t stream_min_bytes();
// n < 0: back to the built-in bound; returns the previous bound.
std::int64_t set_stream_min_bytes(std::int64_t n);
bool streaming_stores_available();

// Deterministic pairwise sum of x[0..n).
double pairwise_sum(const double* x, std::int64_t n);

}  // namespace fastloss
