// fastloss — the avx512 kernels, second half: the row-wise and pairwise kernels (see
// isa_avx512.cpp and kernels.inl), in namespace fastloss::avx512.
#define FASTLOSS_ISA_NAME avx512
#define FASTLOSS_VEC_BYTES 64
#define FASTLOSS_KERNEL_PART 1
#include "kernels.inl"
