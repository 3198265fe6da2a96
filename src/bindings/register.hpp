// fastloss bindings — one register_X per file, called from module.cpp.
#pragma once
#include <pybind11/pybind11.h>

namespace fastloss::bind {
void register_config(pybind11::module_& m);
void register_elementwise(pybind11::module_& m);
void register_rowwise(pybind11::module_& m);
void register_pairwise(pybind11::module_& m);
void register_testing(pybind11::module_& m);
}  // namespace fastloss::bind
