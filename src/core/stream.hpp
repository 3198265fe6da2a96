// fastloss — memory-bandwidth probes (read, two reads, copy, two reads + one write), used by
// bench/run.py to express kernel speed as a fraction of what the machine's memory delivers.
#pragma once
#include <cstdint>

namespace fastloss {

enum class StreamKind : int { read = 0, read2 = 1, copy = 2, triad = 3 };

// Multi-threaded over fixed blocks with ordinary loads and stores. Returns the sum for the
// read kinds (so the loads cannot be optimised away), 0 otherwise.
template <class T>
double stream(StreamKind kind, const T* a, const T* b, T* out, std::int64_t n, int nthreads);

}  // namespace fastloss
