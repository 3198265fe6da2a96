// fastloss bindings — elementwise losses: argument checks, outputs, GIL release, reductions.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
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

// Derivatives w.r.t. a broadcast pred without a full-size temporary (DESIGN.md: stride-0
// operands are never materialised at full size; the gradient of a scalar pred over 1e9
// targets would otherwise be a 4-8 GB array summed afterwards, as autograd's sum_to does).
// The call runs in slabs of at most kSlab elements, each slab's derivatives into one reused
// buffer, then added into float64 sums of pred's shape; rs[d] is the step of those sums along
// the call's dim d (size-1 dims dropped, no others merged), 0 where pred was broadcast. The
// slabs are fixed by the shapes and their sums are added in a fixed order: the same bits for
// any thread count and any layout of the inputs.
constexpr std::int64_t kSlab = std::int64_t(1) << 20;

// The float64 sum of g[0, n): pairwise above 1024 terms (error growing with log n, as NumPy's
// sum), eight partial sums below (a dependency chain of one add per element would take
// several times the kernel's time).
template <class T>
double row_sum(const T* g, std::int64_t n) {
  if (n > 1024) {
    const std::int64_t h = (n / 2 + 7) / 8 * 8;
    return row_sum(g, h) + row_sum(g + h, n - h);
  }
  double p[8] = {};
  std::int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) p[k] += static_cast<double>(g[j + k]);
  for (; j < n; ++j) p[0] += static_cast<double>(g[j]);
  return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

// sum[roff + i . rs] += g[i] over the C-contiguous block g of `shape`; where rs = 0 on the last
// dim, the row is summed first (row_sum).
template <class T>
void add_into(const T* g, int nd, const std::int64_t* shape, const std::int64_t* rs,
              std::int64_t roff, double* sum) {
  const std::int64_t n0 = shape[0];
  if (nd == 1) {
    if (rs[0] == 0) {
      sum[roff] += row_sum(g, n0);
    } else {
      for (std::int64_t j = 0; j < n0; ++j) sum[roff + j * rs[0]] += static_cast<double>(g[j]);
    }
    return;
  }
  std::int64_t step = 1;
  for (int d = 1; d < nd; ++d) step *= shape[d];
  for (std::int64_t i = 0; i < n0; ++i)
    add_into(g + i * step, nd - 1, shape + 1, rs + 1, roff + i * rs[0], sum);
}

