// fastloss — a test path: the generic source with the AVX-512 path's 64-byte lanes (16 floats,
// 8 doubles), compiled with AVX2 flags, in namespace fastloss::emu512. The compiler splits each
// lane type into two AVX2 registers, so every width-dependent branch of the AVX-512 kernels
// (tails, chunking, partial vectors, horizontal reductions) runs on a CPU without AVX-512.
// Built only when FASTLOSS_ISAS names it (tools/sanitize.sh does); never chosen by default.
#define FASTLOSS_ISA_NAME emu512
#define FASTLOSS_VEC_BYTES 64
#define FASTLOSS_KERNEL_PART 0  // elementwise kernels, vector math, table()
#include "kernels.inl"
