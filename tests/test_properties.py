"""Property tests (hypothesis) for every registered loss.

Shapes, broadcasting, dtypes, strides and extreme values are drawn at random; each loss
is compared with its float64 reference in tests/reference*.py where one exists, and for
every loss:

* the four entry points agree with each other;
* the gradient and Hessian are finite wherever the value is, and every result is finite for
  finite inputs with |first argument| <= 1e4 (DESIGN.md: extreme logits give finite results);
* a strided or negatively strided view gives the numbers of its contiguous copy;
* sum(reduction="none") equals reduction="sum".
"""

from __future__ import annotations

import fastloss as fl
import loss_cases as lc
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

# One value per sample (element or row) of (first, target): the kinds the draws below model
# (lc.NOT_GENERATED_KINDS says why the others are not).
NAMES = lc.loss_names(fl, lc.SAMPLE_KINDS)
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Accuracy asked of the kernels against the float64 reference, relative to the scale of the
# result (as in test_cross_entropy.py).
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}

REF_RANGE = 50.0  # |first argument| up to which the references are compared
EXTREMES = [0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 0.5, 3.0, -3.0, 30.0, -30.0, 1e4, -1e4]
FIRST_DTYPES = [np.float64, np.float32, np.float16, np.int32]


def values(dtype, lo=-1e4, hi=1e4):
    width = 16 if dtype == np.float16 else 32 if dtype == np.float32 else 64
    finite = st.floats(lo, hi, allow_nan=False, width=width)
    return st.one_of(finite, st.sampled_from(EXTREMES))


@st.composite
def arrays_with_layout(draw, dtype, shape, elements):
    """An array of `shape`, contiguous, strided or reversed along its first axis."""
    a = draw(hnp.arrays(dtype, shape, elements=elements))
    layout = draw(st.sampled_from(["contiguous", "strided", "reversed", "fortran"]))
    if a.ndim == 0 or layout == "contiguous":
        return a
    if layout == "strided":
        buf = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)
        buf[::2] = a
        return buf[::2]
    if layout == "reversed":
        return np.ascontiguousarray(a[::-1])[::-1]
    return np.asfortranarray(a)


@st.composite
def elementwise_call(draw, loss):
    shapes, _ = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3,
                                                       max_side=7))
    result = np.broadcast_shapes(shapes[0], shapes[1])
    dtype = draw(st.sampled_from(FIRST_DTYPES))
    if np.dtype(dtype).kind == "i":
        first = draw(arrays_with_layout(dtype, shapes[0], st.integers(-50, 50)))
    else:
        first = draw(arrays_with_layout(dtype, shapes[0], values(dtype)))
    if loss.family == "binary":
        target = draw(arrays_with_layout(np.float64, shapes[1], st.sampled_from([0.0, 1.0])))
    else:
        target = draw(arrays_with_layout(np.float64, shapes[1], values(np.float64)))
    weight = None
    if draw(st.booleans()):
        # sample_weight must not enlarge the loss shape.
        wshape = shapes[2][len(shapes[2]) - len(result):] if result else ()
        wshape = tuple(1 if w != r else w for w, r in zip(wshape, result[len(result) - len(wshape):]))
        weight = draw(arrays_with_layout(np.float64, wshape, st.floats(0.0, 10.0)))
    return first, target, weight


@st.composite
def rowwise_call(draw, loss, labels="hard"):
    rows = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6))
    k = lc.K_CLASSES
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    first = draw(arrays_with_layout(dtype, rows + (k,), values(dtype)))
    if lc.index_targets(loss):
        target = draw(arrays_with_layout(np.int64, rows, st.integers(0, k - 1)))
    elif labels == "soft":  # soft labels in [0, 1]
        target = draw(arrays_with_layout(np.float64, rows + (k,), st.floats(0.0, 1.0)))
    else:  # multi-hot rows, as float 0/1
        target = draw(arrays_with_layout(np.float64, rows + (k,), st.sampled_from([0.0, 1.0])))
    weight = None
    if draw(st.booleans()):
        weight = draw(arrays_with_layout(np.float64, rows, st.floats(0.0, 10.0)))
    return first, target, weight


