// fastloss — the baseline kernels, second half: the row-wise and pairwise kernels (see
// isa_baseline.cpp and kernels.inl), in namespace fastloss::baseline.
#define FASTLOSS_ISA_NAME baseline
#define FASTLOSS_VEC_BYTES 16
#define FASTLOSS_KERNEL_PART 1
#include "kernels.inl"
