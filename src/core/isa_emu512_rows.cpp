// fastloss — the emu512 test path, second half: the row-wise and pairwise kernels (see
// isa_emu512.cpp and kernels.inl), in namespace fastloss::emu512.
#define FASTLOSS_ISA_NAME emu512
#define FASTLOSS_VEC_BYTES 64
#define FASTLOSS_KERNEL_PART 1
#include "kernels.inl"