def draw_call(data, loss, labels="hard"):
    if loss.kind == "elementwise":
        first, target, weight = data.draw(elementwise_call(loss))
    else:
        first, target, weight = data.draw(rowwise_call(loss, labels))
    params = {}
    choices = [(p, v) for p, v, spec in lc.valid_param_values(loss)
               if spec.data is None and not (p == "class_weight" and isinstance(v, str))
               and not callable(v.entry if isinstance(v, lc.Only) else v)]
    if choices and data.draw(st.booleans()):
        p, v = data.draw(st.sampled_from(choices))
        params.update(lc.param_kw(loss, p, v))
    return first, target, weight, params


def compute_dtype(first):
    dt = np.asarray(first).dtype
    return np.dtype(np.float32) if dt in (np.float16, np.float32) else np.dtype(np.float64)


def assert_close(actual, desired, rtol, what, atol=0.0):
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    assert a.shape == d.shape, (what, a.shape, d.shape)
    nan = np.isnan(d)
    assert np.array_equal(np.isnan(a), nan), what
    a, d = a[~nan], d[~nan]
    inf = np.isinf(d)
    assert np.array_equal(a[inf], d[inf]), what
    a, d = a[~inf], d[~inf]
    if d.size:
        scale = np.abs(d) + np.max(np.abs(d))
        err = np.abs(a - d)
        assert np.all(err <= rtol * scale + atol), (what, float(np.max(err)), float(np.max(scale)))


# Multi-hot targets also come as soft labels in [0, 1] (docs/losses.md): drawn apart.
CASES = [(n, "hard") for n in NAMES] + [
    (n, "soft") for n in NAMES if fl.losses[n].kind == "rowwise"
    and not lc.index_targets(fl.losses[n])]


@pytest.mark.parametrize("name, labels", [
    pytest.param(n, lab, marks=lc.known_bug("test_properties", n, lab)) for n, lab in CASES],
                         ids=[n if lab == "hard" else f"{n}-{lab}" for n, lab in CASES])
