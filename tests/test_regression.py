"""The shared parametrised matrix: every loss against the reference.

A loss joins the matrix with one row in ``CASES``:

    Case("name", make_args, {params}),

where ``make_args(rng, shape, dtype)`` returns the positional arguments
(first one differentiated) and the reference function is
``reference.REFERENCE["name"]``.  Each row is run for every dtype x reduction
x sample_weight x out= x ISA path x thread count x length, and compared with
the reference: values, gradients, Hessians under every policy, returned
dtypes, out= identity, and bit-identical reductions across thread counts and
runs.  Further sections check derivatives by finite differences, broadcasting,
dtype rules, nan_policy and extreme inputs for the regression losses.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import fastloss as fl
import numpy as np
import pytest
import reference as ref
import reference_focal as ref_focal
import reference_margin as ref_margin

THREAD_COUNTS = (1, 2, 7)
DTYPES = (np.float32, np.float64)
REDUCTIONS = ("none", "sum", "mean")
WEIGHTINGS = ("unweighted", "weights", "scalar_weight")
HESSIANS = ("exact", "clip", "abs", "fisher")
# Accuracy asked of the kernels, relative to the magnitude of the result.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def regression_args(rng, shape, dtype):
    """pred, target ~ N(0, 3^2); every seventh target equals its pred."""
    pred = rng.normal(0.0, 3.0, size=shape).astype(dtype)
    target = rng.normal(0.0, 3.0, size=shape).astype(dtype)
    if pred.size:
        target.reshape(-1)[::7] = pred.reshape(-1)[::7]
    return pred, target


def hinge_args(rng, shape, dtype):
    """scores ~ N(0, 2^2), labels in {-1, +1}; every seventh score sits on the kink y f = 1."""
    scores = rng.normal(0.0, 2.0, size=shape).astype(dtype)
    target = rng.choice(np.array([-1.0, 1.0]), size=shape).astype(dtype)
    if scores.size:
        scores.reshape(-1)[::7] = target.reshape(-1)[::7]
    return scores, target


def hinge_args01(rng, shape, dtype):
    """As hinge_args with 0/1 labels (0 is read as -1), kinks at y f = 0.5 (margin 0.5)."""
    scores = rng.normal(0.0, 2.0, size=shape).astype(dtype)
    target = rng.integers(0, 2, size=shape).astype(dtype)
    if scores.size:
        scores.reshape(-1)[::7] = 0.5 * (2 * target.reshape(-1)[::7] - 1)
    return scores, target


def binary_args(rng, shape, dtype):
    """logits ~ N(0, 3^2); targets 0/1 for half the elements, soft in [0, 1] for the rest."""
    logits = rng.normal(0.0, 3.0, size=shape).astype(dtype)
    hard = (rng.uniform(size=shape) < 0.3).astype(np.float64)
    target = np.where(rng.uniform(size=shape) < 0.5, hard, rng.uniform(size=shape)).astype(dtype)
    return logits, target


def _focal_entry(fn):
    # "fisher" of these losses depends on the logit (see test_focal_reference.py), not a
    # constant: the matrix runs exact, clip and abs for them.
    return {"fn": fn, "params": {}, "kind": "elementwise", "fisher": None, "kink_distance": None}


# The references of all elementwise losses in the matrix.
REFERENCES = {**ref.REFERENCE, **ref_margin.REFERENCE,
              "sigmoid_focal": _focal_entry(ref_focal.sigmoid_focal_terms),
              "sigmoid_power_cross_entropy": _focal_entry(ref_focal.sigmoid_power_terms)}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    make_args: Callable
    params: dict = dataclasses.field(default_factory=dict)

    @property
    def id(self):
        extra = "-".join(f"{k}{v}" for k, v in sorted(self.params.items()))
        return f"{self.name}-{extra}" if extra else self.name

    @property
    def loss(self):
        return fl.losses[self.name]

    @property
    def reference(self):
        return REFERENCES[self.name]


# One row per loss (and per interesting parameter setting).
CASES = [
    Case("squared_error", regression_args),
    Case("absolute_error", regression_args),
    Case("huber", regression_args, {"delta": 1.0}),
    Case("huber", regression_args, {"delta": 0.5}),
    Case("log_cosh", regression_args),
    Case("hinge", hinge_args),
    Case("hinge", hinge_args01, {"margin": 0.5}),
    Case("squared_hinge", hinge_args),
    Case("squared_hinge", hinge_args01, {"margin": 0.5}),
    Case("sigmoid_focal", binary_args),
    Case("sigmoid_focal", binary_args, {"gamma": 0.5, "alpha": None}),
    Case("sigmoid_power_cross_entropy", binary_args, {"n": 3.7}),
]
REGRESSION_NAMES = ("squared_error", "absolute_error", "huber", "log_cosh")
REGRESSION = [c for c in CASES if c.name in REGRESSION_NAMES]

case_param = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
dtype_param = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)


# --------------------------------------------------------------------------
# Helpers: expected results and comparisons
# --------------------------------------------------------------------------


def compute_dtype(dtype):
    """The dtype fastloss computes and returns in, given pred's dtype."""
    dtype = np.dtype(dtype)
    if dtype == np.float32 or dtype == np.float16:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def rounded(x, dtype):
    """x as the kernel sees it: converted to the compute dtype, then float64."""
    return np.asarray(np.asarray(x).astype(dtype), dtype=np.float64)


def policies(case):
    return [p for p in HESSIANS if p != "fisher" or case.reference["fisher"] is not None]


