// fastloss — the pairwise ranking driver (see pairwise.hpp).
#include "pairwise.hpp"

#include <algorithm>
#include <vector>

#include "driver.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastloss {

namespace {

template <class T>
void run_typed(GroupCall& c) {
  // Block boundaries from the group sizes alone.
  std::vector<std::int64_t> starts;
  std::int64_t cap = 1, cost = 0, total = 0;
  for (std::int64_t g = 0; g < c.n_groups; ++g) {
    if (cost == 0) starts.push_back(g);
    const std::int64_t n = c.offsets[g + 1] - c.offsets[g];
    cap = std::max(cap, n);
    const std::int64_t gc = n * (n - 1) / 2 + n + 1;
    cost += gc;
    total += gc;
    if (cost >= kPairBlock) cost = 0;
  }
  const std::int64_t nblocks = static_cast<std::int64_t>(starts.size());
  starts.push_back(c.n_groups);
  c.value_sum = 0.0;
  if (nblocks == 0) return;
  const int nt = threads_for(total, nblocks);
  std::vector<double> partial((c.mode & kValueSum) ? nblocks : 0);
  GroupFn<T> fn;
  if constexpr (sizeof(T) == 4) fn = c.table->group_f32[c.loss][c.mode & (kRowModes - 1)];
  else fn = c.table->group_f64[c.loss][c.mode & (kRowModes - 1)];
  // Scratch rows padded to whole vectors of the widest ISA.
  const std::int64_t row = (cap + 15) / 16 * 16;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
    std::vector<T> scratch(static_cast<std::size_t>(6 * row));
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (std::int64_t b = 0; b < nblocks; ++b) {
      GroupBlock<T> blk;
      blk.scores = static_cast<const T*>(c.scores);
      blk.rel = static_cast<const T*>(c.rel);
      blk.offsets = c.offsets;
      blk.order = c.order;
      blk.g0 = starts[b];
      blk.g1 = starts[b + 1];
      blk.gweight = static_cast<const T*>(c.gweight);
      blk.value = static_cast<T*>(c.value);
      blk.value_per_doc = c.value_per_doc;
      blk.grad = static_cast<T*>(c.grad);
      blk.hess = static_cast<T*>(c.hess);
      blk.params = c.params;
      blk.gscale = c.gscale;
      blk.hess_policy = c.hess_policy;
      blk.hess_floor = c.hess_floor;
      blk.omit_nan = c.omit_nan;
      blk.value_sum = partial.empty() ? nullptr : &partial[b];
      blk.scratch = scratch.data();
      blk.scratch_cap = row;
      fn(blk);
    }
  }
  c.value_sum = partial.empty() ? 0.0 : pairwise_sum(partial.data(), nblocks);
}

}  // namespace

void run_pairwise(GroupCall& c) {
  check_mode(c.mode & (kRowModes - 1));
  if (c.dtype == DType::f32) run_typed<float>(c);
  else run_typed<double>(c);
}

}  // namespace fastloss
