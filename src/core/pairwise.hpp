// fastloss — the driver of the pairwise ranking losses: groups of documents, in parallel.
//
// Plain C++17, no Python. The bindings validate everything and build a GroupCall with
// contiguous arrays of the compute dtype; the driver cuts the groups into blocks, runs the
// per-ISA group kernel over the blocks on the OpenMP team and combines the per-block sums.
//
// Blocks: consecutive groups whose cost (pairs + documents) reaches kPairBlock, a cut that
// depends on the group sizes only, never on the thread count, so that sums are bit-identical
// for any number of threads. Blocks are handed out dynamically (their costs differ); each
// writes its own slot, the slots are combined by the fixed pairwise tree.
#pragma once
#include <cstdint>

#include "kernel_api.hpp"

namespace fastloss {

constexpr std::int64_t kPairBlock = 1 << 16;  // pair evaluations per block (about)

struct GroupCall {
  const KernelTable* table = nullptr;
  int loss = 0;
  DType dtype = DType::f64;
  std::int64_t n_docs = 0;
  std::int64_t n_groups = 0;
  const void* scores = nullptr;
  const void* rel = nullptr;
  const std::int64_t* offsets = nullptr;  // n_groups + 1, non-decreasing, offsets[n_groups] = n_docs
  const std::int64_t* order = nullptr;    // or null
  const void* gweight = nullptr;
  void* value = nullptr;
  bool value_per_doc = false;
  void* grad = nullptr;
  void* hess = nullptr;
  int mode = 0;  // kValueArray | kValueSum | kGrad | kHess
  double params[kMaxParams] = {};
  double gscale = 1.0;
  int hess_policy = kHessExact;
  double hess_floor = 0.0;
  bool omit_nan = false;
  // result
  double value_sum = 0.0;
};

void run_pairwise(GroupCall& c);

}  // namespace fastloss
