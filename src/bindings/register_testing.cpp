// fastloss bindings — hooks for tests and benchmarks: vector math of one ISA, memory
// bandwidth probes. Not part of the public API.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <map>
#include <string>

#include "dispatch.hpp"
#include "driver.hpp"
#include "register.hpp"
#include "stream.hpp"

namespace fastloss::bind {

namespace py = pybind11;

namespace {

int math_id(const std::string& name) {
  static const std::map<std::string, int> ids = {
      {"exp", kExp},         {"log", kLog},         {"log1p", kLog1p},
      {"expm1", kExpm1},     {"softplus", kSoftplus}, {"sigmoid", kSigmoid},
      {"log_sigmoid", kLogSigmoid}};
  auto it = ids.find(name);
  if (it == ids.end()) throw py::value_error("name: unknown vector-math function '" + name + "'");
  return it->second;
}

const KernelTable& table_named(const std::string& isa) {
  const KernelTable* t = find_table(isa);
  if (!t) throw py::value_error("isa: '" + isa + "' is not available on this machine");
  return *t;
}

py::array vecmath(const std::string& name, const py::array& x, const std::string& isa) {
  const int id = math_id(name);
  const KernelTable& t = table_named(isa);
  if (x.ndim() != 1) throw py::value_error("x must be 1-D");
  if (!(x.flags() & py::array::c_style)) throw py::value_error("x must be contiguous");
  if (x.dtype().kind() == 'f' && x.itemsize() == 4) {
    py::array_t<float> y(x.shape(0));
    auto fn = t.math_f32[id];
    const auto* in = static_cast<const float*>(x.data());
    float* out = y.mutable_data();
    const auto n = x.shape(0);
    py::gil_scoped_release nogil;
    fn(in, out, n);
    return std::move(y);
  }
  if (x.dtype().kind() == 'f' && x.itemsize() == 8) {
    py::array_t<double> y(x.shape(0));
    auto fn = t.math_f64[id];
    const auto* in = static_cast<const double*>(x.data());
    double* out = y.mutable_data();
    const auto n = x.shape(0);
    py::gil_scoped_release nogil;
    fn(in, out, n);
    return std::move(y);
  }
  throw py::type_error("x must be float32 or float64");
}

template <class T>
double stream_typed(StreamKind kind, const py::array& a, const py::object& b, const py::object& out) {
  const std::int64_t n = a.shape(0);
  const T* pb = nullptr;
  T* po = nullptr;
  if (kind == StreamKind::read2 || kind == StreamKind::triad || kind == StreamKind::triad_nt) {
    auto bb = py::cast<py::array>(b);
    if (bb.ndim() != 1 || bb.shape(0) != n || bb.dtype().not_equal(a.dtype()) ||
        !(bb.flags() & py::array::c_style))
      throw py::value_error("b must match a (1-D, contiguous, same dtype and length)");
    pb = static_cast<const T*>(bb.data());
  }
  if (kind == StreamKind::copy || kind == StreamKind::triad || kind == StreamKind::copy_nt ||
      kind == StreamKind::triad_nt) {
    auto oo = py::cast<py::array>(out);
    if (oo.ndim() != 1 || oo.shape(0) != n || oo.dtype().not_equal(a.dtype()) ||
        !(oo.flags() & py::array::c_style) || !oo.writeable())
      throw py::value_error("out must match a (1-D, contiguous, writeable, same dtype and length)");
    po = static_cast<T*>(oo.mutable_data());
  }
  const T* pa = static_cast<const T*>(a.data());
  const int nt = get_num_threads();
  py::gil_scoped_release nogil;
  return stream<T>(kind, pa, pb, po, n, nt);
}

double stream_probe(const std::string& kind_name, const py::array& a, const py::object& b,
                    const py::object& out) {
  StreamKind kind;
  if (kind_name == "read") kind = StreamKind::read;
  else if (kind_name == "read2") kind = StreamKind::read2;
  else if (kind_name == "copy") kind = StreamKind::copy;
  else if (kind_name == "triad") kind = StreamKind::triad;
  else if (kind_name == "copy_nt") kind = StreamKind::copy_nt;
  else if (kind_name == "triad_nt") kind = StreamKind::triad_nt;
  else throw py::value_error("kind must be 'read', 'read2', 'copy', 'triad', 'copy_nt' or 'triad_nt'");
  if (a.ndim() != 1 || !(a.flags() & py::array::c_style))
    throw py::value_error("a must be 1-D and contiguous");
  if (a.dtype().kind() == 'f' && a.itemsize() == 4) return stream_typed<float>(kind, a, b, out);
  if (a.dtype().kind() == 'f' && a.itemsize() == 8) return stream_typed<double>(kind, a, b, out);
  throw py::type_error("a must be float32 or float64");
}

}  // namespace

void register_testing(py::module_& m) {
  m.def("vecmath", &vecmath, py::arg("name"), py::arg("x"), py::arg("isa"),
        "Apply one vectorised function of the given ISA to every element of x (for tests).");
  m.def("stream", &stream_probe, py::arg("kind"), py::arg("a"), py::arg("b") = py::none(),
        py::arg("out") = py::none(),
        "Memory-bandwidth probe: 'read', 'read2', 'copy' or 'triad', and 'copy_nt' / "
        "'triad_nt' with non-temporal stores (for benchmarks).");
}

}  // namespace fastloss::bind
