// fastloss bindings — build and run-time configuration: ISAs, threads, OpenMP.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "arrays.hpp"
#include "dispatch.hpp"
#include "driver.hpp"
#include "register.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef FASTLOSS_VERSION
#define FASTLOSS_VERSION "0+unknown"
#endif

namespace fastloss::bind {

namespace py = pybind11;

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string r;
  for (const auto& s : v) r += (r.empty() ? "" : ", ") + s;
  return r;
}

std::string set_isa(const std::string& name) {
  const std::string previous = active_table().isa;
  if (set_active_isa(name)) return previous;
  const auto compiled = compiled_isas();
  bool known = false;
  for (const auto& c : compiled) known = known || c == name;
  if (known) {
    throw py::value_error("isa '" + name + "' is compiled in but this CPU does not support it; "
                          "supported: " + join(supported_isas()));
  }
  throw py::value_error("isa '" + name + "' is unknown; compiled: " + join(compiled) +
                        "; supported by this CPU: " + join(supported_isas()));
}

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_VER);
#else
  return "unknown";
#endif
}

}  // namespace

void register_config(py::module_& m) {
  m.attr("__version__") = FASTLOSS_VERSION;
  m.def("compiled_isas", &compiled_isas, "ISAs compiled into this build, from the floor up.");
  m.def("supported_isas", &supported_isas, "Compiled ISAs that this CPU can run.");
  m.def("active_isa", [] { return std::string(active_table().isa); }, "The ISA in use.");
  m.def("set_isa", &set_isa, py::arg("name"),
        "Make `name` the active ISA; returns the previous one. ValueError if unavailable.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Threads for every call (n <= 0: back to OpenMP's default).");
  m.def("get_num_threads", &get_num_threads, "Threads a call would use now.");
  m.def("explicit_num_threads", &explicit_num_threads, "The set_num_threads value, 0 if unset.");
  m.def("set_buffer_cache", &set_buffer_cache, py::arg("max_bytes"),
        "Bound the bytes of released output buffers kept for reuse; returns the old bound.");
  m.def("buffer_cache_info", &buffer_cache_info, "The output-buffer cache: bound and content.");
  m.def(
      "empty",
      [](const std::vector<std::int64_t>& shape, bool f32) {
        for (auto d : shape)
          if (d < 0) throw py::value_error("empty: negative dimension");
        return new_array(shape, f32 ? DType::f32 : DType::f64);
      },
      py::arg("shape"), py::arg("f32"),
      "An uninitialised C-contiguous float32 (f32) or float64 array, from the output-buffer "
      "cache when it is large enough (the outputs of the Python-side losses).");
  m.def("set_stream_min_bytes", &set_stream_min_bytes, py::arg("n"),
        "Stream (non-temporal stores) calls whose array outputs reach n bytes; n < 0: the "
        "built-in bound. Returns the old bound.");
  m.def("stream_min_bytes", &stream_min_bytes, "The bound in force (INT64_MAX: never).");
  m.def("streaming_stores_available", &streaming_stores_available,
        "Whether this build has non-temporal stores (x86-64).");
  m.attr("stream_min_bytes_default") = streaming_stores_available() ? kStreamMinBytes : kStreamNever;
  m.def("openmp_enabled", &openmp_enabled);
  m.def("openmp_version", &openmp_version, "_OPENMP (yyyymm) of the build, 0 without OpenMP.");
  m.def("omp_max_threads", [] {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  });
  m.attr("block_size") = kBlock;
  m.attr("serial_threshold") = kSerialThreshold;
  m.def("_set_serial_threshold", &set_serial_threshold, py::arg("n"),
        "Benchmarks only: run serially below n elements (n < 0: the built-in value).");
  m.def("_serial_threshold", &serial_threshold);
  m.def("_workers_peak", &workers_peak, py::arg("reset") = false,
        "Tests only: the most worker threads running calls held at once (since the last reset).");
  m.def("_forked_child_serial", &forked_child_serial,
        "True in a child forked after a multi-threaded call: calls there run serially.");
  m.attr("compiler") = compiler();
}

}  // namespace fastloss::bind
