// fastloss — memory-bandwidth probes (see stream.hpp).
#include "stream.hpp"

#include <algorithm>
#include <vector>

#include "driver.hpp"

namespace fastloss {

namespace {
// 16 independent accumulators so that the compiler vectorises the sum without reassociation;
// one loop per kind (no branch inside).
template <class T>
double lanes_sum(const T* a, std::int64_t s, std::int64_t e) {
  constexpr int L = 16;
  T acc[L] = {};
  std::int64_t i = s;
  for (; i + L <= e; i += L)
    for (int j = 0; j < L; ++j) acc[j] += a[i + j];
  double r = 0.0;
  for (; i < e; ++i) r += a[i];
  for (int j = 0; j < L; ++j) r += acc[j];
  return r;
}

template <class T>
double lanes_sum2(const T* a, const T* b, std::int64_t s, std::int64_t e) {
  constexpr int L = 16;
  T acc[L] = {};
  std::int64_t i = s;
  for (; i + L <= e; i += L)
    for (int j = 0; j < L; ++j) acc[j] += a[i + j] + b[i + j];
  double r = 0.0;
  for (; i < e; ++i) r += a[i] + b[i];
  for (int j = 0; j < L; ++j) r += acc[j];
  return r;
}
}  // namespace

template <class T>
double stream(StreamKind kind, const T* a, const T* b, T* out, std::int64_t n, int nthreads) {
  const std::int64_t nblocks = (n + kBlock - 1) / kBlock;
  if (nblocks == 0) return 0.0;
  std::vector<double> partial(nblocks, 0.0);
  const int nt = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(nthreads, nblocks)));
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
  for (std::int64_t blk = 0; blk < nblocks; ++blk) {
    const std::int64_t s = blk * kBlock, e = std::min(n, s + kBlock);
    switch (kind) {
      case StreamKind::read:
        partial[blk] = lanes_sum<T>(a, s, e);
        break;
      case StreamKind::read2:
        partial[blk] = lanes_sum2<T>(a, b, s, e);
        break;
      case StreamKind::copy:
        for (std::int64_t i = s; i < e; ++i) out[i] = a[i];
        break;
      case StreamKind::triad:
        for (std::int64_t i = s; i < e; ++i) out[i] = a[i] + b[i];
        break;
    }
  }
  (void)nt;
  return pairwise_sum(partial.data(), nblocks);
}

template double stream<float>(StreamKind, const float*, const float*, float*, std::int64_t, int);
template double stream<double>(StreamKind, const double*, const double*, double*, std::int64_t, int);

}  // namespace fastloss
