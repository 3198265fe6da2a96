// fastloss bindings — pairwise ranking losses over groups of documents.
//
// The Python layer (fastloss._ranking) validates the arguments, builds the group offsets
// (and the permutation for unsorted qid), converts the arrays to contiguous arrays of the
// compute dtype and allocates the outputs; this binding checks that contract, releases the
// GIL and runs the driver.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "arrays.hpp"
#include "dispatch.hpp"
#include "pairwise.hpp"
#include "register.hpp"

namespace fastloss::bind {

namespace {

const void* data_of(const py::handle& o, const char* name, DType dtype, std::int64_t n,
                    bool writeable, bool is_index = false) {
  if (o.is_none()) return nullptr;
  if (!py::isinstance<py::array>(o)) throw py::type_error(std::string(name) + " must be an ndarray");
  auto a = py::reinterpret_borrow<py::array>(o);
  const bool ok_type = is_index ? (a.dtype().kind() == 'i' && a.itemsize() == 8)
                                : (a.dtype().kind() == 'f' && a.itemsize() == (dtype == DType::f32 ? 4 : 8));
  if (!ok_type || a.ndim() != 1 || a.shape(0) != n || !(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + ": internal contract violated (dtype, shape or layout)");
  }
  if (writeable) {
    if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only");
    return a.mutable_data();
  }
  return a.data();
}

double pairwise(int loss, py::handle scores, py::handle rel, py::handle offsets, py::handle order,
                py::handle gweight, const std::vector<double>& params, int mode,
                bool value_per_doc, py::handle value, py::handle grad, py::handle hess,
                double gscale, int hess_policy, double hess_floor, bool omit_nan) {
  if (loss < 0 || loss >= kNumPairwise) throw py::value_error("unknown loss id");
  if (params.size() > static_cast<std::size_t>(kMaxParams)) throw py::value_error("too many parameters");
  if (!py::isinstance<py::array>(scores)) throw py::type_error("scores must be an ndarray");
  auto s = py::reinterpret_borrow<py::array>(scores);
  if (s.ndim() != 1) throw py::value_error("scores must be one-dimensional");
  const DType dtype = s.itemsize() == 4 ? DType::f32 : DType::f64;
  const std::int64_t n = s.shape(0);
  if (!py::isinstance<py::array>(offsets)) throw py::type_error("offsets must be an ndarray");
  const std::int64_t ng = py::reinterpret_borrow<py::array>(offsets).size() - 1;
  if (ng < 0) throw py::value_error("offsets must hold at least one entry");
  GroupCall c;
  c.table = &active_table();
  c.loss = loss;
  c.dtype = dtype;
  c.n_docs = n;
  c.n_groups = ng;
  c.scores = data_of(scores, "scores", dtype, n, false);
  c.rel = data_of(rel, "relevance", dtype, n, false);
  c.offsets = static_cast<const std::int64_t*>(data_of(offsets, "offsets", dtype, ng + 1, false, true));
  c.order = static_cast<const std::int64_t*>(data_of(order, "order", dtype, n, false, true));
  c.gweight = data_of(gweight, "sample_weight", dtype, ng, false);
  c.value_per_doc = value_per_doc;
  c.value = const_cast<void*>(data_of(value, "out", dtype, value_per_doc ? n : ng, true));
  c.grad = const_cast<void*>(data_of(grad, "grad_out", dtype, n, true));
  c.hess = const_cast<void*>(data_of(hess, "hess_out", dtype, n, true));
  if (c.offsets[0] != 0 || c.offsets[ng] != n) throw py::value_error("offsets must run from 0 to the number of documents");
  for (std::int64_t g = 0; g < ng; ++g)
    if (c.offsets[g + 1] < c.offsets[g]) throw py::value_error("offsets must be non-decreasing");
  if (c.order) {
    for (std::int64_t k = 0; k < n; ++k)
      if (c.order[k] < 0 || c.order[k] >= n) throw py::value_error("order holds an index out of range");
  }
  c.mode = mode & (kValueArray | kValueSum | kGrad | kHess);
  if ((c.mode & kValueArray) && !c.value) throw py::value_error("out is required for per-sample values");
  if ((c.mode & kGrad) && !c.grad) throw py::value_error("grad_out is required");
  if ((c.mode & kHess) && !c.hess) throw py::value_error("hess_out is required");
  for (std::size_t k = 0; k < params.size(); ++k) c.params[k] = params[k];
  c.gscale = gscale;
  c.hess_policy = hess_policy;
  c.hess_floor = hess_floor;
  c.omit_nan = omit_nan;
  {
    py::gil_scoped_release nogil;
    run_pairwise(c);
  }
  return c.value_sum;
}

}  // namespace

void register_pairwise(py::module_& m) {
  m.def("pairwise", &pairwise, py::arg("loss"), py::arg("scores"), py::arg("relevance"),
        py::arg("offsets"), py::arg("order"), py::arg("group_weight"), py::arg("params"),
        py::arg("mode"), py::arg("value_per_doc"), py::arg("out"), py::arg("grad_out"),
        py::arg("hess_out"), py::arg("gscale"), py::arg("hess_policy"), py::arg("hess_floor"),
        py::arg("omit_nan"),
        "Run a pairwise ranking kernel over groups (internal; use the fastloss.Loss objects).");
  py::list names;
#define FASTLOSS_NAME(name, S) names.append(#name);
  FASTLOSS_PAIRWISE_LOSSES(FASTLOSS_NAME)
#undef FASTLOSS_NAME
  m.attr("pairwise_losses") = py::tuple(names);
  m.attr("pair_block") = kPairBlock;
}

}  // namespace fastloss::bind
