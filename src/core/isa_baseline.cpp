// fastloss — the baseline kernels: the generic source compiled with the architecture's
// floor flags (x86-64: SSE2; aarch64: NEON, 16-byte vectors; elsewhere the compiler lowers
// the 16-byte vector types to what the target has), in namespace fastloss::baseline.
#define FASTLOSS_ISA_NAME baseline
#define FASTLOSS_VEC_BYTES 16
#define FASTLOSS_KERNEL_PART 0  // elementwise kernels, vector math, table()
#include "kernels.inl"
