// fastloss — the interface between the parallel driver and the per-ISA kernels.
//
// Plain C++17, no Python. Each ISA translation unit exports one KernelTable; the dispatcher
// picks one at import. Kernels work on one block of contiguous, already-converted values
// and never allocate, throw or touch Python.
#pragma once
#include <cstdint>

#include "registry.hpp"

#define FASTLOSS_STRINGIFY_(x) #x
#define FASTLOSS_STRINGIFY(x) FASTLOSS_STRINGIFY_(x)

namespace fastloss {

enum class DType : int { f32 = 0, f64 = 1 };

// Bits of a kernel's mode: what it computes and how.
enum ModeBits : int {
  kValueArray = 1,  // per-element w * l into value
  kValueSum = 2,    // sum of w * l into *value_sum (float64)
  kGrad = 4,        // w * g * gscale into grad
  kHess = 8,        // w * h * gscale into hess
  kWeighted = 16,   // weight points to per-element sample weights
  kOmitNaN = 32,    // elements with a NaN operand contribute 0 everywhere (passed to the
                    // kernel as ElemBlock::omit_nan; both modes share one kernel)
  kModeCount = 64,
};

enum HessPolicy : int { kHessExact = 0, kHessClip = 1, kHessAbs = 2, kHessFisher = 3 };

constexpr int kMaxParams = 8;

// The domain an elementwise loss checks its targets against (for the error message).
enum TargetDomain : int {
  kDomainUnit = 0,  // probabilities in [0, 1]
  kDomainSign = 1,  // labels in {-1, +1} or {0, 1}
};

template <class T>
struct ElemBlock {
  const T* pred;
  const T* target;
  const T* weight;  // null unless kWeighted
  const T* aux;     // the loss's per-element parameter (e.g. pos_weight), null if it has none
  T* value;         // null unless kValueArray
  T* grad;          // null unless kGrad
  T* hess;          // null unless kHess
  std::int64_t n;
  const double* params;
  double gscale;      // 1, or 1 / sum(w) for reduction="mean"
  int hess_policy;    // HessPolicy
  double hess_floor;  // for kHessClip
  double* value_sum;  // out, when kValueSum
  unsigned char* bad_target;  // out: set to 1 when a target lies outside the loss's domain
  bool omit_nan;      // kOmitNaN: a run-time switch inside one kernel (half the instantiations)
  // Outputs to write with non-temporal stores (driver.hpp, "Streaming stores"): bit 0 value,
  // bit 1 grad, bit 2 hess. Only the ISA's full vectors stream; the bits of the results do not
  // depend on it.
  int stream;
  // Optional, with kValueSum only (null: not wanted): the value sum over the elements whose
  // target is exactly 1, their count, and whether any target is neither 0 nor 1 (the
  // per-class breakdown of 0/1 labels in the same pass as the total).
  double* class1_sum;
  std::int64_t* class1_count;
  unsigned char* non_binary;
};

// Sum of effective weights and count of valid (non-NaN) elements of one block.
template <class T>
struct WeightBlock {
  const T* pred;
  const T* target;
  const T* weight;  // may be null (weight 1)
  const T* aux;
  std::int64_t n;
  const double* params;
  bool omit_nan;
  double* weight_sum;
  std::int64_t* n_valid;
};

// A block of rows of a multiclass loss: logits [rows, K] contiguous, one target per row
// (class index, or a probability row), one value per row.
template <class T>
struct RowBlock {
  const T* logits;
  std::int64_t rows;
  std::int64_t K;
  const std::int64_t* labels;  // class indices, or null
  const T* tprob;              // [rows, K] target probabilities, or null
  const T* weight;             // per-row sample weight, or null
  const T* class_w;            // [K] class weights, or null
  const T* class_aux;          // [K] a per-class parameter of the loss (e.g. focal alpha), or null
  T* value;                    // per row, when kValueArray
  T* grad;                     // [rows, K], when kGrad
  T* hess;                     // [rows, K], when kHess
  const double* params;
  double gscale;
  int hess_policy;
  double hess_floor;
  double hess_factor;  // 1, 2 ("xgboost") or K/(K-1) ("lightgbm")
  bool omit_nan;
  double* value_sum;
  unsigned char* bad_target;  // out: set to 1 when a probability target lies outside [0, 1]
  // Outputs that the kernel may write with non-temporal stores (as ElemBlock::stream: bit 1
  // grad, bit 2 hess; softmax_rows.hpp, RowOut). Kernels that do not stream ignore it.
  int stream;
};

// A block of whole groups of a pairwise ranking loss: documents by position, groups as
// offsets into `order` (the documents of group g are order[offsets[g] .. offsets[g+1]), or
// those positions themselves when order is null).
template <class T>
struct GroupBlock {
  const T* scores;
  const T* rel;
  const std::int64_t* offsets;
  const std::int64_t* order;  // or null
  std::int64_t g0, g1;        // the groups of this block
  const T* gweight;           // per group, or null
  T* value;                   // per group, or per document (value_per_doc), when kValueArray
  bool value_per_doc;
  T* grad;                    // per document, when kGrad
  T* hess;                    // per document, when kHess
  const double* params;
  double gscale;
  int hess_policy;
  double hess_floor;
  bool omit_nan;
  double* value_sum;
  T* scratch;                 // 6 * scratch_cap values, the calling thread's
  std::int64_t scratch_cap;   // >= the largest group
};

template <class T>
using ElemFn = void (*)(const ElemBlock<T>&) noexcept;
template <class T>
using GroupFn = void (*)(const GroupBlock<T>&) noexcept;
template <class T>
using RowFn = void (*)(const RowBlock<T>&) noexcept;
template <class T>
using WeightFn = void (*)(const WeightBlock<T>&) noexcept;

#define FASTLOSS_COUNT_LOSS(name, S) +1
constexpr int kNumElementwise = 0 FASTLOSS_ELEMENTWISE_LOSSES(FASTLOSS_COUNT_LOSS);
constexpr int kNumRowwise = 0 FASTLOSS_ROWWISE_LOSSES(FASTLOSS_COUNT_LOSS);
constexpr int kNumPairwise = 0 FASTLOSS_PAIRWISE_LOSSES(FASTLOSS_COUNT_LOSS);
constexpr int kRowModes = 16;  // kValueArray | kValueSum | kGrad | kHess
#undef FASTLOSS_COUNT_LOSS

// The modes the bindings ask for: at least one output, and per-element values or their sum,
// never both. The others get no kernel (a null table entry, which the driver refuses): with
// kOmitNaN a run-time switch, 22 elementwise kernels per loss and dtype instead of 64, and 11
// row and group kernels instead of 16.
constexpr bool mode_used(int mode) {
  return (mode & (kValueArray | kValueSum | kGrad | kHess)) != 0 &&
         (mode & (kValueArray | kValueSum)) != (kValueArray | kValueSum);
}

// Vector math, exposed for accuracy tests: f(x[i]) for i < n.
enum MathFn : int {
  kExp = 0, kLog, kLog1p, kExpm1, kSoftplus, kSigmoid, kLogSigmoid, kNumMathFn
};

struct KernelTable {
  const char* isa;
  int vec_bytes;
  ElemFn<float> elem_f32[kNumElementwise][kModeCount];
  ElemFn<double> elem_f64[kNumElementwise][kModeCount];
  // Per loss: the sum of effective weights (sample weight x the loss's weight factor).
  WeightFn<float> weight_f32[kNumElementwise];
  WeightFn<double> weight_f64[kNumElementwise];
  bool has_weight_factor[kNumElementwise];
  bool has_aux[kNumElementwise];
  int target_domain[kNumElementwise];
  bool aux_is_input[kNumElementwise];
  // Whether streaming stores pay for the loss on this ISA (kernels.inl, fill_elementwise).
  bool stream_pays[kNumElementwise];
  // Whether the row loss writes its gradient and Hessian rows with streaming stores when
  // RowBlock::stream asks (its `streams` member; softmax_rows.hpp, RowOut).
  bool row_stream_pays[kNumRowwise];
  RowFn<float> row_f32[kNumRowwise][kRowModes];
  RowFn<double> row_f64[kNumRowwise][kRowModes];
  GroupFn<float> group_f32[kNumPairwise][kRowModes];
  GroupFn<double> group_f64[kNumPairwise][kRowModes];
  void (*math_f32[kNumMathFn])(const float*, float*, std::int64_t) noexcept;
  void (*math_f64[kNumMathFn])(const double*, double*, std::int64_t) noexcept;
};

}  // namespace fastloss
