// fastloss bindings — the fastloss._core extension module.
//
// Layers: src/core (C++ only: math, kernels, dispatch, driver) <- src/bindings (this:
// argument checks, dtype switch, GIL release) <- python/fastloss (the API users touch).
#include <pybind11/pybind11.h>

#include "register.hpp"

PYBIND11_MODULE(_core, m, pybind11::mod_gil_not_used()) {
  m.doc() = "fastloss compiled core (internal; use the fastloss package)";
  fastloss::bind::register_config(m);
  fastloss::bind::register_elementwise(m);
  fastloss::bind::register_rowwise(m);
  fastloss::bind::register_pairwise(m);
  fastloss::bind::register_testing(m);
}
