// fastloss bindings — elementwise losses: argument checks, outputs, GIL release, reductions.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "dispatch.hpp"
#include "driver.hpp"
#include "register.hpp"

namespace fastloss::bind {

namespace {


std::int64_t product(const std::vector<std::int64_t>& s) {
  std::int64_t n = 1;
  for (auto v : s) n *= v;
  return n;
}

bool same_shape(const py::array& a, const std::vector<std::int64_t>& s) {
  if (a.ndim() != static_cast<py::ssize_t>(s.size())) return false;
  for (std::size_t d = 0; d < s.size(); ++d)
    if (a.shape(d) != s[d]) return false;
  return true;
}

// The gradient of a sum w.r.t. an operand that was broadcast: sum over broadcast axes.
py::object reduce_to(const py::array& full, const py::array& like) {
  const int nd = static_cast<int>(full.ndim());
  const int off = nd - static_cast<int>(like.ndim());
  py::list axes;
  for (int d = 0; d < nd; ++d) {
    if (d < off || (like.shape(d - off) == 1 && full.shape(d) != 1)) axes.append(d);
  }
  py::object r = full.attr("sum")(py::arg("axis") = py::tuple(axes));
  return r.attr("reshape")(like.attr("shape"));
}

[[noreturn]] void raise_nan(const std::vector<std::pair<py::array, const char*>>& inputs) {
  auto np = py::module_::import("numpy");
  for (const auto& in : inputs) {
    if (!in.first) continue;
    py::object bad = np.attr("isnan")(in.first.attr("astype")("float64", py::arg("copy") = false));
    if (bad.attr("any")().cast<bool>()) {
      py::tuple where = np.attr("unravel_index")(np.attr("argmax")(bad), in.first.attr("shape"));
      std::string idx = "(";
      for (std::size_t k = 0; k < where.size(); ++k) {
        idx += std::to_string(where[k].cast<std::int64_t>());
        idx += (where.size() == 1 || k + 1 < where.size()) ? "," : "";
        if (k + 1 < where.size()) idx += " ";
      }
      idx += ")";
      throw py::value_error(std::string(in.second) + " contains NaN (first at index " + idx +
                            ") and nan_policy='raise'");
    }
  }
  throw py::value_error("an input contains NaN and nan_policy='raise'");
}

// A target outside the loss's domain (probabilities in [0, 1], or hinge labels in
// {-1, 0, +1}): name its position.
[[noreturn]] void raise_outside(const py::array& target, const char* name, int domain) {
  auto np = py::module_::import("numpy");
  py::object t = target.attr("astype")("float64", py::arg("copy") = false);
  py::object bad;
  std::string what;
  if (domain == kDomainSign) {
    py::object ok = np.attr("isin")(t, py::make_tuple(-1.0, 0.0, 1.0));
    bad = np.attr("logical_and")(np.attr("logical_not")(ok),
                                 np.attr("logical_not")(np.attr("isnan")(t)));
    what = " must hold labels in {-1, +1} or {0, 1}; got ";
  } else {
    bad = np.attr("logical_or")(np.attr("less")(t, 0.0), np.attr("greater")(t, 1.0));
    what = " must hold probabilities in [0, 1]; got ";
  }
  py::tuple where = np.attr("unravel_index")(np.attr("argmax")(bad), target.attr("shape"));
  std::vector<std::int64_t> idx;
  for (auto v : where) idx.push_back(v.cast<std::int64_t>());
  const double v = py::float_(t.attr("__getitem__")(where));
  throw py::value_error(std::string(name) + what + std::string(py::str(py::float_(v))) +
                        " at index " + shape_str(idx));
}

py::tuple elementwise(int loss, py::handle pred_o, py::handle target_o, py::handle weight_o,
                      py::handle aux_o, const char* aux_name, bool factor_active,
                      const std::vector<double>& params, int reduction, int want, py::handle out_o,
                      py::handle grad_out_o, const std::string& grad_name, py::handle hess_out_o, int hess_policy,
                      double hess_floor, int nan_policy, const std::string& pred_name_s,
                      const std::string& target_name_s, bool class_split) {
  if (loss < 0 || loss >= kNumElementwise) throw py::value_error("unknown loss id");
  // The names the messages use for the first two arguments ("pred", "target" unless the loss
  // names them otherwise, as margin_ranking's x1 and y).
  const char* pred_name = pred_name_s.c_str();
  const char* target_name = target_name_s.c_str();
  if (params.size() > static_cast<std::size_t>(kMaxParams)) throw py::value_error("too many parameters");
  if (class_split && (reduction != kSum || want != kWantValue))
    throw py::value_error("class_split needs reduction='sum' and the value only");
  py::array pred = as_array(pred_o, pred_name);
  py::array target = as_array(target_o, target_name);
  const DType dtype = compute_dtype(pred, pred_name);
  source_type(target, target_name);
  auto shape = broadcast_shapes(pred, pred_name, target, target_name);
  py::array weight = null_array();
  if (!weight_o.is_none()) {
    weight = as_array(weight_o, "sample_weight");
    source_type(weight, "sample_weight");
  }
  py::array aux = null_array();
  if (active_table().has_aux[loss]) {
    if (aux_o.is_none()) throw py::value_error(std::string(aux_name) + " is required");
    aux = as_array(aux_o, aux_name);
    source_type(aux, aux_name);
  } else if (!aux_o.is_none()) {
    throw py::value_error("this loss takes no per-element parameter");
  }
  const std::int64_t n = product(shape);
  const int nd = static_cast<int>(shape.size());
  if (nd > kMaxDims) throw py::value_error(std::string(pred_name) + " has too many dimensions");

  ElemCall c;
  c.table = &active_table();
  c.loss = loss;
  c.dtype = dtype;
  c.n = n;
  c.ndim = nd;
  for (int d = 0; d < nd; ++d) c.shape[d] = shape[d];
  set_operand(c.pred, pred, shape, pred_name);
  set_operand(c.target, target, shape, target_name);
  if (weight) set_operand(c.weight, weight, shape, "sample_weight");
  if (aux) set_operand(c.aux, aux, shape, aux_name);

  std::vector<std::pair<py::array, const char*>> taken = {
      {pred, pred_name}, {target, target_name}, {weight, "sample_weight"}, {aux, aux_name}};

  // Outputs.
  py::array value = null_array(), grad = null_array(), hess = null_array();
  py::array grad_full = null_array(), hess_full = null_array();
  const bool pred_full = same_shape(pred, shape);
  if (!out_o.is_none() && !(reduction == kNone && (want & kWantValue))) {
    throw py::value_error("out= holds per-sample losses and is only valid with reduction='none'");
  }
  if ((want & kWantValue) && reduction == kNone) {
    value = out_o.is_none() ? new_array(shape, dtype) : check_out(out_o, "out", shape, dtype, taken);
    taken.emplace_back(value, "out");
    set_out_operand(c.value, value, nd);
  }
  std::vector<std::int64_t> pred_shape(pred.shape(), pred.shape() + pred.ndim());
  auto make_deriv = [&](py::handle user, const char* name, py::array& result, py::array& full,
                        OutOperand& op) {
    result = user.is_none() ? null_array() : check_out(user, name, pred_shape, dtype, taken);
    if (pred_full) {
      if (!result) result = new_array(shape, dtype);
      full = result;
    } else {
      full = new_array(shape, dtype);
    }
    if (result) taken.emplace_back(result, name);
    set_out_operand(op, full, nd);
  };
  if (want & kWantGrad) make_deriv(grad_out_o, grad_name.c_str(), grad, grad_full, c.grad);
  else if (!grad_out_o.is_none()) throw py::value_error(grad_name + "= given but no gradient is computed");
  if (want & kWantHess) make_deriv(hess_out_o, "hess_out", hess, hess_full, c.hess);
  else if (!hess_out_o.is_none()) throw py::value_error("hess_out= given but no Hessian is computed");

  c.mode = 0;
  if (want & kWantValue) c.mode |= (reduction == kNone) ? kValueArray : kValueSum;
  if (want & kWantGrad) c.mode |= kGrad;
  if (want & kWantHess) c.mode |= kHess;
  if (weight) c.mode |= kWeighted;
  if (nan_policy == kOmit) c.mode |= kOmitNaN;
  for (std::size_t k = 0; k < params.size(); ++k) c.params[k] = params[k];
  c.hess_policy = hess_policy;
  c.hess_floor = hess_floor;
  c.nthreads = get_num_threads();
  c.class_split = class_split;
  coalesce_dims(c);

  double denom = static_cast<double>(n);
  bool has_nan = false;
  {
    py::gil_scoped_release nogil;
    if (nan_policy == kRaise) {
      has_nan = run_weight_pass(c, true).n_valid < n;
    }
    if (!has_nan && reduction == kMean && (weight || nan_policy == kOmit || factor_active)) {
      denom = run_weight_pass(c, nan_policy == kOmit).weight_sum;
    }
  }
  if (!has_nan && reduction == kMean) {
    if (const int k = mean_rescale_exponent(denom, dtype)) {
      weight = scaled_weight(weight, k, dtype);
      set_operand(c.weight, weight, shape, "sample_weight");
      c.mode |= kWeighted;
      py::gil_scoped_release nogil;
      denom = run_weight_pass(c, nan_policy == kOmit).weight_sum;
    }
    // No weight at all (every sample ignored or weighted 0): the mean is NaN and the
    // derivatives are 0, as PyTorch gives for an all-ignored batch.
    c.gscale = denom == 0.0 ? 0.0 : 1.0 / denom;
  }
  if (!has_nan) {
    py::gil_scoped_release nogil;
    run_elementwise(c);
  }
  if (has_nan) {
    std::vector<std::pair<py::array, const char*>> ins = {
        {pred, pred_name}, {target, target_name}, {weight, "sample_weight"}};
    if (aux && active_table().aux_is_input[loss]) ins.emplace_back(aux, aux_name);
    raise_nan(ins);
  }
  if (c.bad_target) raise_outside(target, target_name, active_table().target_domain[loss]);

  py::object v = py::none();
  if (want & kWantValue) {
    if (reduction == kNone) v = value;
    else if (class_split)
      v = py::make_tuple(c.value_sum, c.class1_sum, c.class1_count, c.non_binary);
    else if (reduction == kSum) v = py::float_(c.value_sum);
    else v = py::float_(n == 0 ? std::nan("") : c.value_sum / denom);
  }
  auto finish = [&](py::array& result, py::array& full) -> py::object {
    if (!full) return py::none();
    if (pred_full) return result;
    py::object r = reduce_to(full, pred);
    if (result) {
      py::module_::import("numpy").attr("copyto")(result, r);
      return result;
    }
    return r;
  };
  return py::make_tuple(v, finish(grad, grad_full), finish(hess, hess_full));
}

}  // namespace

void register_elementwise(py::module_& m) {
  m.def("elementwise", &elementwise, py::arg("loss"), py::arg("pred"), py::arg("target"),
        py::arg("sample_weight"), py::arg("aux"), py::arg("aux_name"), py::arg("factor_active"),
        py::arg("params"), py::arg("reduction"), py::arg("want"),
        py::arg("out"), py::arg("grad_out"), py::arg("grad_name"), py::arg("hess_out"), py::arg("hess_policy"),
        py::arg("hess_floor"), py::arg("nan_policy"), py::arg("pred_name") = "pred",
        py::arg("target_name") = "target", py::arg("class_split") = false,
        "Run an elementwise loss kernel (internal; use the fastloss.Loss objects). With\n"
        "class_split (reduction='sum', value only) the value is (sum, sum over targets\n"
        "equal to 1, their count, whether a target is neither 0 nor 1).");
  py::list names;
#define FASTLOSS_NAME(name, S) names.append(#name);
  FASTLOSS_ELEMENTWISE_LOSSES(FASTLOSS_NAME)
#undef FASTLOSS_NAME
  m.attr("elementwise_losses") = py::tuple(names);
}

}  // namespace fastloss::bind
