// fastloss bindings — multiclass (row-wise) losses: logits [..., K] with one target per row.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "dispatch.hpp"
#include "driver.hpp"
#include "register.hpp"

namespace fastloss::bind {

namespace {


std::string index_str(std::int64_t flat, const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> idx(shape.size());
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  return shape_str(idx);
}

py::array contiguous(const py::array& a, DType dtype) {
  auto np = py::module_::import("numpy");
  return np.attr("ascontiguousarray")(a, py::arg("dtype") = dtype == DType::f32 ? "float32" : "float64");
}

bool is_contiguous_of(const py::array& a, DType dtype) {
  return (a.flags() & py::array::c_style) && a.dtype().kind() == 'f' &&
         a.itemsize() == (dtype == DType::f32 ? 4 : 8);
}

template <class T>
bool has_nan(const T* p, std::int64_t n, std::int64_t& where) {
  for (std::int64_t i = 0; i < n; ++i)
    if (p[i] != p[i]) {
      where = i;
      return true;
    }
  return false;
}

// Per-row checks and the mean's denominator, on the calling thread (O(rows), or O(rows K)
// for the NaN scans of nan_policy "raise"/"omit").
template <class T>
struct RowPrep {
  double denom = 0.0;
  std::string error;  // non-empty: raise ValueError(error)
};

template <class T>
RowPrep<T> prepare_rows(const RowCall& c, const std::vector<std::int64_t>& rows_shape,
                        bool has_ig, std::int64_t ig, int nan_policy, const char* logits_name) {
  RowPrep<T> r;
  const T* x = static_cast<const T*>(c.logits);
  const T* t = static_cast<const T*>(c.tprob);
  const T* w = static_cast<const T*>(c.weight);
  const T* cw = static_cast<const T*>(c.class_w);
  const std::int64_t K = c.K;
  std::vector<std::int64_t> full = rows_shape;
  full.push_back(K);
  double denom = 0.0;
  for (std::int64_t i = 0; i < c.rows; ++i) {
    double wi = w ? static_cast<double>(w[i]) : 1.0;
    bool ignored = false;
    if (c.labels) {
      const std::int64_t y = c.labels[i];
      ignored = has_ig && y == ig;
      if (!ignored && (y < 0 || y >= K)) {
        r.error = "target holds class index " + std::to_string(y) + " at index " +
                  index_str(i, rows_shape) + ", outside [0, " + std::to_string(K) + ")";
        return r;
      }
      if (!ignored && cw) wi *= static_cast<double>(cw[y]);
    } else {
      ignored = has_ig && t[i * K + ig] == T(1);
    }
    if (ignored) continue;
    if (nan_policy != kPropagate) {
      std::int64_t where = 0;
      const char* name = nullptr;
      std::int64_t flat = 0;
      if (has_nan(x + i * K, K, where)) {
        name = logits_name;
        flat = i * K + where;
      } else if (t && has_nan(t + i * K, K, where)) {
        name = "target";
        flat = i * K + where;
      } else if (w && w[i] != w[i]) {
        name = "sample_weight";
        flat = i;
      }
      if (name) {
        if (nan_policy == kRaise) {
          const bool per_row = std::string(name) == "sample_weight";
          r.error = std::string(name) + " contains NaN (first at index " +
                    index_str(flat, per_row ? rows_shape : full) + ") and nan_policy='raise'";
          return r;
        }
        continue;  // omitted: not in the denominator
      }
    }
    denom += wi;
  }
  r.denom = denom;
  return r;
}

py::tuple rowwise(int loss, py::handle logits_o, py::handle target_o, py::handle weight_o,
                  py::handle class_w_o, std::optional<std::int64_t> ignore_index,
                  const std::vector<double>& params, int reduction, int want, py::handle out_o,
                  py::handle grad_out_o, const std::string& grad_name, py::handle hess_out_o, int hess_policy, double hess_floor,
                  double hess_factor, int nan_policy, py::handle class_aux_o,
                  const std::string& class_aux_name, const std::string& logits_name_s) {
  if (loss < 0 || loss >= kNumRowwise) throw py::value_error("unknown loss id");
  // The name messages use for the first argument ("logits", or the loss's own, as "scores").
  const char* logits_name = logits_name_s.c_str();
  if (params.size() > static_cast<std::size_t>(kMaxParams)) throw py::value_error("too many parameters");
  py::array logits = as_array(logits_o, logits_name);
  const DType dtype = compute_dtype(logits, logits_name);
  if (logits.ndim() < 1) {
    throw py::value_error(logits_name_s + " must have at least one dimension (the classes on the last axis)");
  }
  const std::int64_t K = logits.shape(logits.ndim() - 1);
  if (K < 1) throw py::value_error(logits_name_s + " must have at least one class on the last axis, got 0");
  std::vector<std::int64_t> full(logits.shape(), logits.shape() + logits.ndim());
  std::vector<std::int64_t> rows_shape(full.begin(), full.end() - 1);
  std::int64_t rows = 1;
  for (auto v : rows_shape) rows *= v;

  auto np = py::module_::import("numpy");
  py::array target = as_array(target_o, "target");
  const Src tsrc = source_type(target, "target");
  const bool prob = target.dtype().kind() == 'f';
  py::array labels = null_array(), tprob = null_array();
  std::vector<std::int64_t> tshape(target.shape(), target.shape() + target.ndim());
  if (prob) {
    if (tshape != full) {
      throw py::value_error("target of dtype " + std::string(py::str(target.dtype())) +
                            " holds probabilities and must have the shape of logits " +
                            shape_str(full) + ", got " + shape_str(tshape) +
                            " (class indices must be an integer array of shape " +
                            shape_str(rows_shape) + ")");
    }
    tprob = is_contiguous_of(target, dtype) ? target : contiguous(target, dtype);
  } else if (tsrc == Src::i64 && (target.flags() & py::array::c_style) && tshape == rows_shape) {
    labels = target;  // already what the kernels read
  } else {
    py::array b;
    try {
      b = np.attr("broadcast_to")(target, py::tuple(py::cast(rows_shape)));
    } catch (py::error_already_set&) {
      throw py::value_error("target with shape " + shape_str(tshape) +
                            " holds class indices and must broadcast to the shape " +
                            shape_str(rows_shape) +
                            " (logits " + shape_str(full) + " without the class axis)");
    }
    if (target.dtype().kind() == 'u' && target.itemsize() == 8 && target.size() > 0) {
      // uint64 indices beyond int64 would wrap in the conversion below.
      const auto top = np.attr("max")(target).cast<std::uint64_t>();
      if (top > static_cast<std::uint64_t>(INT64_MAX)) {
        const auto pos = np.attr("unravel_index")(np.attr("argmax")(target), target.attr("shape"));
        std::vector<std::int64_t> idx;
        for (auto v : pos) idx.push_back(v.cast<std::int64_t>());
        throw py::value_error("target holds class index " + std::to_string(top) + " at index " +
                              shape_str(idx) + ", outside [0, " + std::to_string(K) + ")");
      }
    }
    labels = np.attr("ascontiguousarray")(b, py::arg("dtype") = "int64");
  }
  py::array weight = null_array();
  if (!weight_o.is_none()) {
    py::array w = as_array(weight_o, "sample_weight");
    source_type(w, "sample_weight");
    std::vector<std::int64_t> wshape(w.shape(), w.shape() + w.ndim());
    if (wshape == rows_shape && is_contiguous_of(w, dtype)) {
      weight = w;
    } else {
      py::array b;
      try {
        b = np.attr("broadcast_to")(w, py::tuple(py::cast(rows_shape)));
      } catch (py::error_already_set&) {
        throw py::value_error("sample_weight with shape " + shape_str(w) +
                              " does not broadcast to the per-row shape " + shape_str(rows_shape));
      }
      weight = contiguous(b, dtype);
    }
  }
  py::array class_w = null_array();
  if (!class_w_o.is_none()) {
    py::array cw = as_array(class_w_o, "class_weight");
    if (cw.ndim() != 1 || cw.shape(0) != K) {
      throw py::value_error("class_weight must have shape (" + std::to_string(K) + ",), got " +
                            shape_str(cw));
    }
    class_w = is_contiguous_of(cw, dtype) ? cw : contiguous(cw, dtype);
  }
  py::array class_aux = null_array();
  if (!class_aux_o.is_none()) {
    py::array ca = as_array(class_aux_o, class_aux_name.c_str());
    if (ca.ndim() != 1 || ca.shape(0) != K) {
      throw py::value_error(class_aux_name + " must be a scalar or have shape (" +
                            std::to_string(K) + ",), got " + shape_str(ca));
    }
    class_aux = is_contiguous_of(ca, dtype) ? ca : contiguous(ca, dtype);
  }
  const bool logits_ok = is_contiguous_of(logits, dtype);
  py::array x = logits_ok ? logits : contiguous(logits, dtype);

  std::vector<std::pair<py::array, const char*>> taken = {
      {logits, logits_name}, {target, "target"}};
  if (!weight_o.is_none() && py::isinstance<py::array>(weight_o))
    taken.emplace_back(py::reinterpret_borrow<py::array>(weight_o), "sample_weight");

  if (!out_o.is_none() && !(reduction == kNone && (want & kWantValue))) {
    throw py::value_error("out= holds per-sample losses and is only valid with reduction='none'");
  }
  // Outputs: the kernels write contiguous arrays; a non-contiguous out= is filled afterwards.
  auto make_out = [&](py::handle user, const char* name, const std::vector<std::int64_t>& shape,
                      py::array& result, py::array& work) {
    result = user.is_none() ? new_array(shape, dtype) : check_out(user, name, shape, dtype, taken);
    taken.emplace_back(result, name);
    work = (result.flags() & py::array::c_style) ? result : new_array(shape, dtype);
  };
  py::array value = null_array(), vwork = null_array(), grad = null_array(), gwork = null_array(),
            hess = null_array(), hwork = null_array();
  if ((want & kWantValue) && reduction == kNone) make_out(out_o, "out", rows_shape, value, vwork);
  if (want & kWantGrad) make_out(grad_out_o, grad_name.c_str(), full, grad, gwork);
  else if (!grad_out_o.is_none()) throw py::value_error(grad_name + "= given but no gradient is computed");
  if (want & kWantHess) make_out(hess_out_o, "hess_out", full, hess, hwork);
  else if (!hess_out_o.is_none()) throw py::value_error("hess_out= given but no Hessian is computed");

  RowCall c;
  c.table = &active_table();
  c.loss = loss;
  c.dtype = dtype;
  c.rows = rows;
  c.K = K;
  c.logits = x.data();
  c.labels = labels ? static_cast<const std::int64_t*>(labels.data()) : nullptr;
  c.tprob = tprob ? tprob.data() : nullptr;
  c.weight = weight ? weight.data() : nullptr;
  c.class_w = class_w ? class_w.data() : nullptr;
  c.class_aux = class_aux ? class_aux.data() : nullptr;
  c.value = vwork ? vwork.mutable_data() : nullptr;
  c.grad = gwork ? gwork.mutable_data() : nullptr;
  c.hess = hwork ? hwork.mutable_data() : nullptr;
  c.mode = 0;
  if (want & kWantValue) c.mode |= (reduction == kNone) ? kValueArray : kValueSum;
  if (want & kWantGrad) c.mode |= kGrad;
  if (want & kWantHess) c.mode |= kHess;
  for (std::size_t k = 0; k < params.size(); ++k) c.params[k] = params[k];
  bool has_ig = ignore_index.has_value();
  std::int64_t ig = has_ig ? *ignore_index : 0;
  if (prob && has_ig && (ig < 0 || ig >= K)) has_ig = false;  // no class column to look at
  c.params[1] = has_ig ? 1.0 : 0.0;
  c.params[2] = static_cast<double>(ig);
  c.hess_policy = hess_policy;
  c.hess_floor = hess_floor;
  c.hess_factor = hess_factor;
  c.omit_nan = nan_policy == kOmit;

  std::string error;
  double denom = 0.0;
  auto prepare = [&] {
    py::gil_scoped_release nogil;
    if (dtype == DType::f32) {
      auto r = prepare_rows<float>(c, rows_shape, has_ig, ig, nan_policy, logits_name);
      error = r.error;
      denom = r.denom;
    } else {
      auto r = prepare_rows<double>(c, rows_shape, has_ig, ig, nan_policy, logits_name);
      error = r.error;
      denom = r.denom;
    }
  };
  prepare();
  if (error.empty() && reduction == kMean) {
    if (const int k = mean_rescale_exponent(denom, dtype)) {
      // The weights keep their layout (one per row); unit weights become an array of rows.
      py::array w = weight ? scaled_weight(weight, k, dtype)
                           : py::array(np.attr("broadcast_to")(scaled_weight(weight, k, dtype),
                                                               py::tuple(py::cast(rows_shape))));
      weight = contiguous(w, dtype);
      c.weight = weight.data();
      prepare();
    }
    // No weight at all (every sample ignored or weighted 0): the mean is NaN and the
    // derivatives are 0, as PyTorch gives for an all-ignored batch.
    c.gscale = denom == 0.0 ? 0.0 : 1.0 / denom;
  }
  if (error.empty()) {
    py::gil_scoped_release nogil;
    run_rowwise(c);
  }
  if (!error.empty()) throw py::value_error(error);
  if (c.bad_target) {
    py::object t = np.attr("asarray")(tprob);
    py::object bad = np.attr("logical_or")(np.attr("less")(t, 0.0), np.attr("greater")(t, 1.0));
    py::tuple where = np.attr("unravel_index")(np.attr("argmax")(bad), t.attr("shape"));
    std::vector<std::int64_t> idx;
    for (auto v : where) idx.push_back(v.cast<std::int64_t>());
    throw py::value_error("target must hold probabilities in [0, 1]; got " +
                          std::string(py::str(t.attr("__getitem__")(where))) + " at index " +
                          shape_str(idx));
  }

  auto finish = [&](py::array& result, py::array& work) -> py::object {
    if (!result) return py::none();
    if (result.ptr() != work.ptr()) np.attr("copyto")(result, work);
    return result;
  };
  py::object v = py::none();
  if (want & kWantValue) {
    if (reduction == kNone) v = finish(value, vwork);
    else if (reduction == kSum) v = py::float_(c.value_sum);
    else v = py::float_(rows == 0 ? std::nan("") : c.value_sum / denom);
  }
  return py::make_tuple(v, finish(grad, gwork), finish(hess, hwork));
}

}  // namespace

void register_rowwise(py::module_& m) {
  m.def("rowwise", &rowwise, py::arg("loss"), py::arg("logits"), py::arg("target"),
        py::arg("sample_weight"), py::arg("class_weight"), py::arg("ignore_index"),
        py::arg("params"), py::arg("reduction"), py::arg("want"), py::arg("out"),
        py::arg("grad_out"), py::arg("grad_name"), py::arg("hess_out"), py::arg("hess_policy"), py::arg("hess_floor"),
        py::arg("hess_factor"), py::arg("nan_policy"), py::arg("class_aux") = py::none(),
        py::arg("class_aux_name") = "class_aux", py::arg("logits_name") = "logits",
        "Run a multiclass loss kernel (internal; use the fastloss.Loss objects).");
  py::list names;
#define FASTLOSS_NAME(name, S) names.append(#name);
  FASTLOSS_ROWWISE_LOSSES(FASTLOSS_NAME)
#undef FASTLOSS_NAME
  m.attr("rowwise_losses") = py::tuple(names);
}

}  // namespace fastloss::bind
