// fastloss — memory-bandwidth probes (read, two reads, copy, two reads + one write), used by
// bench/run.py to express kernel speed as a fraction of what the machine's memory delivers.
#pragma once
#include <cstdint>

namespace fastloss {

enum class StreamKind : int { read = 0, read2 = 1, copy = 2, triad = 3, copy_nt = 4, triad_nt = 5 };

// Multi-threaded over fixed blocks with ordinary loads and stores; copy_nt and triad_nt write
// with non-temporal stores as the streaming kernels do (driver.hpp, "Streaming stores"): each
// stretch of 256 results staged in L1, then its whole 64-byte lines of `out` streamed (plain
// stores where the build has none). Returns the sum for the
// read kinds (so the loads cannot be optimised away), 0 otherwise.
template <class T>
double stream(StreamKind kind, const T* a, const T* b, T* out, std::int64_t n, int nthreads);

}  // namespace fastloss