// Runs c (coalesced; its value outputs set, its derivative outputs not) in slabs, adding the
// derivatives into gsum / hsum (null: not wanted). The value, when wanted, comes from one
// run over the whole call without derivatives, so that its sum has the same bits as a call
// for the value alone.
void run_broadcast_derivs(ElemCall& c, const std::int64_t* rs, double* gsum, double* hsum) {
  const int value_bits = c.mode & (kValueArray | kValueSum);
  if (value_bits) {
    ElemCall cv = c;
    cv.mode &= ~(kGrad | kHess);
    coalesce_dims(cv);
    run_elementwise(cv);
    c.value_sum = cv.value_sum;
    c.bad_target = cv.bad_target;
  }
  if (c.n == 0) return;
  // c's dims are the call's own, less those of size 1 (not merged by the inputs' strides), so
  // that the slabs and the order of the sums depend on the shapes alone, not on the inputs'
  // layout: a strided input gives the bits of its contiguous copy. Each slab's kernel call
  // merges what it can (that changes no element's result).
  const int nd = c.ndim;
  // Split dim s into runs of `chunk`, with every index of the dims before it.
  int s = nd - 1;
  std::int64_t inner = 1;
  while (s > 0 && inner * c.shape[s] <= kSlab) inner *= c.shape[s--];
  const std::int64_t chunk = std::max<std::int64_t>(1, kSlab / inner);
  const std::int64_t slab_n = std::min(chunk, c.shape[s]) * inner;
  const bool f32 = c.dtype == DType::f32;
  const std::int64_t isz = f32 ? 4 : 8;
  std::vector<double> gbuf(gsum ? slab_n : 0), hbuf(hsum ? slab_n : 0);
  Operand* ins[4] = {&c.pred, &c.target, &c.weight, &c.aux};
  const int snd = nd - s;
  std::int64_t sshape[kMaxDims];  // the slab's shape, in c's dims
  for (int k = 1; k < snd; ++k) sshape[k] = c.shape[s + k];
  std::int64_t idx[kMaxDims] = {};
  for (;;) {
    std::int64_t base[4] = {}, rbase = 0;
    for (int d = 0; d < s; ++d) {
      for (int i = 0; i < 4; ++i) base[i] += idx[d] * ins[i]->strides[d];
      rbase += idx[d] * rs[d];
    }
    for (std::int64_t a = 0; a < c.shape[s]; a += chunk) {
      sshape[0] = std::min(chunk, c.shape[s] - a);
      ElemCall cs = c;
      cs.mode &= ~(kValueArray | kValueSum);
      cs.value.data = nullptr;
      cs.ndim = snd;
      cs.n = sshape[0] * inner;
      Operand* sub[4] = {&cs.pred, &cs.target, &cs.weight, &cs.aux};
      for (int i = 0; i < 4; ++i) {
        if (ins[i]->data) sub[i]->data = ins[i]->data + base[i] + a * ins[i]->strides[s];
        for (int k = 0; k < snd; ++k) sub[i]->strides[k] = ins[i]->strides[s + k];
      }
      std::int64_t step = isz;
      for (int k = snd - 1; k >= 0; --k) {
        cs.shape[k] = sshape[k];
        cs.grad.strides[k] = cs.hess.strides[k] = step;
        step *= sshape[k];
      }
      cs.grad.data = gsum ? reinterpret_cast<char*>(gbuf.data()) : nullptr;
      cs.hess.data = hsum ? reinterpret_cast<char*>(hbuf.data()) : nullptr;
      coalesce_dims(cs);
      run_elementwise(cs);
      c.bad_target = c.bad_target || cs.bad_target;
      // The slab's buffer (C order over sshape) against the sums: dims merged where the sums'
      // steps allow (the shapes alone decide), for long runs in add_into.
      int mnd = 0;
      std::int64_t mshape[kMaxDims], mrs[kMaxDims];
      for (int k = 0; k < snd; ++k) {
        if (sshape[k] == 1) continue;
        if (mnd > 0 && mrs[mnd - 1] == rs[s + k] * sshape[k]) {
          mshape[mnd - 1] *= sshape[k];
          mrs[mnd - 1] = rs[s + k];
          continue;
        }
        mshape[mnd] = sshape[k];
        mrs[mnd++] = rs[s + k];
      }
      if (mnd == 0) {
        mshape[0] = 1;
        mrs[0] = 0;
        mnd = 1;
      }
      const std::int64_t roff = rbase + a * rs[s];
      for (int w = 0; w < 2; ++w) {
        double* sum = w ? hsum : gsum;
        if (!sum) continue;
        const double* buf = w ? hbuf.data() : gbuf.data();
        if (f32)
          add_into(reinterpret_cast<const float*>(buf), mnd, mshape, mrs, roff, sum);
        else
          add_into(buf, mnd, mshape, mrs, roff, sum);
      }
    }
    int d = s - 1;
    while (d >= 0 && ++idx[d] == c.shape[d]) idx[d--] = 0;
    if (d < 0) break;
  }
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
  auto make_deriv = [&](py::handle user, const char* name, py::array& result, OutOperand& op) {
    result = user.is_none() ? null_array() : check_out(user, name, pred_shape, dtype, taken);
    if (pred_full) {
      if (!result) result = new_array(shape, dtype);
      set_out_operand(op, result, nd);
    } else if (!result) {
      result = new_array(pred_shape, dtype);  // run_broadcast_derivs' sums land here
    }
    taken.emplace_back(result, name);
  };
  if (want & kWantGrad) make_deriv(grad_out_o, grad_name.c_str(), grad, c.grad);
  else if (!grad_out_o.is_none()) throw py::value_error(grad_name + "= given but no gradient is computed");
  if (want & kWantHess) make_deriv(hess_out_o, "hess_out", hess, c.hess);
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
  // A broadcast pred's derivatives: the steps of their sums (pred's C-contiguous layout, 0 on
  // the broadcast dims, from the shapes: a pred that is itself a stride-0 view keeps its own
  // dims) ride along as the gradient operand's strides, so that they lose the same size-1
  // dims as the call; the Hessian operand's strides of 1 keep every other dim unmerged.
  const bool slabs = !pred_full && (want & (kWantGrad | kWantHess));
  std::int64_t rs[kMaxDims] = {};
  if (slabs) {
    const int off = nd - static_cast<int>(pred.ndim());
    std::int64_t step = 1;
    for (int d = nd - 1; d >= 0; --d) {
      const bool kept = d >= off && !(pred.shape(d - off) == 1 && shape[d] != 1);
      c.grad.strides[d] = kept ? step : 0;
      if (kept) step *= shape[d];
    }
    c.grad.data = reinterpret_cast<char*>(rs);  // not written: only its strides are read
    c.hess.data = reinterpret_cast<char*>(rs);
    for (int d = 0; d < nd; ++d) c.hess.strides[d] = 1;
  }
  coalesce_dims(c);
  if (slabs) {
    for (int d = 0; d < c.ndim; ++d) rs[d] = c.grad.strides[d];
    c.grad.data = nullptr;
    c.hess.data = nullptr;
  }

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
  std::vector<double> gsum, hsum;
  if (!has_nan && slabs) {
    const std::int64_t np_ = static_cast<std::int64_t>(pred.size());
    if (want & kWantGrad) gsum.assign(np_, 0.0);
    if (want & kWantHess) hsum.assign(np_, 0.0);
    py::gil_scoped_release nogil;
    run_broadcast_derivs(c, rs, gsum.empty() ? nullptr : gsum.data(),
                         hsum.empty() ? nullptr : hsum.data());
  } else if (!has_nan) {
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
  auto finish = [&](py::array& result, std::vector<double>& sums) -> py::object {
    if (!result) return py::none();
    if (pred_full) return result;
    py::array_t<double> r(static_cast<py::ssize_t>(sums.size()), sums.data());
    py::module_::import("numpy").attr("copyto")(result, r.attr("reshape")(pred.attr("shape")));
    return result;
  };
  return py::make_tuple(v, finish(grad, gsum), finish(hess, hsum));
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
