// fastloss — run-time choice of the kernel table (one per compiled ISA).
#pragma once
#include <string>
#include <vector>

#include "kernel_api.hpp"

namespace fastloss {

// Names of the ISAs compiled into this build, from the floor up.
std::vector<std::string> compiled_isas();
// The compiled ISAs that this CPU (and its OS) can run.
std::vector<std::string> supported_isas();
// The kernel table in use. Chosen at import: the best supported ISA, or FASTLOSS_ISA.
const KernelTable& active_table();
// The table of a compiled and supported ISA, or nullptr.
const KernelTable* find_table(const std::string& name);
// Makes `name` active; returns false (and changes nothing) when it is not available.
bool set_active_isa(const std::string& name);

}  // namespace fastloss
