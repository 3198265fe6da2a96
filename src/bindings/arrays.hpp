// fastloss bindings — NumPy array checks shared by the register_*.cpp files.
//
// Every check raises a Python TypeError or ValueError whose message starts with the name of
// the argument at fault, before any kernel runs.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "driver.hpp"

namespace fastloss::bind {

namespace py = pybind11;

// The codes the Python layer passes for what to compute, the reduction and nan_policy.
enum Want : int { kWantValue = 1, kWantGrad = 2, kWantHess = 4 };
enum Reduction : int { kNone = 0, kSum = 1, kMean = 2 };
enum NanPolicy : int { kPropagate = 0, kRaise = 1, kOmit = 2 };

// Any object -> ndarray in native byte order (lists and scalars are converted; nothing is
// copied for an ndarray that is already native).
py::array as_array(const py::handle& obj, const char* name);

// The source element type of a real numeric array, or TypeError naming `name`.
Src source_type(const py::array& a, const char* name);

// float32 for float32/float16, float64 for everything else real.
DType compute_dtype(const py::array& pred, const char* name);

std::string shape_str(const py::array& a);
std::string shape_str(const std::vector<std::int64_t>& s);

// NumPy broadcasting of two shapes, or ValueError naming both arguments.
std::vector<std::int64_t> broadcast_shapes(const py::array& a, const char* a_name,
                                           const py::array& b, const char* b_name);

// Fills op with a's data and strides expanded to `shape` (0 on broadcast dims); ValueError
// naming `name` when a does not broadcast to `shape`.
void set_operand(Operand& op, const py::array& a, const std::vector<std::int64_t>& shape,
                 const char* name);

// Checks a user-supplied output array (type, shape, dtype, writeable, no overlap with the
// given inputs) and returns it; TypeError/ValueError naming `name`.
py::array check_out(const py::handle& obj, const char* name, const std::vector<std::int64_t>& shape,
                    DType dtype, const std::vector<std::pair<py::array, const char*>>& inputs);

// A null array handle (py::array() would be an empty array, not "absent").
inline py::array null_array() { return py::reinterpret_steal<py::array>(py::handle()); }

// A new output array. From 4 MiB up its memory comes from a cache of the buffers released by
// earlier results (already faulted in); set_buffer_cache bounds the cached bytes (0: none)
// and returns the previous bound; buffer_cache_info describes the cache.
py::array new_array(const std::vector<std::int64_t>& shape, DType dtype);
std::size_t set_buffer_cache(std::size_t max_bytes);
py::dict buffer_cache_info();

void set_out_operand(OutOperand& op, const py::array& a, int ndim);

// reduction="mean" divides by the total weight; a total so small that its reciprocal would
// overflow the compute dtype (weights summing to a subnormal number) would make every
// derivative inf. The mean does not change when all weights are scaled alike, so such a call
// is rerun with weights scaled by 2**k (exact): mean_rescale_exponent gives k (0: no rescale),
// scaled_weight the scaled weights (`weight` may be null: unit weights).
int mean_rescale_exponent(double denom, DType dtype);
py::array scaled_weight(const py::array& weight, int k, DType dtype);

}  // namespace fastloss::bind