@SETTINGS
@given(data=st.data())
def test_properties(name, labels, data):
    loss = fl.losses[name]
    first, target, weight, params = draw_call(data, loss, labels)
    cdt = compute_dtype(first)
    reduction = data.draw(st.sampled_from(["none", "sum", "mean"]))
    kw = dict(sample_weight=weight, reduction=reduction, **params)
    with np.errstate(all="ignore"):
        value, grad = loss.value_and_grad(first, target, **kw)
        g2, hess = loss.grad_hess(first, target, **kw)
        v1 = loss(first, target, **kw)
        g1 = loss.grad(first, target, **kw)
    # Separately compiled kernels: a few ulp, or a rounding on the scale of the terms (the
    # sample weights), as for the reference below.
    scale = max(1.0, 0.0 if weight is None else float(np.max(np.abs(weight), initial=0.0)))
    lc.assert_within_ulp([v1, g1, g2], [value, grad, grad],
                         atol=4 * float(np.finfo(cdt).eps) * scale)
    assert grad.shape == hess.shape == np.shape(first)
    assert grad.dtype == cdt
    if reduction == "none":
        assert value.dtype == cdt
    else:
        assert isinstance(value, np.float64)

    # Strided views give the numbers of their contiguous copies.
    plain = [None if a is None else np.array(a, order="C") for a in (first, target, weight)]
    lc.assert_bit_identical(
        loss.value_and_grad(plain[0], plain[1], sample_weight=plain[2], reduction=reduction,
                            **params), (value, grad))

    # Finite where the value is; all finite for moderate finite inputs.
    f64 = np.asarray(first, dtype=np.float64)
    moderate = np.all(np.isfinite(f64)) and np.all(np.abs(f64) <= 1e4) \
        and np.all(np.abs(np.asarray(target, dtype=np.float64)) <= 1e4)
    if reduction == "none":
        v_none = value
    else:
        with np.errstate(all="ignore"):
            v_none = loss(first, target, sample_weight=weight, **params)
    if moderate and loss.kind == "rowwise":
        assert np.all(np.isfinite(v_none)) and np.all(np.isfinite(grad)) \
            and np.all(np.isfinite(hess))
    if moderate and loss.kind == "elementwise":
        # Magnitudes up to 1e4 squared fit every compute dtype; the value of a float16
        # input is computed in float32.
        assert np.all(np.isfinite(v_none)), v_none
        assert np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))
    if reduction != "none" and np.all(np.isfinite(v_none)) and v_none.size:
        total = float(np.sum(v_none, dtype=np.float64))
        s = loss(first, target, sample_weight=weight, reduction="sum", **params)
        assert abs(s - total) <= 1e-6 * (abs(total) + float(np.sum(np.abs(v_none),
                                                                    dtype=np.float64))) + 1e-300

    # The float64 reference, on the inputs as the kernels see them. The references are
    # plain formulas (p (1 - p) with p near 1, ...): they lose relative accuracy for
    # logits far from 0, where the kernels do not; there only the properties above apply.
    ref = lc.reference_for(name)
    if ref is None or not (np.all(np.isfinite(f64)) and np.all(np.abs(f64) <= REF_RANGE)):
        return
    if name == "softmax_focal" and (np.size(first) == 0 or np.ndim(first) != 2):
        return  # its reference takes non-empty [N, K] logits only
    rf = lc.rounded(first, cdt)
    rt = lc.rounded(target, cdt) if loss.kind == "elementwise" else np.asarray(target)
    rw = None if weight is None else lc.rounded(weight, cdt)
    with np.errstate(all="ignore"):  # a mean over zero weight is NaN
        rv, rg, rh = reference_results(loss, ref, first, target, rf, rt, rw, reduction, params)
    rtol = RTOL[cdt]
    # Results that cancel to about 0 (p - q with p == q) are compared absolutely, on the
    # scale of the terms: the sample weights.
    atol = 8 * float(np.finfo(cdt).eps) * max(1.0, 0.0 if weight is None else float(np.max(
        weight, initial=0.0)))
    assert_close(value, rv, rtol, "value", atol)
    if reduction == "mean" and not np.isfinite(rv) and np.all(np.isfinite(grad)):
        # No weight at all: the mean is NaN and fastloss's derivatives are 0 (nothing to
        # learn; docs/losses.md, "Reductions and weights"), where the plain formula divides
        # by zero.
        assert not np.any(grad), "grad"
        return
    assert_close(grad, rg, rtol, "grad", atol)
    assert_close(hess, rh, rtol, "hess", atol)


def sum_to(a, shape):
    a = np.asarray(a, dtype=np.float64)
    extra = a.ndim - len(shape)
    if extra:
        a = a.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and a.shape[i] != 1)
    if axes:
        a = a.sum(axis=axes, keepdims=True)
    return a.reshape(shape)


def reference_results(loss, ref, first, target, rf, rt, rw, reduction, params):
    if loss.kind == "elementwise":
        shape = np.broadcast_shapes(np.shape(first), np.shape(target))
        rf_full = np.broadcast_to(rf, shape)
        rv, rg, rh = ref(rf_full, rt, sample_weight=rw, reduction=reduction, **params)
        return rv, sum_to(rg, np.shape(first)), sum_to(rh, np.shape(first))
    return ref(rf, rt, sample_weight=rw, reduction=reduction, **params)


# Cases the draws above found, kept as regressions.


def test_softmax_cross_entropy_one_row_subnormal_weight_mean():
    # A 0-d weight whose reciprocal overflows: rescaled (exactly) before the mean.
    first = np.zeros(lc.K_CLASSES, np.float32)
    value, grad = fl.softmax_cross_entropy.value_and_grad(
        first, np.array(0), sample_weight=np.array(3.42647131e-35), reduction="mean")
    assert value == pytest.approx(np.log(lc.K_CLASSES), rel=1e-6)
    want = np.full(lc.K_CLASSES, 1.0 / lc.K_CLASSES)
    want[0] -= 1.0
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-7)


def test_sigmoid_focal_grad_entry_points_agree_int32_broadcast():
    first = np.array([[-32], [0], [0], [0]], np.int32)
    g1 = fl.sigmoid_focal.grad(first, np.array(0.0), gamma=3.0)
    g2, _ = fl.sigmoid_focal.grad_hess(first, np.array(0.0), gamma=3.0)
    lc.assert_within_ulp([g1], [g2])
    assert np.all(g1 > 0)