def expected(case, args, reduction="none", sample_weight=None, hessian="exact", hess_floor=1e-6,
             nan_policy="propagate", params=None, magnitudes=False):
    """Reference (value, grad, hess) for a call, in float64.

    Inputs are first rounded to the compute dtype, as the kernels see them.
    With magnitudes=True also the sums of |terms| behind grad and hess (they
    differ from |grad| where a broadcast pred sums terms of both signs, and
    set the scale of the rounding error there).
    """
    params = case.params if params is None else params
    cdt = compute_dtype(np.asarray(args[0]).dtype)
    a64 = [rounded(a, cdt) for a in args]
    shape = np.broadcast_shapes(*[a.shape for a in a64])
    bargs = [np.broadcast_to(a, shape) for a in a64]
    value, grad, hess = case.reference["fn"](*bargs, **params)
    hess = ref.apply_hessian_policy(hess, case.name, hessian, hess_floor)
    w = None if sample_weight is None else np.broadcast_to(rounded(sample_weight, cdt), shape)
    if nan_policy == "omit":
        bad = np.zeros(shape, bool)
        for a in bargs:
            bad |= np.isnan(a)
        w = np.where(bad, 0.0, 1.0 if w is None else w)
        value, grad, hess = (np.where(bad, 0.0, x) for x in (value, grad, hess))
    reduced = ref.reduce(value, w, reduction)
    scale = ref.derivative_scale(w, shape, reduction)
    pred_shape = np.shape(args[0])
    with np.errstate(invalid="ignore"):
        g = ref.sum_to_shape(scale * grad, pred_shape)
        h = ref.sum_to_shape(scale * hess, pred_shape)
        if magnitudes:
            g_mag = ref.sum_to_shape(np.abs(scale * grad), pred_shape)
            h_mag = ref.sum_to_shape(np.abs(scale * hess), pred_shape)
            return reduced, g, h, g_mag, h_mag
    return reduced, g, h


def assert_close(actual, desired, rtol, what="", mask=None, magnitude=None):
    """Elementwise |actual - desired| <= rtol * (|desired| + max|desired|).

    The tolerance is relative to the magnitude of the whole result, so that
    results near zero (cancellation, tiny Hessians) are held to the accuracy
    of the large ones; `magnitude` (same shape) replaces |desired| in that
    maximum where the result is a sum of terms.  NaN and inf must sit in the
    same places.  Results below the output dtype's smallest normal may
    underflow (sech^2 of a large residual is 0 in float32).
    """
    actual = np.asarray(actual)
    floor = float(np.finfo(actual.dtype).tiny) if actual.dtype.kind == "f" else 0.0
    actual = actual.astype(np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    magnitude = np.abs(desired) if magnitude is None else np.asarray(magnitude, dtype=np.float64)
    if mask is not None:
        actual, desired, magnitude = actual[mask], desired[mask], magnitude[mask]
    nan_a, nan_d = np.isnan(actual), np.isnan(desired)
    assert np.array_equal(nan_a, nan_d), f"{what}: NaN at {np.flatnonzero(nan_a != nan_d)[:10]}"
    inf_d = np.isinf(desired)
    assert np.array_equal(actual[inf_d], desired[inf_d]), f"{what}: inf mismatch"
    finite = ~(nan_d | inf_d)
    a, d = actual[finite], desired[finite]
    if d.size == 0:
        return
    mag = magnitude[finite]
    scale = max(float(np.max(np.abs(d))), float(np.max(mag)), np.finfo(np.float64).tiny)
    err = np.abs(a - d)
    tol = rtol * (np.abs(d) + scale) + floor
    bad = err > tol
    if bad.any():
        i = int(np.argmax(err - tol))
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {d.size} elements differ beyond rtol={rtol}; "
            f"worst actual={a[i]!r} desired={d[i]!r} err={err[i]:.3g} tol={tol[i]:.3g}"
        )


def assert_reduced(value, desired, rtol, what=""):
    assert isinstance(value, np.float64), f"{what}: {type(value)} is not np.float64"
    if math.isnan(desired):
        assert math.isnan(value), f"{what}: expected nan, got {value!r}"
        return
    assert value == pytest.approx(desired, rel=rtol), what


