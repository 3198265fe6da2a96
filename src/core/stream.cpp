// fastloss — memory-bandwidth probes (see stream.hpp).
#include "stream.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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
// out[s, e) = a (+ b) through a 256-element stage, whole lines of out with non-temporal
// stores; the partial lines at either end of the block with plain ones.
template <class T>
void stream_nt(const T* a, const T* b, T* out, std::int64_t s, std::int64_t e) {
  constexpr std::int64_t kStage = 256;
  alignas(64) T stage[kStage + 64 / sizeof(T)];  // the carried partial line, then a stretch
  char* d = reinterpret_cast<char*>(out + s);
  char* const end = reinterpret_cast<char*>(out + e);
  std::size_t carry = 0;  // bytes of the stage's start not yet written (a partial line)
  for (std::int64_t i = s; i < e; i += kStage) {
    const std::int64_t m = std::min(kStage, e - i);
    T* st = stage + carry / sizeof(T);
    if (b) {
      for (std::int64_t j = 0; j < m; ++j) st[j] = a[i + j] + b[i + j];
    } else {
      for (std::int64_t j = 0; j < m; ++j) st[j] = a[i + j];
    }
    const char* src = reinterpret_cast<const char*>(stage);
    const std::size_t n = carry + static_cast<std::size_t>(m) * sizeof(T);
    std::size_t head = (64 - reinterpret_cast<std::uintptr_t>(d) % 64) % 64;
    if (head > n) head = n;
    std::memcpy(d, src, head);
    std::size_t k = head;
#if defined(__SSE2__)
    for (; k + 64 <= n; k += 64)
      for (int q = 0; q < 64; q += 16)
        _mm_stream_si128(reinterpret_cast<__m128i*>(d + k + q),
                         _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k + q)));
#endif
    if (d + n == end || k + 64 <= n) {  // the block's end, or no non-temporal stores here
      std::memcpy(d + k, src + k, n - k);
      k = n;
    }
    d += k;
    carry = n - k;
    if (carry) std::memmove(stage, src + k, carry);
  }
#if defined(__SSE2__)
  _mm_sfence();
#endif
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
      case StreamKind::copy_nt:
        stream_nt<T>(a, nullptr, out, s, e);
        break;
      case StreamKind::triad_nt:
        stream_nt<T>(a, b, out, s, e);
        break;
    }
  }
  (void)nt;
  return pairwise_sum(partial.data(), nblocks);
}

template double stream<float>(StreamKind, const float*, const float*, float*, std::int64_t, int);
template double stream<double>(StreamKind, const double*, const double*, double*, std::int64_t, int);

}  // namespace fastloss
