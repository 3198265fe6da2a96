// fastloss — the avx2 kernels, second half: the row-wise and pairwise kernels (see
// isa_avx2.cpp and kernels.inl), in namespace fastloss::avx2.
#define FASTLOSS_ISA_NAME avx2
#define FASTLOSS_VEC_BYTES 32
#define FASTLOSS_KERNEL_PART 1
#include "kernels.inl"
