// fastloss — the avx512 kernels: the generic source compiled with this ISA's flags
// (set per file in CMakeLists.txt), in namespace fastloss::avx512.
#define FASTLOSS_ISA_NAME avx512
#define FASTLOSS_VEC_BYTES 64
#define FASTLOSS_KERNEL_PART 0  // elementwise kernels, vector math, table()
#include "kernels.inl"