def same(a, b):
    """Bit-identical results (NaN equal to NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return np.float64(a).tobytes() == np.float64(b).tobytes()


def hess_kink_mask(case, args):
    """Elements clear of the loss's kinks (None: no kinks).

    A derivative jumps at a kink (huber's Hessian at |r| == delta), and an
    input within a rounding or two of it can land on either side in the
    compute dtype.
    """
    distance = case.reference["kink_distance"]
    if distance is None:
        return None
    cdt = compute_dtype(np.asarray(args[0]).dtype)
    a64 = [rounded(a, cdt) for a in args]
    shape = np.broadcast_shapes(*[a.shape for a in a64])
    a64 = [np.broadcast_to(a, shape) for a in a64]
    size = sum(np.abs(a) for a in a64) + 1.0
    with np.errstate(invalid="ignore"):
        near = distance(*a64, **case.params) <= 8 * np.finfo(cdt).eps * size
    # A broadcast pred element sums many terms: unsure if any of them is.
    return ref.sum_to_shape(near, np.shape(args[0])) == 0


def make_weight(kind, rng, shape, dtype):
    if kind == "unweighted":
        return None
    if kind == "weights":
        return rng.uniform(0.25, 2.0, size=shape).astype(dtype)
    if kind == "scalar_weight":
        return 1.75
    raise ValueError(kind)


def call_all(case, args, reduction, weight, use_out, hessians, **extra):
    """Every method once; with use_out, preallocated outputs everywhere allowed.

    Returns {key: result}; checks out= identity and output dtypes on the way.
    """
    loss = case.loss
    cdt = compute_dtype(np.asarray(args[0]).dtype)
    shape = np.broadcast_shapes(*[np.shape(a) for a in args])
    pred_shape = np.shape(args[0])
    kw = dict(case.params, reduction=reduction, sample_weight=weight, **extra)
    res = {}

    def new(s):
        return np.full(s, -12345.0, dtype=cdt) if use_out else None

    def check_array(x, target_shape, out, what):
        if target_shape == () and out is None and isinstance(x, np.generic):
            x = np.asarray(x)  # a NumPy scalar for 0-d inputs, as ufuncs return
        assert isinstance(x, np.ndarray), f"{what}: {type(x)}"
        assert x.dtype == cdt, f"{what}: dtype {x.dtype} != {cdt}"
        assert x.shape == target_shape, f"{what}: shape {x.shape} != {target_shape}"
        if out is not None:
            assert x is out, f"{what}: did not return the out= array"
            assert x.size == 0 or np.shares_memory(x, out)

    def check_value(v, out, what):
        if reduction == "none":
            check_array(v, shape, out, what)
        else:
            assert isinstance(v, np.float64), f"{what}: {type(v)}"

    out = new(shape) if reduction == "none" else None
    res["value"] = loss(*args, out=out, **kw)
    check_value(res["value"], out, "value")

    gout = new(pred_shape)
    res["grad"] = loss.grad(*args, out=gout, **kw)
    check_array(res["grad"], pred_shape, gout, "grad")

    out = new(shape) if reduction == "none" else None
    gout = new(pred_shape)
    v, g = loss.value_and_grad(*args, out=out, grad_out=gout, **kw)
    check_value(v, out, "value_and_grad value")
    check_array(g, pred_shape, gout, "value_and_grad grad")
    res["vg_value"], res["vg_grad"] = v, g

    for policy in hessians:
        gout, hout = new(pred_shape), new(pred_shape)
        g, h = loss.grad_hess(*args, hessian=policy, grad_out=gout, hess_out=hout, **kw)
        check_array(g, pred_shape, gout, f"grad_hess[{policy}] grad")
        check_array(h, pred_shape, hout, f"grad_hess[{policy}] hess")
        res[f"gh_grad_{policy}"], res[f"hess_{policy}"] = g, h
    return res


def compare_with_reference(case, args, reduction, weight, res, rtol, **extra):
    v_ref, g_ref, _, g_mag, _ = expected(case, args, reduction, weight, magnitudes=True, **extra)
    for key in ("value", "vg_value"):
        if reduction == "none":
            assert_close(res[key], v_ref, rtol, key)
        else:
            assert_reduced(res[key], v_ref, rtol, key)
    for key in ("grad", "vg_grad") + tuple(k for k in res if k.startswith("gh_grad_")):
        assert_close(res[key], g_ref, rtol, key, magnitude=g_mag)
    mask = hess_kink_mask(case, args)
    for key in res:
        if key.startswith("hess_"):
            policy = key[len("hess_"):]
            _, _, h_ref, _, h_mag = expected(case, args, reduction, weight, hessian=policy,
                                             magnitudes=True, **extra)
            assert_close(res[key], h_ref, rtol, key, mask=mask, magnitude=h_mag)


# --------------------------------------------------------------------------
# The matrix
# --------------------------------------------------------------------------


@case_param
@dtype_param
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_matrix(case, dtype, reduction, weighting, isa, length, rng):
    """Reference agreement for every method, out= mode and thread count.

    Reduced values and all returned arrays must be bit-identical across the
    thread counts, and from one run to the next.
    """
    args = case.make_args(rng, (length,), dtype)
    weight = make_weight(weighting, rng, (length,), dtype)
    rtol = RTOL[np.dtype(dtype)]
    pols = policies(case)
    first = None
    for use_out in (False, True):
        for n in THREAD_COUNTS:
            with fl.threads(n):
                res = call_all(case, args, reduction, weight, use_out, pols)
            if first is None:
                compare_with_reference(case, args, reduction, weight, res, rtol)
                first = res
            else:
                for key in res:
                    assert same(res[key], first[key]), (
                        f"{key}: threads={n} out={use_out} differs from threads=1"
                    )
    with fl.threads(THREAD_COUNTS[-1]):
        again = call_all(case, args, reduction, weight, False, pols)
    for key in again:
        assert same(again[key], first[key]), f"{key}: differs from one run to the next"


@case_param
@dtype_param
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_large(case, dtype, reduction, large_length, rng):
    """10**6 samples: reference agreement and thread-count bit-identity."""
    args = case.make_args(rng, (large_length,), dtype)
    weight = make_weight("weights", rng, (large_length,), dtype)
    rtol = RTOL[np.dtype(dtype)]
    pols = ["exact"]
    results = []
    for n in THREAD_COUNTS:
        with fl.threads(n):
            results.append(call_all(case, args, reduction, weight, n == 2, pols))
    compare_with_reference(case, args, reduction, weight, results[0], rtol)
    for res in results[1:]:
        for key in res:
            assert same(res[key], results[0][key]), key
    with fl.threads(7):
        again = call_all(case, args, reduction, weight, False, pols)
    for key in again:
        assert same(again[key], results[0][key]), key


@case_param
@dtype_param
def test_large_unweighted_reductions_bit_identical(case, dtype, large_length, rng):
    args = case.make_args(rng, (large_length,), dtype)
    for reduction in ("sum", "mean"):
        values = []
        for n in THREAD_COUNTS + (1,):
            with fl.threads(n):
                values.append(case.loss(*args, reduction=reduction, **case.params))
        assert all(v == values[0] for v in values), (reduction, values)
        desired, _, _ = expected(case, args, reduction)
        assert_reduced(values[0], desired, RTOL[np.dtype(dtype)], reduction)


@case_param
@dtype_param
def test_isa_paths_agree_with_baseline(case, dtype, rng):
    isas = list(fl._core.supported_isas())
    assert "baseline" in isas
    n = 3 * int(fl.show_config(mode="dicts")["block_size"]) + 13
    args = case.make_args(rng, (n,), dtype)
    weight = make_weight("weights", rng, (n,), dtype)
    rtol = RTOL[np.dtype(dtype)]
    results = {}
    for name in isas:
        previous = fl._set_isa(name)
        try:
            assert fl._core.active_isa() == name
            results[name] = {
                red: call_all(case, args, red, weight, False, policies(case)) for red in REDUCTIONS
            }
        finally:
            fl._set_isa(previous)
    base = results["baseline"]
    mask = hess_kink_mask(case, args)
    for name in isas:
        for red in REDUCTIONS:
            for key, value in results[name][red].items():
                what = f"{name} vs baseline, {red}, {key}"
                if red != "none" and "value" in key:
                    assert value == pytest.approx(base[red][key], rel=2 * rtol), what
                else:
                    assert_close(value, base[red][key], 2 * rtol, what,
                                 mask=mask if key.startswith("hess") else None)


@case_param
@dtype_param
def test_no_spurious_invalid_flag(case, dtype, isa, fp_exceptions):
    # Finite inputs: no lane, padding included, may raise "invalid" or
    # "divbyzero" (NumPy would report it as a RuntimeWarning in the caller's
    # next ufunc loop that checks the flags, e.g. np.vectorize).
    rng = np.random.default_rng(21)
    bad = []
    for n in list(range(34)) + [1000]:
        args = case.make_args(rng, (n,), dtype)
        w = rng.uniform(0.5, 2.0, n).astype(dtype)
        for reduction in REDUCTIONS:
            kw = dict(case.params, reduction=reduction, sample_weight=w)
            if n == 0 and reduction == "mean":
                continue  # the NaN of an empty mean is a genuine 0/0
            methods = {
                "value": case.loss,
                "grad": case.loss.grad,
                "value_and_grad": case.loss.value_and_grad,
                "grad_hess": case.loss.grad_hess,
            }
            for what, method in methods.items():
                raised = fp_exceptions(lambda m=method, a=args, k=kw: m(*a, **k))
                raised &= {"invalid", "divbyzero"}
                if raised:
                    bad.append((n, reduction, what, sorted(raised)))
    assert not bad, (
        f"flags raised (length, reduction, method, flags): {bad[:8]} ... ({len(bad)} in all)"
    )


def test_set_isa_restores_and_rejects_unknown():
    previous = fl._set_isa("baseline")
    try:
        assert fl._core.active_isa() == "baseline"
        assert fl.show_config(mode="dicts")["isa"]["active"] == "baseline"
    finally:
        assert fl._set_isa(previous) == "baseline"
    assert fl._core.active_isa() == previous
    with pytest.raises(ValueError):
        fl._set_isa("no_such_isa")
    assert fl._core.active_isa() == previous


# --------------------------------------------------------------------------
# Finite differences of fastloss against itself (float64)
# --------------------------------------------------------------------------


def central_difference(f, x, h):
    return (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h)


def fd_points(case, rng, n=2000, margin=1e-3):
    """Random float64 arguments at least `margin` from every kink."""
    args = case.make_args(rng, (n,), np.float64)
    distance = case.reference["kink_distance"]
    if distance is None:
        return args
    keep = distance(*args, **case.params) > margin
    return tuple(a[keep] for a in args)


@case_param
def test_grad_is_finite_difference_of_value(case, isa, rng):
    pred, target = fd_points(case, rng)
    h = 1e-4
    fd = central_difference(lambda p: case.loss(p, target, **case.params), pred, h)
    grad = case.loss.grad(pred, target, **case.params)
    assert_close(grad, fd, 1e-7, "grad vs FD of value")


@case_param
def test_hess_is_finite_difference_of_grad(case, isa, rng):
    pred, target = fd_points(case, rng)
    h = 1e-4
    fd = central_difference(lambda p: case.loss.grad(p, target, **case.params), pred, h)
    _, hess = case.loss.grad_hess(pred, target, **case.params)
    assert_close(hess, fd, 1e-7, "hess vs FD of grad")


@case_param
@pytest.mark.parametrize("reduction", ("sum", "mean"))
def test_reduced_grad_is_finite_difference_of_reduced_value(case, reduction, rng):
    pred, target = fd_points(case, rng, n=40)
    weight = rng.uniform(0.5, 2.0, size=pred.shape)
    kw = dict(case.params, reduction=reduction, sample_weight=weight)
    grad = case.loss.grad(pred, target, **kw)
    h = 1e-4
    for i in range(0, pred.size, 5):

        def at(x, i=i):
            p = pred.copy()
            p[i] = x
            return case.loss(p, target, **kw)

        fd = central_difference(at, float(pred[i]), h)
        assert grad[i] == pytest.approx(float(fd), rel=1e-6, abs=1e-9), i


# --------------------------------------------------------------------------
# Broadcasting and memory layouts
# --------------------------------------------------------------------------

regression_param = pytest.mark.parametrize("case", REGRESSION, ids=lambda c: c.id)


def check_call(case, args, reduction="none", weight=None, rtol=None):
    cdt = compute_dtype(np.asarray(args[0]).dtype)
    rtol = RTOL[cdt] if rtol is None else rtol
    res = call_all(case, args, reduction, weight, False, policies(case))
    compare_with_reference(case, args, reduction, weight, res, rtol)
    return res


@regression_param
@dtype_param
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_scalar_target(case, dtype, reduction, rng):
    pred, _ = case.make_args(rng, (50,), dtype)
    for target in (0.75, np.float64(-1.5), np.array(2.0, dtype=dtype), 3):
        check_call(case, (pred, target), reduction)


@regression_param
@dtype_param
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_outer_broadcast(case, dtype, reduction, weighting, rng):
    # (N, 1) vs (1, M): the loss is (N, M); the gradient is summed over M.
    pred = rng.normal(0, 3, (37, 1)).astype(dtype)
    target = rng.normal(0, 3, (1, 29)).astype(dtype)
    weight = make_weight(weighting, rng, (37, 29), dtype)
    res = check_call(case, (pred, target), reduction, weight)
    assert res["grad"].shape == (37, 1)
    # The other way round: target (N, 1), pred (1, M).
    weight_t = weight.T if isinstance(weight, np.ndarray) else weight
    swapped = (target.reshape(29, 1).copy(), pred.reshape(1, 37).copy())
    check_call(case, swapped, reduction, weight_t)


@regression_param
def test_outer_broadcast_large_thread_identity(case, rng):
    pred = rng.normal(0, 3, (1100, 1))
    target = rng.normal(0, 3, (1, 1000))
    results = []
    for n in THREAD_COUNTS:
        with fl.threads(n):
            results.append((case.loss(pred, target, reduction="mean", **case.params),
                            case.loss.grad(pred, target, reduction="sum", **case.params)))
    for v, g in results[1:]:
        assert v == results[0][0]
        assert same(g, results[0][1])
    check_call(case, (pred, target), "sum")


# Broadcast pred over many elements: the derivatives are summed slab by slab (the bindings
# never hold a full-size gradient), in float64. Shapes whose loss has several slabs of 2^20
# elements, split on different dims; the last pred is itself a stride-0 view, whose own dim
# must not merge with the broadcast one.
SLAB_SHAPES = [((), (2_300_000,)), ((3, 1), (3, 700_000)), ((1, 1500), (1500, 1500)),
               ((2, 1, 3), (2, 400_000, 3)), ("view", (1500, 1500))]


@pytest.mark.parametrize("pshape, tshape", SLAB_SHAPES, ids=lambda s: str(s))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_broadcast_pred_derivatives_over_slabs(pshape, tshape, dtype, rng):
    if pshape == "view":
        pred = np.broadcast_to(np.asarray(0.2, dtype), (1, tshape[1]))
    else:
        pred = rng.normal(0, 1, pshape).astype(dtype)
    target = rng.normal(0, 2, tshape).astype(dtype)
    full = np.ascontiguousarray(np.broadcast_to(pred, tshape))
    off = len(tshape) - pred.ndim
    axes = tuple(d for d in range(len(tshape))
                 if d < off or (pred.shape[d - off] == 1 and tshape[d] != 1))
    for loss, params in ((fl.squared_error, {}), (fl.huber, {"delta": 0.7})):
        for reduction in ("sum", "mean"):
            g_full, h_full = loss.grad_hess(full, target, reduction=reduction, **params)
            want_g = g_full.sum(axis=axes, dtype=np.float64).reshape(pred.shape)
            want_h = h_full.sum(axis=axes, dtype=np.float64).reshape(pred.shape)
            results = []
            for n in (1, 2, 3):
                with fl.threads(n):
                    results.append(loss.grad_hess(pred, target, reduction=reduction, **params))
            for g, h in results:
                assert g.shape == pred.shape and g.dtype == dtype
                assert same(g, results[0][0]) and same(h, results[0][1])
            g, h = results[0]
            # float64 sums of the same terms in another order: float32 results within an ulp
            # or two of the larger terms' sum.
            tol = 4e-6 if dtype == np.float32 else 1e-12
            scale = np.abs(g_full).sum(axis=axes, dtype=np.float64).reshape(pred.shape)
            assert np.all(np.abs(g - want_g) <= tol * (scale + 1e-30)), reduction
            hscale = np.abs(h_full).sum(axis=axes, dtype=np.float64).reshape(pred.shape)
            assert np.all(np.abs(h - want_h) <= tol * (hscale + 1e-30)), reduction
            v, g2 = loss.value_and_grad(pred, target, reduction=reduction, **params)
            assert v == loss(pred, target, reduction=reduction, **params)
            assert v == loss(full, target, reduction=reduction, **params)
            assert np.all(np.abs(g2 - want_g) <= tol * (scale + 1e-30))
            # The inputs' layout does not change the bits (the slabs follow the shapes).
            for other in (np.asfortranarray(target), np.ascontiguousarray(target[::-1])[::-1]):
                got = loss.grad_hess(pred, other, reduction=reduction, **params)
                assert same(got[0], g) and same(got[1], h)


def test_broadcast_pred_derivative_bits_do_not_depend_on_layout():
    # A 0-d pred against a strided target: the bits of the contiguous target's call (a case
    # that hypothesis found, where the sums once followed the inputs' merged dims).
    base = np.array([0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.0, 2.0, 2.0]).reshape(3, 3, 1)
    strided = np.zeros((3, 6, 1))
    strided[:, ::2] = base
    for loss in (fl.log_cosh, fl.squared_error, fl.huber):
        for reduction in ("none", "sum", "mean"):
            want = loss.value_and_grad(np.array(0.0), base, reduction=reduction)
            got = loss.value_and_grad(np.array(0.0), strided[:, ::2], reduction=reduction)
            assert same(got[1], want[1]) and np.array_equal(got[0], want[0])


@regression_param
@dtype_param
def test_zero_dim(case, dtype):
    pred = np.array(1.25, dtype=dtype)
    target = np.array(-0.5, dtype=dtype)
    value = case.loss(pred, target, **case.params)
    # A NumPy scalar of the compute dtype, as a ufunc gives for 0-d operands.
    assert isinstance(value, np.generic) and value.dtype == compute_dtype(dtype)
    v_ref, g_ref, _ = expected(case, (pred, target))
    assert float(value) == pytest.approx(float(v_ref), rel=RTOL[np.dtype(dtype)])
    grad = case.loss.grad(pred, target, **case.params)
    assert isinstance(grad, np.generic) and grad.dtype == compute_dtype(dtype)
    g2, h2 = case.loss.grad_hess(pred, target, **case.params)
    assert isinstance(g2, np.generic) and isinstance(h2, np.generic)
    # An out= array is returned itself, 0-d.
    out = np.empty((), compute_dtype(dtype))
    assert case.loss(pred, target, out=out, **case.params) is out
    assert out == value
    assert float(grad) == pytest.approx(float(g_ref), rel=RTOL[np.dtype(dtype)])
    for reduction in ("sum", "mean"):
        v = case.loss(pred, target, reduction=reduction, **case.params)
        assert isinstance(v, np.float64)
        assert v == pytest.approx(float(v_ref), rel=RTOL[np.dtype(dtype)])
    # Python scalars on both sides compute in float64.
    value = case.loss(1.25, -0.5, **case.params)
    assert np.asarray(value).dtype == np.float64
    desired = float(expected(case, (np.float64(1.25), -0.5))[0])
    assert float(value) == pytest.approx(desired, rel=1e-12)


@regression_param
@dtype_param
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_stride_zero_operands(case, dtype, reduction, nthreads, rng):
    cfg = fl.show_config(mode="dicts")
    n = max(3 * int(cfg["block_size"]), int(cfg["serial_threshold"])) + 5  # parallel
    pred, _ = case.make_args(rng, (n,), dtype)
    target = np.broadcast_to(np.asarray(0.3, dtype=dtype), (n,))
    weight = np.broadcast_to(np.asarray(1.5, dtype=dtype), (n,))
    assert target.strides == (0,)
    check_call(case, (pred, target), reduction, weight)
    # A stride-0 pred is a full-shape operand: its gradient is not summed.
    pred0 = np.broadcast_to(np.asarray(0.9, dtype=dtype), (n,))
    _, target_full = case.make_args(rng, (n,), dtype)
    res = check_call(case, (pred0, target_full), reduction)
    assert res["grad"].shape == (n,)


@regression_param
@dtype_param
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_non_contiguous_and_fortran(case, dtype, reduction, rng):
    base_p, base_t = case.make_args(rng, (2 * 1001,), dtype)
    w = rng.uniform(0.5, 2.0, 3 * 1001).astype(dtype)
    check_call(case, (base_p[::2], base_t[1::2]), reduction, w[::3])
    check_call(case, (base_p[::-2], base_t[::2]), reduction, w[::-3])
    p2 = np.asfortranarray(rng.normal(0, 3, (31, 17)).astype(dtype))
    t2 = np.asfortranarray(rng.normal(0, 3, (31, 17)).astype(dtype))
    w2 = np.ascontiguousarray(rng.uniform(0.5, 2, (31, 17)).astype(dtype))
    assert p2.flags.f_contiguous and not p2.flags.c_contiguous
    res = check_call(case, (p2, t2), reduction, w2)
    # Transposed views and a mix of layouts.
    check_call(case, (p2.T, np.ascontiguousarray(t2.T)), reduction, w2.T)
    check_call(case, (p2[::2, ::3], t2[::2, ::3]), reduction)
    if reduction == "none":
        # out= in C order for a Fortran-ordered input: exact shape is enough.
        out = np.empty((31, 17), dtype=dtype)
        assert case.loss(p2, t2, out=out, sample_weight=w2, **case.params) is out
        assert_close(out, res["value"], RTOL[np.dtype(dtype)], "fortran out")


@regression_param
def test_read_only_inputs(case, rng):
    pred, target = case.make_args(rng, (257,), np.float64)
    weight = rng.uniform(0.5, 2.0, 257)
    for a in (pred, target, weight):
        a.flags.writeable = False
    for reduction in REDUCTIONS:
        check_call(case, (pred, target), reduction, weight)


@regression_param
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_python_lists(case, reduction):
    pred = [0.5, -2.0, 3.0, 1.0]
    target = [0.0, 1.0, 3.0, -0.25]
    res = check_call(case, (pred, target), reduction)
    assert res["grad"].dtype == np.float64


def test_byte_swapped_input():
    pred = np.array([0.5, -2.0, 3.0], dtype=">f8")
    target = np.array([0.0, 1.0, 2.5], dtype="<f8")
    value = fl.squared_error(pred, target)
    np.testing.assert_array_equal(value, [0.25, 9.0, 0.25])
    assert value.dtype == np.float64


# --------------------------------------------------------------------------
# dtype rules
# --------------------------------------------------------------------------


@regression_param
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float16_pred_computes_in_float32(case, reduction, rng):
    pred = rng.normal(0, 3, 300).astype(np.float16)
    target = rng.normal(0, 3, 300).astype(np.float16)
    res = check_call(case, (pred, target), reduction)
    assert res["grad"].dtype == np.float32


@regression_param
@pytest.mark.parametrize("pred_dtype", [np.int8, np.int32, np.int64, np.uint16, np.bool_])
def test_integer_and_bool_pred_compute_in_float64(case, pred_dtype, rng):
    pred = rng.integers(0, 2 if pred_dtype is np.bool_ else 5, 100).astype(pred_dtype)
    target = rng.normal(0, 3, 100)
    for reduction in REDUCTIONS:
        res = check_call(case, (pred, target), reduction)
        assert res["grad"].dtype == np.float64


@regression_param
@pytest.mark.parametrize("target_dtype", [np.float64, np.float16, np.int16, np.uint8, np.bool_])
def test_float32_pred_keeps_float32(case, target_dtype, rng):
    pred = rng.normal(0, 3, 200).astype(np.float32)
    target = (rng.normal(0, 3, 200) if np.dtype(target_dtype).kind == "f"
              else rng.integers(0, 2, 200)).astype(target_dtype)
    weight = rng.uniform(0.5, 2, 200)  # float64 weights do not promote either
    for reduction in REDUCTIONS:
        res = check_call(case, (pred, target), reduction, weight)
        assert res["grad"].dtype == np.float32
        if reduction == "none":
            assert res["value"].dtype == np.float32


@regression_param
def test_mixed_precision_rounds_target_to_compute_dtype(case):
    # target is converted to float32 before the subtraction, so the float64
    # target and its float32 rounding give bit-identical results.
    target = np.array([1.0 + 2.0**-30, -3.0 - 2.0**-28, 0.1, 2.5], dtype=np.float64)
    pred = np.array([1.0, -3.0, 0.7, -1.25], dtype=np.float32)
    value = case.loss(pred, target, **case.params)
    assert value.dtype == np.float32
    assert same(value, case.loss(pred, target.astype(np.float32), **case.params))
    grad = case.loss.grad(pred, target, **case.params)
    assert same(grad, case.loss.grad(pred, target.astype(np.float32), **case.params))


# --------------------------------------------------------------------------
# nan_policy
# --------------------------------------------------------------------------


def with_nans(rng, dtype, n=64):
    pred, target = regression_args(rng, (n,), dtype)
    pred[[3, 17]] = np.nan
    target[[5, 17, 40]] = np.nan
    bad = np.isnan(pred) | np.isnan(target)
    return pred, target, bad


@regression_param
@dtype_param
def test_nan_propagate(case, dtype, rng):
    pred, target, bad = with_nans(rng, dtype)
    value = case.loss(pred, target, **case.params)
    assert np.isnan(value[bad]).all()
    assert not np.isnan(value[~bad]).any()
    v_ref, g_ref, _ = expected(case, (pred, target))
    assert_close(value, v_ref, RTOL[np.dtype(dtype)], "value")
    grad = case.loss.grad(pred, target, **case.params)
    assert np.isnan(grad[bad]).all(), "a NaN input must not get a finite gradient"
    assert_close(grad[~bad], g_ref[~bad], RTOL[np.dtype(dtype)], "grad")
    for reduction in ("sum", "mean"):
        assert math.isnan(case.loss(pred, target, reduction=reduction, **case.params))
    # The default is "propagate".
    explicit = case.loss(pred, target, nan_policy="propagate", **case.params)
    assert same(explicit, value)


@regression_param
def test_nan_raise_names_the_argument(case, rng):
    pred, target = regression_args(rng, (40,), np.float64)
    for method in (case.loss, case.loss.grad, case.loss.value_and_grad, case.loss.grad_hess):
        p = pred.copy()
        p[7] = np.nan
        with pytest.raises(ValueError, match="pred"):
            method(p, target, nan_policy="raise", **case.params)
        t = target.copy()
        t[30] = np.nan
        with pytest.raises(ValueError, match="target"):
            method(pred, t, nan_policy="raise", **case.params)
        # No NaN: same result as "propagate".
        assert same(np.asarray(method(pred, target, nan_policy="raise", **case.params)[0]),
                    np.asarray(method(pred, target, **case.params)[0]))


def test_nan_raise_large_input_from_any_block(rng):
    n = 5 * int(fl.show_config(mode="dicts")["block_size"]) + 3
    pred, target = regression_args(rng, (n,), np.float64)
    pred[n - 1] = np.nan  # in the ragged last block
    for t in THREAD_COUNTS:
        with fl.threads(t), pytest.raises(ValueError, match="pred"):
            fl.squared_error(pred, target, nan_policy="raise", reduction="sum")


@regression_param
@dtype_param
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighting", ("unweighted", "weights"))
def test_nan_omit(case, dtype, reduction, weighting, rng):
    pred, target, bad = with_nans(rng, dtype)
    weight = make_weight(weighting, rng, pred.shape, dtype)
    rtol = RTOL[np.dtype(dtype)]
    kw = dict(case.params, reduction=reduction, sample_weight=weight, nan_policy="omit")
    value = case.loss(pred, target, **kw)
    v_ref, g_ref, h_ref = expected(case, (pred, target), reduction, weight, nan_policy="omit")
    if reduction == "none":
        assert np.array_equal(value[bad], np.zeros(bad.sum())), "omitted samples contribute 0"
        assert_close(value, v_ref, rtol, "value")
    else:
        assert_reduced(value, v_ref, rtol, "value")
    grad, hess = case.loss.grad_hess(pred, target, **kw)
    assert np.array_equal(grad[bad], np.zeros(bad.sum()))
    assert np.array_equal(hess[bad], np.zeros(bad.sum()))
    assert_close(grad, g_ref, rtol, "grad")
    assert_close(hess, h_ref, rtol, "hess", mask=hess_kink_mask(case, (pred, target)))
    if reduction == "mean":
        # The omitted samples are out of the denominator too.
        keep = ~bad
        w = np.ones(pred.shape) if weight is None else weight
        clean = case.loss(pred[keep], target[keep], reduction="mean",
                          sample_weight=w[keep], **case.params)
        assert value == pytest.approx(clean, rel=rtol)


def test_nan_omit_all_nan_mean_is_nan():
    pred = np.full(5, np.nan)
    assert math.isnan(fl.squared_error(pred, np.zeros(5), reduction="mean", nan_policy="omit"))
    assert fl.squared_error(pred, np.zeros(5), reduction="sum", nan_policy="omit") == 0.0


# --------------------------------------------------------------------------
# Extreme values, empty inputs
# --------------------------------------------------------------------------

EXTREMES = {
    np.dtype(np.float32): [1e4, -1e4, 3e4, -3e4],
    np.dtype(np.float64): [1e4, -1e4, 1e30, -1e30, 1e300, -1e300],
}


@pytest.mark.parametrize("case", [c for c in REGRESSION if c.name != "squared_error"],
                         ids=lambda c: c.id)
@dtype_param
def test_extreme_residuals_give_finite_results(case, dtype, isa):
    big = np.array(EXTREMES[np.dtype(dtype)] * 5, dtype=dtype)  # > one vector of each
    target = np.zeros_like(big)
    for args in ((big, target), (target, big)):
        value = case.loss(*args, **case.params)
        grad, hess = case.loss.grad_hess(*args, **case.params)
        assert np.isfinite(value).all(), value
        assert np.isfinite(grad).all(), grad
        assert np.isfinite(hess).all(), hess
        v_ref, g_ref, h_ref = expected(case, args)
        assert_close(value, v_ref, RTOL[np.dtype(dtype)], "value")
        assert_close(grad, g_ref, RTOL[np.dtype(dtype)], "grad")
        assert_close(hess, h_ref, RTOL[np.dtype(dtype)], "hess")


@regression_param
@dtype_param
def test_small_residuals_keep_relative_accuracy(case, dtype, isa):
    # Losses of tiny residuals (r^2/2 for log_cosh, tanh r ~ r) must not be
    # computed by cancelling O(1) terms: each element to rtol of itself.
    r = np.concatenate([np.geomspace(1e-6, 0.1, 200), -np.geomspace(1e-6, 0.1, 37)]).astype(dtype)
    target = np.zeros_like(r)
    rtol = RTOL[np.dtype(dtype)]
    value, grad = case.loss.value_and_grad(r, target, **case.params)
    v_ref, g_ref, _ = case.reference["fn"](r.astype(np.float64), 0.0, **case.params)
    np.testing.assert_allclose(value, v_ref, rtol=rtol, atol=0, err_msg="value")
    np.testing.assert_allclose(grad, g_ref, rtol=rtol, atol=0, err_msg="grad")


def test_squared_error_large_but_representable(isa):
    pred = np.array([1e4, -1e4, 1e30, -1e30] * 5)
    value, grad = fl.squared_error.value_and_grad(pred, np.zeros_like(pred))
    assert np.isfinite(value).all() and np.isfinite(grad).all()
    assert_close(value, pred**2, 1e-15, "value")
    assert_close(grad, 2 * pred, 1e-15, "grad")


@regression_param
@dtype_param
def test_infinite_inputs(case, dtype):
    pred = np.array([np.inf, -np.inf, np.inf, 1.0], dtype=dtype)
    target = np.array([0.0, 0.0, np.inf, np.inf], dtype=dtype)
    value = case.loss(pred, target, **case.params)
    v_ref, _, _ = expected(case, (pred, target))
    assert_close(value, v_ref, RTOL[np.dtype(dtype)], "value")


@case_param
@dtype_param
def test_empty_shapes(case, dtype):
    for shape in [(0,), (3, 0), (0, 5)]:
        pred = np.zeros(shape, dtype)
        target = np.zeros(shape, dtype)
        value = case.loss(pred, target, **case.params)
        assert value.shape == shape and value.dtype == dtype
        assert case.loss(pred, target, reduction="sum", **case.params) == 0.0
        assert math.isnan(case.loss(pred, target, reduction="mean", **case.params))
        grad, hess = case.loss.grad_hess(pred, target, reduction="mean", **case.params)
        assert grad.shape == shape and hess.shape == shape


@regression_param
def test_sum_of_none_equals_sum(case, rng):
    pred, target = regression_args(rng, (10007,), np.float64)
    weight = rng.uniform(0.5, 2.0, 10007)
    per_sample = case.loss(pred, target, sample_weight=weight, **case.params)
    total = case.loss(pred, target, reduction="sum", sample_weight=weight, **case.params)
    mean = case.loss(pred, target, reduction="mean", sample_weight=weight, **case.params)
    assert total == pytest.approx(math.fsum(per_sample), rel=1e-13)
    assert mean == pytest.approx(math.fsum(per_sample) / math.fsum(weight), rel=1e-13)


def test_huber_delta_not_representable_in_float32(rng):
    pred, target = regression_args(rng, (500,), np.float32)
    case = Case("huber", regression_args, {"delta": 0.3})
    check_call(case, (pred, target), "none")
    check_call(case, (pred, target), "mean")


def test_huber_delta_changes_result(rng):
    pred, target = regression_args(rng, (100,), np.float64)
    a = fl.huber(pred, target, delta=0.5)
    b = fl.huber(pred, target, delta=2.0)
    assert not np.array_equal(a, b)
    assert same(fl.huber(pred, target), fl.huber(pred, target, delta=1.0))


# --------------------------------------------------------------------------
# Property tests: random broadcastable shapes and values
# --------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


@settings(max_examples=60, deadline=None)
@given(
    case=st.sampled_from(REGRESSION),
    dtype=st.sampled_from(DTYPES),
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=6),
    reduction=st.sampled_from(REDUCTIONS),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([0.1, 1.0, 30.0, 1e4]),
)
def test_property_broadcasting(case, dtype, shapes, reduction, seed, scale):
    pred_shape, target_shape, weight_shape = shapes.input_shapes
    result_shape = shapes.result_shape
    # sample_weight must not enlarge the broadcast shape of (pred, target).
    try:
        if np.broadcast_shapes(pred_shape, target_shape) != result_shape:
            weight_shape = ()
    except ValueError:
        weight_shape = ()
    rng = np.random.default_rng(seed)
    pred = (rng.normal(0, scale, pred_shape)).astype(dtype)
    target = (rng.normal(0, scale, target_shape)).astype(dtype)
    weight = rng.uniform(0.5, 2.0, weight_shape).astype(dtype)
    check_call(case, (pred, target), reduction, weight)


@settings(max_examples=60, deadline=None)
@given(
    case=st.sampled_from(REGRESSION),
    values=hnp.arrays(np.float64, st.integers(0, 40),
                      elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)),
    target=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)
def test_property_finite_inputs_give_finite_outputs(case, values, target):
    value = case.loss(values, target, **case.params)
    grad, hess = case.loss.grad_hess(values, target, **case.params)
    assert np.isfinite(value).all() and np.isfinite(grad).all() and np.isfinite(hess).all()
    assert (value >= 0).all()
    check_call(case, (values, np.float64(target)), "sum")


# --------------------------------------------------------------------------
# External oracle: PyTorch's own implementations
# --------------------------------------------------------------------------


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    pred, target = regression_args(rng, (5000,), np.float64)
    tp = torch.tensor(pred, requires_grad=True)
    tt = torch.tensor(target)
    oracles = {
        "squared_error": (fl.squared_error, {}, lambda: F.mse_loss(tp, tt, reduction="sum")),
        "absolute_error": (fl.absolute_error, {}, lambda: F.l1_loss(tp, tt, reduction="sum")),
        "huber": (fl.huber, {"delta": 0.7},
                  lambda: F.huber_loss(tp, tt, reduction="sum", delta=0.7)),
        "log_cosh": (fl.log_cosh, {}, lambda: torch.sum(torch.log(torch.cosh(tp - tt)))),
    }
    for name, (loss, params, oracle) in oracles.items():
        tp.grad = None
        total = oracle()
        total.backward()
        value, grad = loss.value_and_grad(pred, target, reduction="sum", **params)
        assert value == pytest.approx(total.item(), rel=1e-12), name
        np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)
