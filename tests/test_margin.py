"""hinge, squared_hinge, margin_ranking, multiclass_hinge, crcnn_ranking,
multilabel_softmax_cross_entropy against tests/reference_margin.py.

hinge and squared_hinge also run in the shared matrix of test_regression.py; this file adds
what is particular to them (label forms, the XGBoost Hessian) and covers the other losses:
every dtype x reduction x weighting x ISA path x thread count, finite differences away from
the kinks, extremes, NaN policies and bad input.
"""

from __future__ import annotations

import fastloss as fl
import numpy as np
import pytest
import reference_margin as ref

DTYPES = (np.float32, np.float64)
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
REDUCTIONS = ("none", "sum", "mean")
THREADS = (1, 2, 7)


def rounded(x, dtype):
    return np.asarray(x).astype(dtype).astype(np.float64)


def assert_close(actual, desired, rtol, what=""):
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, f"{what}: {actual.shape} != {desired.shape}"
    assert np.array_equal(np.isnan(actual), np.isnan(desired)), f"{what}: NaN placement"
    ok = ~np.isnan(desired)
    if not ok.any():
        return
    scale = float(np.max(np.abs(desired[ok]))) + 1e-300
    err = np.abs(actual[ok] - desired[ok])
    assert np.all(err <= rtol * (np.abs(desired[ok]) + scale)), (
        f"{what}: max err {err.max():.3g} (scale {scale:.3g})")


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def central_difference(f, x, h):
    return (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h)


def weighted(value, grad, hess, w, reduction):
    """Reference reduction of per-sample (value, grad, hess); w per sample (None: 1)."""
    n = value.shape[0]
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    wd = w.reshape((n,) + (1,) * (grad.ndim - 1))
    if reduction == "none":
        return w * value, wd * grad, wd * hess
    total = float(np.sum(w * value))
    if reduction == "sum":
        return total, wd * grad, wd * hess
    d = float(np.sum(w))
    return (np.nan if n == 0 else total / d), wd * grad / d, wd * hess / d


def check(loss, args, params, ref_value, ref_grad, ref_hess, w_eff, w_call, reduction, dtype,
          hessian="exact", what="", clip_where=None):
    rtol = RTOL[np.dtype(dtype)]
    if hessian == "clip":  # max(h, hess_floor) per entry (not on masked entries)
        clipped = np.maximum(ref_hess, 1e-6)
        ref_hess = clipped if clip_where is None else np.where(clip_where, clipped, ref_hess)
    v_ref, g_ref, h_ref = weighted(ref_value, ref_grad, ref_hess, w_eff, reduction)
    kw = dict(params, reduction=reduction, sample_weight=w_call)
    v = loss(*args, **kw)
    v2, g = loss.value_and_grad(*args, **kw)
    g2, h = loss.grad_hess(*args, hessian=hessian, **kw)
    if reduction == "none":
        assert v.dtype == np.dtype(dtype)
        assert_close(v, v_ref, rtol, f"{what} value")
    else:
        assert isinstance(v, np.float64)
        assert v == pytest.approx(v_ref, rel=rtol, nan_ok=True), what
    # The methods are separate kernel instantiations: equal up to FMA contraction.
    assert_close(v, v2, rtol, f"{what} value_and_grad value")
    assert g.dtype == np.dtype(dtype) and h.dtype == np.dtype(dtype)
    assert_close(g, g_ref, rtol, f"{what} grad")
    assert_close(g2, g_ref, rtol, f"{what} grad_hess grad")
    assert_close(loss.grad(*args, **kw), g_ref, rtol, f"{what} .grad")
    assert_close(h, h_ref, rtol, f"{what} hess")
    return v, g, h


# --------------------------------------------------------------------------
# hinge and squared_hinge: what the shared matrix does not cover
# --------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [fl.hinge, fl.squared_hinge], ids=lambda l: l.name)
def test_hinge_label_forms_agree(loss, rng):
    f = rng.normal(0, 2, 1000)
    t01 = rng.integers(0, 2, 1000)
    tpm = 2 * t01 - 1
    for red in REDUCTIONS:
        a = loss.value_and_grad(f, t01, reduction=red)
        b = loss.value_and_grad(f, tpm, reduction=red)
        assert same(a[0], b[0]) and same(a[1], b[1])


def test_hinge_hand_values():
    f = np.array([2.0, 0.5, 1.0, -0.5, 0.0])
    t = np.array([1, 1, 1, 0, -1])
    v, g = fl.hinge.value_and_grad(f, t)
    assert v.tolist() == [0.0, 0.5, 0.0, 0.5, 1.0]
    assert g.tolist() == [0.0, -1.0, 0.0, 1.0, 1.0]  # 0 at the kink y f = 1
    v, g = fl.squared_hinge.value_and_grad(f, t)
    assert v.tolist() == [0.0, 0.25, 0.0, 0.25, 1.0]
    assert g.tolist() == [0.0, -1.0, 0.0, 1.0, 2.0]
    _, h = fl.squared_hinge.grad_hess(f, t)
    assert h.tolist() == [0.0, 2.0, 0.0, 2.0, 2.0]
    assert fl.hinge(f, t, margin=0.0).tolist() == [0.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_hinge_xgboost_hessian(dtype, isa, rng):
    f = rng.normal(0, 2, 3000).astype(dtype)
    t = rng.integers(0, 2, 3000).astype(dtype)
    w = rng.uniform(0.5, 2, 3000)
    g, h = fl.hinge.grad_hess(f, t, hessian="xgboost", sample_weight=w)
    want = ref.hinge_xgboost_hess(rounded(f, dtype), t) * rounded(w, dtype)
    assert_close(h, want, RTOL[np.dtype(dtype)], "xgboost hess")
    # XGBoost's binary:hinge: g = -y w, h = w where y f < 1; g = 0, h = FLT_MIN elsewhere.
    y = 2.0 * t - 1
    active = y * rounded(f, dtype) < 1
    assert np.all(h[~active] > 0)
    assert_close(g, np.where(active, -y * rounded(w, dtype), 0.0), RTOL[np.dtype(dtype)])


def test_hinge_rejects_fisher_and_bad_labels():
    with pytest.raises(ValueError, match="hessian"):
        fl.hinge.grad_hess(np.zeros(3), np.ones(3), hessian="fisher")
    with pytest.raises(ValueError, match="hessian"):
        fl.squared_hinge.grad_hess(np.zeros(3), np.ones(3), hessian="xgboost")
    with pytest.raises(ValueError, match=r"target must hold labels in \{-1, \+1\} or \{0, 1\}; "
                                         r"got 0.5 at index \(2,\)"):
        fl.hinge(np.zeros(4), np.array([1.0, 0.0, 0.5, -1.0]))
    with pytest.raises(ValueError, match="target must hold labels"):
        fl.squared_hinge(np.zeros(4), np.array([2, 1, 0, 1]))
    with pytest.raises(TypeError, match="margin"):
        fl.hinge(np.zeros(3), np.ones(3), margin="1")
    with pytest.raises(ValueError, match="margin"):
        fl.hinge(np.zeros(3), np.ones(3), margin=np.inf)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hinge_extremes_finite(dtype, isa):
    f = np.array([1e4, -1e4, 1e4, -1e4], dtype=dtype)
    t = np.array([1, 1, 0, 0])
    for loss in (fl.hinge, fl.squared_hinge):
        v, g = loss.value_and_grad(f, t)
        _, h = loss.grad_hess(f, t)
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))


# --------------------------------------------------------------------------
# margin_ranking
# --------------------------------------------------------------------------


def ranking_args(rng, n, dtype):
    x1 = rng.normal(0, 1, n).astype(dtype)
    x2 = rng.normal(0, 1, n).astype(dtype)
    y = rng.choice(np.array([-1, 1]), n)
    return x1, x2, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted_", (False, True), ids=("unweighted", "weights"))
@pytest.mark.parametrize("n", (0, 1, 7, 9, 17, 8193, 40000))
def test_margin_ranking_matrix(dtype, reduction, weighted_, n, isa, rng):
    x1, x2, y = ranking_args(rng, n, dtype)
    w = rng.uniform(0.5, 2, n) if weighted_ else None
    margin = 0.3
    rtol = RTOL[np.dtype(dtype)]
    v_ref, g1_ref, g2_ref = ref.margin_ranking(rounded(x1, dtype), rounded(x2, dtype), y, margin)
    wr = None if w is None else rounded(w, dtype)
    vr, gr1, _ = weighted(v_ref, g1_ref, g1_ref, wr, reduction)
    _, gr2, _ = weighted(v_ref, g2_ref, g2_ref, wr, reduction)
    first = None
    for nt in THREADS:
        with fl.threads(nt):
            kw = {"margin": margin, "reduction": reduction, "sample_weight": w}
            v = fl.margin_ranking(x1, x2, y, **kw)
            v2, (g1, g2) = fl.margin_ranking.value_and_grad(x1, x2, y, **kw)
            (h1g, h2g), (h1, h2) = fl.margin_ranking.grad_hess(x1, x2, y, hessian="clip", **kw)
        if first is None:
            if reduction == "none":
                assert_close(v, vr, rtol, "value")
            else:
                assert v == pytest.approx(vr, rel=rtol, nan_ok=True)
            assert_close(g1, gr1, rtol, "g1")
            assert_close(g2, gr2, rtol, "g2")
            assert same(g1, h1g) and same(g2, h2g)
            _, hr, _ = weighted(v_ref, np.full(n, 1e-6), np.zeros(n), wr, reduction)
            assert_close(h1, hr, rtol, "h1")
            assert_close(h2, hr, rtol, "h2")
            assert g1.dtype == np.dtype(dtype) and g2.dtype == np.dtype(dtype)
            assert h1 is not h2
            first = (v, g1, g2, h1)
        else:
            assert all(same(a, b) for a, b in zip(first, (v, g1, g2, h1)))
        assert same(v, v2)


def test_margin_ranking_broadcast_and_out(rng):
    x1 = rng.normal(0, 1, (4, 5))
    x2 = rng.normal(0, 1, (5,))
    y = np.ones((4, 1))
    g1, g2 = fl.margin_ranking.grad(x1, x2, y, margin=0.1)
    _, r1, r2 = ref.margin_ranking(x1, np.broadcast_to(x2, (4, 5)), np.broadcast_to(y, (4, 5)), 0.1)
    assert g1.shape == (4, 5) and g2.shape == (5,)
    assert_close(g1, r1, 1e-12)
    assert_close(g2, r2.sum(axis=0), 1e-12)
    # out= pairs, written in place when nothing is broadcast.
    x2f = np.broadcast_to(x2, (4, 5)).copy()
    o1, o2 = np.empty((4, 5)), np.empty((4, 5))
    _v, (a, b) = fl.margin_ranking.value_and_grad(x1, x2f, y, grad_out=(o1, o2), margin=0.1)
    assert a is o1 and b is o2
    assert_close(o2, r2, 1e-12)
    with pytest.raises(TypeError, match="grad_out"):
        fl.margin_ranking.value_and_grad(x1, x2f, y, grad_out=o1)
    with pytest.raises(ValueError, match="x1 .* x2 .* y"):
        fl.margin_ranking(np.zeros(3), np.zeros(4), np.ones(3))


def test_margin_ranking_scalar_x2_sums_gradient():
    x1 = np.array([0.0, 1.0, 2.0])
    g1, g2 = fl.margin_ranking.grad(x1, 1.0, np.array([1, 1, 1]), margin=0.5)
    assert g1.tolist() == [-1.0, -1.0, 0.0]
    assert np.shape(g2) == () and float(g2) == 2.0


def test_margin_ranking_finite_differences(rng):
    x1, x2, y = ranking_args(rng, 500, np.float64)
    keep = np.abs(0.2 - y * (x1 - x2)) > 1e-3
    x1, x2, y = x1[keep], x2[keep], y[keep]
    w = rng.uniform(0.5, 2, x1.size)
    kw = {"margin": 0.2, "reduction": "mean", "sample_weight": w}
    g1, g2 = fl.margin_ranking.grad(x1, x2, y, **kw)
    for i in range(0, x1.size, 37):
        def f1(t, i=i):
            a = x1.copy()
            a[i] = t
            return fl.margin_ranking(a, x2, y, **kw)

        def f2(t, i=i):
            b = x2.copy()
            b[i] = t
            return fl.margin_ranking(x1, b, y, **kw)

        assert g1[i] == pytest.approx(central_difference(f1, x1[i], 1e-5), abs=1e-9)
        assert g2[i] == pytest.approx(central_difference(f2, x2[i], 1e-5), abs=1e-9)


def test_margin_ranking_nan_policies():
    x1 = np.array([0.0, 1.0, 2.0])
    x2 = np.array([1.0, np.nan, 0.0])
    y = np.array([1, 1, -1])
    v = fl.margin_ranking(x1, x2, y)
    assert np.isnan(v[1]) and not np.isnan(v[0])
    assert float(fl.margin_ranking(x1, x2, y, nan_policy="omit", reduction="mean")) == 1.5
    g1, g2 = fl.margin_ranking.grad(x1, x2, y, nan_policy="omit", reduction="mean")
    assert g1.tolist() == [-0.5, 0.0, 0.5] and g2.tolist() == [0.5, 0.0, -0.5]
    with pytest.raises(ValueError, match=r"x2 contains NaN \(first at index \(1,\)\)"):
        fl.margin_ranking(x1, x2, y, nan_policy="raise")
    with pytest.raises(ValueError, match=r"y must hold labels"):
        fl.margin_ranking(x1, x1, np.array([1, 3, 1]))
    with pytest.raises(TypeError, match="x2"):
        fl.margin_ranking(x1, np.array(["a", "b", "c"]), y)
    with pytest.raises(TypeError, match="x1"):
        fl.margin_ranking(np.array(["a", "b", "c"]), x1, y)
    with pytest.raises(ValueError, match="hessian"):
        fl.margin_ranking.grad_hess(x1, x1, y, hessian="fisher")


# Output arrays of margin_ranking: every one is checked (type, dtype, shape, writeable, no
# memory shared with an input or another output) before anything is written, on the direct
# path (nothing broadcast) and on the copy path (a broadcast input's derivative is summed and
# copied), under the name the caller used.

def mr_inputs(path):
    """(x1, x2, y, sample_weight) on the direct or the broadcast path."""
    if path == "direct":
        return (np.array([0.0, 1.0, 2.0]), np.array([0.5, 0.2, 0.9]), np.ones(3),
                np.array([1.0, 2.0, 0.5]))
    return (np.array([[0.0], [1.0]]), np.array([0.5, 0.2, 0.9]), np.ones((2, 3)),
            np.array([[1.0], [2.0]]))


def mr_buffer(a):
    return np.full(np.shape(a), 7.0)


def view_as(src, shape):
    """A view of src's memory with `shape` (src holds at least that many elements)."""
    return src.reshape(-1)[: int(np.prod(shape))].reshape(shape)


def overlapping(shape_a, shape_b):
    """Two fresh arrays of these shapes sharing one element of memory."""
    na, nb = int(np.prod(shape_a)), int(np.prod(shape_b))
    buf = np.full(na + nb - 1, 7.0)
    return buf[:na].reshape(shape_a), buf[na - 1:].reshape(shape_b)


# (method, keyword, slot, the input or output the slot aliases, the message)
MR_OVERLAPS = [
    ("grad", "out", 1, "x2", r"out\[1\] overlaps the memory of x2"),
    ("grad", "out", 0, "x1", r"out\[0\] overlaps the memory of x1"),
    ("grad", "out", 1, "y", r"out\[1\] overlaps the memory of y"),
    ("grad", "out", 0, "sample_weight", r"out\[0\] overlaps the memory of sample_weight"),
    ("grad", "out", 1, "out[0]", r"out\[1\] overlaps the memory of out\[0\]"),
    ("value_and_grad", "grad_out", 1, "x2", r"grad_out\[1\] overlaps the memory of x2"),
    ("value_and_grad", "grad_out", 0, "out", r"grad_out\[0\] overlaps the memory of out;"),
    ("grad_hess", "hess_out", 1, "x2", r"hess_out\[1\] overlaps the memory of x2"),
    ("grad_hess", "hess_out", 0, "x1", r"hess_out\[0\] overlaps the memory of x1"),
    ("grad_hess", "hess_out", 1, "hess_out[0]",
     r"hess_out\[1\] overlaps the memory of hess_out\[0\]"),
    ("grad_hess", "hess_out", 1, "grad_out[0]",
     r"hess_out\[1\] overlaps the memory of grad_out\[0\]"),
]


@pytest.mark.parametrize("path", ("direct", "broadcast"))
@pytest.mark.parametrize("method, key, slot, alias, message", MR_OVERLAPS,
                         ids=[f"{m}-{k}{s}-{a}" for m, k, s, a, _ in MR_OVERLAPS])
def test_margin_ranking_refuses_outputs_sharing_memory(path, method, key, slot, alias,
                                                       message):
    x1, x2, y, w = mr_inputs(path)
    inputs = {"x1": x1, "x2": x2, "y": y, "sample_weight": w}
    keep = {k: a.copy() for k, a in inputs.items()}
    shapes = (x1.shape, x2.shape)
    kw = {"sample_weight": w}
    if method == "value_and_grad":
        kw["out"] = inputs["out"] = np.full(np.broadcast_shapes(x1.shape, x2.shape), 7.0)
    pair = [np.full(s, 7.0) for s in shapes]
    if alias == f"{key}[0]":
        pair = list(overlapping(*shapes))
    elif alias == "grad_out[0]":
        g0, pair[1] = overlapping(*shapes)
        kw["grad_out"] = (g0, np.full(shapes[1], 7.0))
    else:
        pair[slot] = view_as(inputs[alias], shapes[slot])
    if method == "grad_hess" and "grad_out" not in kw:
        kw["grad_out"] = tuple(np.full(s, 7.0) for s in shapes)
    outputs = pair + list(kw.get("grad_out", ())) + ([kw["out"]] if "out" in kw else [])
    before = [o.copy() for o in outputs]
    with pytest.raises(ValueError, match=message):
        getattr(fl.margin_ranking, method)(x1, x2, y, **{key: tuple(pair)}, **kw)
    for k, a in inputs.items():
        if k != "out":
            np.testing.assert_array_equal(a, keep[k], err_msg=k)
    # Refused before anything was computed: no output was written either.
    for a, b in zip(outputs, before):
        np.testing.assert_array_equal(a, b)


def test_margin_ranking_bug_reports_leave_inputs_alone():
    x1, x2, y = np.array([0.0, 1.0, 2.0]), np.array([0.5, 0.2, 0.9]), np.ones(3)
    with pytest.raises(ValueError, match=r"hess_out\[1\] overlaps the memory of x2"):
        fl.margin_ranking.grad_hess(x1, x2, y, hessian="clip", hess_out=(np.empty(3), x2))
    assert x2.tolist() == [0.5, 0.2, 0.9]
    a1, a2 = np.array([[0.0], [1.0]]), np.array([0.5, 0.2, 0.9])
    with pytest.raises(ValueError, match=r"out\[1\] overlaps the memory of x2"):
        fl.margin_ranking.grad(a1, a2, np.ones((2, 3)), margin=0.5, out=(np.empty((2, 1)), a2))
    assert a2.tolist() == [0.5, 0.2, 0.9]
    b = np.empty(3)
    with pytest.raises(ValueError, match=r"out\[1\] overlaps the memory of out\[0\]"):
        fl.margin_ranking.grad(x1, x2, y, out=(b, b))


@pytest.mark.parametrize("path", ("direct", "broadcast"))
def test_margin_ranking_bad_output_names_the_argument(path):
    x1, x2, y, _ = mr_inputs(path)
    keep = [a.copy() for a in (x1, x2, y)]
    ro = np.empty(x2.shape)
    ro.flags.writeable = False
    good1, good2 = np.empty(x1.shape), np.empty(x2.shape)
    mr = fl.margin_ranking
    with pytest.raises(ValueError, match=r"hess_out\[1\] is read-only"):
        mr.grad_hess(x1, x2, y, hess_out=(np.empty(x1.shape), ro))
    with pytest.raises(TypeError, match=r"out\[0\] must have dtype float64 .*got float32"):
        mr.grad(x1, x2, y, out=(np.empty(x1.shape, np.float32), good2))
    with pytest.raises(TypeError, match=r"grad_out\[1\] must have dtype float64 .*got >f8"):
        mr.value_and_grad(x1, x2, y, grad_out=(good1, np.empty(x2.shape, ">f8")))
    with pytest.raises(TypeError, match=r"hess_out\[0\] must have dtype float64 .*got int64"):
        mr.grad_hess(x1, x2, y, hess_out=(np.empty(x1.shape, np.int64), good2))
    with pytest.raises(ValueError, match=r"grad_out\[1\] must have shape \(3,\), got \(4,\)"):
        mr.grad_hess(x1, x2, y, grad_out=(good1, np.empty(4)))
    with pytest.raises(TypeError, match=r"out\[1\] must be a numpy.ndarray, got list"):
        mr.grad(x1, x2, y, out=(good1, [0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"^out= holds per-sample losses"):
        mr.value_and_grad(x1, x2, y, reduction="sum", out=np.empty(y.shape))
    for a, b in zip((x1, x2, y), keep):
        np.testing.assert_array_equal(a, b)


def test_margin_ranking_wrong_out_dtype_is_a_type_error_as_elsewhere():
    x = np.array([0.0, 1.0, 2.0])
    with pytest.raises(TypeError) as elementwise_error:
        fl.hinge.grad(x, np.ones(3), out=np.empty(3, np.float32))
    with pytest.raises(type(elementwise_error.value), match=r"out\[0\] must have dtype"):
        fl.margin_ranking.grad(x, x[::-1].copy(), np.ones(3),
                               out=(np.empty(3, np.float32), np.empty(3)))


@pytest.mark.parametrize("d1, d2", [(np.float64, np.float32), (np.float32, np.float64),
                                    (np.float16, np.float32), (np.int64, np.float32),
                                    (np.float32, np.float16), (np.float32, np.int32)])
@pytest.mark.parametrize("path", ("direct", "broadcast"))
def test_margin_ranking_each_derivative_in_its_input_dtype(d1, d2, path):
    x1, x2, y, w = mr_inputs(path)
    x1, x2 = x1.astype(d1), x2.astype(d2)
    want1 = np.float32 if np.dtype(d1) in (np.float16, np.float32) else np.float64
    want2 = np.float32 if np.dtype(d2) in (np.float16, np.float32) else np.float64
    kw = {"margin": 0.5, "sample_weight": w, "reduction": "mean"}
    _, (g1, g2) = fl.margin_ranking.value_and_grad(x1, x2, y, **kw)
    (_, _), (h1, h2) = fl.margin_ranking.grad_hess(x1, x2, y, hessian="clip", **kw)
    assert (g1.dtype, h1.dtype, g2.dtype, h2.dtype) == (want1, want1, want2, want2)
    # The loss itself is computed, and comes per sample, in x1's dtype.
    assert fl.margin_ranking(x1, x2, y, margin=0.5).dtype == want1
    assert g1.shape == h1.shape == x1.shape and g2.shape == h2.shape == x2.shape
    # The same numbers as the call in float64 (the gradients are multiples of w / sum(w)).
    r1, r2 = fl.margin_ranking.grad(x1.astype(np.float64), x2.astype(np.float64), y, **kw)
    assert_close(g1, r1, 1e-6)
    assert_close(g2, r2, 1e-6)
    assert g1.tolist() != [0.0] * g1.size
    # Output pairs take each input's dtype; the other dtype is refused under its name.
    o1, o2 = np.empty(x1.shape, want1), np.empty(x2.shape, want2)
    got = fl.margin_ranking.grad(x1, x2, y, out=(o1, o2), **kw)
    assert got[0] is o1 and got[1] is o2 and same(o2, g2)
    if want1 != want2:
        with pytest.raises(TypeError, match=rf"out\[1\] must have dtype {np.dtype(want2)}"):
            fl.margin_ranking.grad(x1, x2, y, out=(o1, np.empty(x2.shape, want1)), **kw)


def test_margin_ranking_scalar_float32_x2_gradient():
    x1 = np.array([0.0, 1.0, 2.0], np.float32)
    g1, g2 = fl.margin_ranking.grad(x1, np.float64(1.0), np.array([1, 1, 1]), margin=0.5)
    assert g1.dtype == np.float32 and g2.dtype == np.float64 and float(g2) == 2.0
    g1, g2 = fl.margin_ranking.grad(x1.astype(np.float64), np.float32(1.0), 1, margin=0.5)
    assert g2.dtype == np.float32 and g2.shape == () and float(g2) == 2.0


@pytest.mark.parametrize("path", ("direct", "broadcast"))
def test_margin_ranking_valid_outputs_are_filled(path):
    x1, x2, y, w = mr_inputs(path)
    kw = {"margin": 0.5, "sample_weight": w, "hessian": "clip"}
    (g1, g2), (h1, h2) = fl.margin_ranking.grad_hess(x1, x2, y, **kw)
    bufs = [np.full(s, 7.0) for s in (x1.shape, x2.shape, x1.shape, x2.shape)]
    (a1, a2), (b1, b2) = fl.margin_ranking.grad_hess(x1, x2, y, grad_out=tuple(bufs[:2]),
                                                     hess_out=tuple(bufs[2:]), **kw)
    assert all(a is b for a, b in zip((a1, a2, b1, b2), bufs))
    assert all(same(a, b) for a, b in zip((a1, a2, b1, b2), (g1, g2, h1, h2)))
    assert h1 is not h2


# --------------------------------------------------------------------------
# Row losses: multiclass_hinge, crcnn_ranking
# --------------------------------------------------------------------------


def row_case_data(rng, n, k, dtype, gap=1e-3):
    """Scores on a grid of step 0.0075 (offset 0.003): differences of scores are multiples of
    0.0075, at least 0.0025 away from the margins used (0.5, 1), so that no z = margin +
    difference lands within rounding of a kink in either dtype."""
    s = rng.normal(0, 1.5, (n, k))
    s = np.round(s / 0.0075) * 0.0075 + 0.003  # a grid that keeps differences off the margins
    return s.astype(dtype), rng.integers(0, k, n)


MCH_PARAMS = [
    {},
    {"margin": 0.5},
    {"kind": "weston_watkins"},
    {"kind": "weston_watkins", "p": 2, "margin": 0.5},
]


def mch_reference(s, y, params, class_w=None):
    p = dict(params)
    v, g, h = ref.multiclass_hinge(s, y, kind=p.get("kind", "crammer_singer"),
                                   margin=p.get("margin", 1.0), p=p.get("p", 1))
    c = np.ones(len(y)) if class_w is None else np.asarray(class_w, float)[y]
    return v, g, h, c


@pytest.mark.parametrize("params", MCH_PARAMS, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()) or "default")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighting", ("none", "sample", "class", "both"))
@pytest.mark.parametrize("shape", ((0, 5), (1, 1), (3, 2), (17, 7), (33, 17), (700, 100)),
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_multiclass_hinge_matrix(params, dtype, reduction, weighting, shape, isa, rng):
    n, k = shape
    s, y = row_case_data(rng, n, k, dtype)
    sw = rng.uniform(0.5, 2, n) if weighting in ("sample", "both") else None
    cw = rng.uniform(0.5, 2, k) if weighting in ("class", "both") else None
    kw = dict(params, class_weight=cw)
    v, g, h, c = mch_reference(rounded(s, dtype), y, params, None if cw is None else rounded(cw, dtype))
    w = c * (1.0 if sw is None else rounded(sw, dtype))
    first = None
    for nt in THREADS:
        with fl.threads(nt):
            res = check(fl.multiclass_hinge, (s, y), kw, v, g, h, w, sw, reduction, dtype,
                        hessian="clip" if weighting == "both" else "exact")
        if first is None:
            first = res
        else:
            assert all(same(a, b) for a, b in zip(first, res))


def test_multiclass_hinge_hand_values():
    s = np.array([[1.0, 2.0, 0.5], [3.0, 0.0, 0.0]])
    y = np.array([0, 0])
    # Crammer-Singer: row 0: 1 + 2 - 1 = 2; row 1: 1 + 0 - 3 < 0.
    v, g = fl.multiclass_hinge.value_and_grad(s, y)
    assert v.tolist() == [2.0, 0.0]
    assert g.tolist() == [[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    # Weston-Watkins (PyTorch): row 0: (max(0, 1 - 1 + 2) + max(0, 1 - 1 + 0.5)) / 3.
    v, g = fl.multiclass_hinge.value_and_grad(s, y, kind="weston_watkins")
    assert v.tolist() == pytest.approx([2.5 / 3, 0.0])
    assert g[0].tolist() == pytest.approx([-2 / 3, 1 / 3, 1 / 3])
    # Ties: the first largest wrong score takes the gradient.
    _, g = fl.multiclass_hinge.value_and_grad(np.array([[0.0, 1.0, 1.0]]), np.array([0]))
    assert g.tolist() == [[-1.0, 1.0, 0.0]]


@pytest.mark.parametrize("params", MCH_PARAMS[:3] + [{"kind": "weston_watkins", "p": 2}],
                         ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()) or "default")
def test_multiclass_hinge_finite_differences(params, rng):
    s, y = row_case_data(rng, 40, 6, np.float64)
    kw = dict(params, reduction="mean", sample_weight=rng.uniform(0.5, 2, 40))
    g, h = fl.multiclass_hinge.grad_hess(s, y, **kw)
    for i in range(0, 40, 3):
        for j in range(6):
            def f(t, i=i, j=j):
                a = s.copy()
                a[i, j] = t
                return fl.multiclass_hinge(a, y, **kw)

            def gf(t, i=i, j=j):
                a = s.copy()
                a[i, j] = t
                return fl.multiclass_hinge.grad(a, y, **kw)[i, j]

            assert g[i, j] == pytest.approx(central_difference(f, s[i, j], 1e-5), abs=1e-9)
            assert h[i, j] == pytest.approx(central_difference(gf, s[i, j], 1e-5), abs=1e-9)


def test_multiclass_hinge_ignore_index_and_nan(rng):
    s, y = row_case_data(rng, 10, 4, np.float64)
    y[3] = -100
    v, g = fl.multiclass_hinge.value_and_grad(s, y)
    assert v[3] == 0 and np.all(g[3] == 0)
    m = fl.multiclass_hinge(s, y, reduction="mean")
    keep = y != -100
    assert m == pytest.approx(fl.multiclass_hinge(s[keep], y[keep], reduction="mean"), rel=1e-14)
    s[5, 2] = np.nan
    y[3] = 1
    v, g = fl.multiclass_hinge.value_and_grad(s, y, kind="weston_watkins")
    assert np.isnan(v[5]) and np.all(np.isnan(g[5])) and not np.isnan(v[4])
    v, g = fl.multiclass_hinge.value_and_grad(s, y, nan_policy="omit", reduction="mean")
    assert v == pytest.approx(np.mean(np.delete(fl.multiclass_hinge(s, y), 5)), rel=1e-14)
    assert np.all(g[5] == 0)
    with pytest.raises(ValueError, match=r"scores contains NaN \(first at index \(5, 2\)\)"):
        fl.multiclass_hinge(s, y, nan_policy="raise")


def test_multiclass_hinge_bad_input():
    s = np.zeros((3, 4))
    y = np.array([0, 1, 2])
    with pytest.raises(TypeError, match="target of multiclass_hinge must hold integer class"):
        fl.multiclass_hinge(s, y.astype(float))
    with pytest.raises(ValueError, match="target holds class index 4"):
        fl.multiclass_hinge(s, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="kind must be one of"):
        fl.multiclass_hinge(s, y, kind="ovr")
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        fl.multiclass_hinge(s, y, kind="weston_watkins", p=3)
    with pytest.raises(ValueError, match="p=2"):
        fl.multiclass_hinge(s, y, p=2)
    with pytest.raises(ValueError, match="hessian"):
        fl.multiclass_hinge.grad_hess(s, y, hessian="xgboost")
    with pytest.raises(ValueError, match="class_weight"):
        fl.multiclass_hinge(s, y, class_weight=[1.0, 2.0])
    with pytest.raises(TypeError, match="unexpected keyword argument 'gamma'"):
        fl.multiclass_hinge(s, y, gamma=2.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ("crammer_singer", "weston_watkins"))
def test_multiclass_hinge_extremes_finite(dtype, kind, isa):
    s = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=dtype)
    y = np.array([1, 0])
    v, g = fl.multiclass_hinge.value_and_grad(s, y, kind=kind, p=2 if kind != "crammer_singer" else 1)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))


CRCNN_PARAMS = [{}, {"other_class": 0}, {"other_class": 3, "gamma": 1.5, "m_pos": 2.0,
                                          "m_neg": 0.25}]


@pytest.mark.parametrize("params", CRCNN_PARAMS, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()) or "default")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighting", ("none", "both"))
@pytest.mark.parametrize("shape", ((0, 5), (5, 4), (33, 17), (500, 19)),
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_crcnn_matrix(params, dtype, reduction, weighting, shape, isa, rng):
    n, k = shape
    s, y = row_case_data(rng, n, k, dtype)
    sw = rng.uniform(0.5, 2, n) if weighting == "both" else None
    cw = rng.uniform(0.5, 2, k) if weighting == "both" else None
    v, g, h = ref.crcnn_ranking(rounded(s, dtype), y, **params)
    c = np.ones(n) if cw is None else rounded(cw, dtype)[y]
    w = c * (1.0 if sw is None else rounded(sw, dtype))
    first = None
    for nt in THREADS:
        with fl.threads(nt):
            res = check(fl.crcnn_ranking, (s, y), dict(params, class_weight=cw), v, g, h, w, sw,
                        reduction, dtype)
        if first is None:
            first = res
        else:
            assert all(same(a, b) for a, b in zip(first, res))


def test_crcnn_hand_values_and_predict():
    s = np.array([[3.0, 1.0, -1.0], [0.5, 2.0, 1.0]])
    y = np.array([0, 2])
    v = fl.crcnn_ranking(s, y)
    sp = lambda a: np.log1p(np.exp(a))
    assert v.tolist() == pytest.approx([sp(2 * (2.5 - 3)) + sp(2 * (0.5 + 1)),
                                        sp(2 * (2.5 - 1)) + sp(2 * (0.5 + 2))])
    v = fl.crcnn_ranking(s, np.array([1, 0]), other_class=0)
    # Row 0 (class 1): the Other column (0) does not compete, so c = 2.
    assert v[0] == pytest.approx(sp(2 * (2.5 - 1)) + sp(2 * (0.5 - 1)))
    # Row 1 is Other: only the negative term, over the non-Other classes (c = 1).
    assert v[1] == pytest.approx(sp(2 * (0.5 + 2)))
    p = np.array([[-1.0, -2.0, 5.0], [0.1, -3.0, -0.5], [4.0, -1.0, -0.1]])
    assert fl.crcnn_predict(p).tolist() == [2, 0, 0]
    assert fl.crcnn_predict(p, other_class=2).tolist() == [2, 0, 0]
    assert fl.crcnn_predict(p, other_class=0).tolist() == [2, 0, 0]
    assert fl.crcnn_predict(np.array([[-1.0, -2.0, -0.5]]), other_class=0).tolist() == [0]
    assert fl.crcnn_predict(np.array([[-1.0, -2.0, 0.5]]), other_class=1).tolist() == [2]


def test_crcnn_predict_matches_reference(rng):
    s = rng.normal(-0.5, 1, (300, 6))
    for other in (None, 0, 2, 5):
        assert fl.crcnn_predict(s, other).tolist() == ref.crcnn_predict(s, other).tolist()
    with pytest.raises(ValueError, match="other_class"):
        fl.crcnn_predict(s, 6)
    with pytest.raises(TypeError, match="other_class"):
        fl.crcnn_predict(s, 1.0)


@pytest.mark.parametrize("params", CRCNN_PARAMS, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()) or "default")
def test_crcnn_finite_differences(params, rng):
    s, y = row_case_data(rng, 30, 5, np.float64)
    kw = dict(params, reduction="sum", sample_weight=rng.uniform(0.5, 2, 30))
    g, h = fl.crcnn_ranking.grad_hess(s, y, **kw)
    for i in range(0, 30, 4):
        for j in range(5):
            def f(t, i=i, j=j):
                a = s.copy()
                a[i, j] = t
                return fl.crcnn_ranking(a, y, **kw)

            def gf(t, i=i, j=j):
                a = s.copy()
                a[i, j] = t
                return fl.crcnn_ranking.grad(a, y, **kw)[i, j]

            assert g[i, j] == pytest.approx(central_difference(f, s[i, j], 1e-4), rel=1e-7, abs=1e-8)
            assert h[i, j] == pytest.approx(central_difference(gf, s[i, j], 1e-4), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_crcnn_extremes_and_bad_input(dtype, isa):
    s = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=dtype)
    v, g = fl.crcnn_ranking.value_and_grad(s, np.array([1, 0]))
    _, h = fl.crcnn_ranking.grad_hess(s, np.array([1, 0]))
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    with pytest.raises(ValueError, match="gamma"):
        fl.crcnn_ranking(s, np.array([1, 0]), gamma=0.0)
    with pytest.raises(ValueError, match="other_class"):
        fl.crcnn_ranking(s, np.array([1, 0]), other_class=3)
    with pytest.raises(TypeError, match="integer class indices"):
        fl.crcnn_ranking(s, np.array([1.0, 0.0]))


# --------------------------------------------------------------------------
# multilabel_softmax_cross_entropy
# --------------------------------------------------------------------------


def multilabel_data(rng, n, k, dtype, soft=False):
    s = rng.normal(0, 3, (n, k)).astype(dtype)
    t = (rng.uniform(size=(n, k)) < 0.2).astype(dtype)
    if soft:
        t = rng.uniform(size=(n, k)).astype(dtype)
        t[:, ::3] = np.round(t[:, ::3])
    return s, t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant", ("hard", "soft", "mask_rows", "mask_classes", "weights"))
@pytest.mark.parametrize("shape", ((0, 3), (1, 1), (4, 7), (33, 17), (300, 64)),
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_multilabel_matrix(dtype, reduction, variant, shape, isa, rng):
    n, k = shape
    s, t = multilabel_data(rng, n, k, dtype, soft=variant == "soft")
    mask = None
    if variant == "mask_rows":
        mask = rng.uniform(size=(n, k)) < 0.8
    elif variant == "mask_classes":
        mask = rng.uniform(size=k) < 0.7
    sw = rng.uniform(0.5, 2, n) if variant == "weights" else None
    v, g, h = ref.multilabel_softmax_cross_entropy(rounded(s, dtype), rounded(t, dtype), mask)
    w = None if sw is None else rounded(sw, dtype)
    first = None
    for nt in THREADS:
        with fl.threads(nt):
            res = check(fl.multilabel_softmax_cross_entropy, (s, t), {"mask": mask}, v, g, h, w,
                        sw, reduction, dtype, hessian="clip" if variant in ("weights", "mask_rows") else "exact",
                        clip_where=None if mask is None else np.broadcast_to(mask, (n, k)))
        if first is None:
            first = res
        else:
            assert all(same(a, b) for a, b in zip(first, res))


def test_multilabel_hand_values_and_integer_targets():
    s = np.array([[2.0, -1.0, 0.5]])
    t = np.array([[1, 0, 0]])
    want = np.log1p(np.exp(-1.0) + np.exp(0.5)) + np.log1p(np.exp(-2.0))
    assert fl.multilabel_softmax_cross_entropy(s, t)[0] == pytest.approx(want, rel=1e-14)
    assert fl.multilabel_softmax_cross_entropy(s, t.astype(bool))[0] == pytest.approx(want)
    # A masked class is as if absent from the row.
    m = np.array([True, False, True])
    want = np.log1p(np.exp(0.5)) + np.log1p(np.exp(-2.0))
    v, g = fl.multilabel_softmax_cross_entropy.value_and_grad(s, t, mask=m)
    assert v[0] == pytest.approx(want, rel=1e-14) and g[0, 1] == 0.0


def test_multilabel_finite_differences(rng):
    s, t = multilabel_data(rng, 12, 9, np.float64, soft=True)
    kw = {"reduction": "mean", "sample_weight": rng.uniform(0.5, 2, 12)}
    g, h = fl.multilabel_softmax_cross_entropy.grad_hess(s, t, **kw)
    for i in range(12):
        for j in range(9):
            def f(x, i=i, j=j):
                a = s.copy()
                a[i, j] = x
                return fl.multilabel_softmax_cross_entropy(a, t, **kw)

            def gf(x, i=i, j=j):
                a = s.copy()
                a[i, j] = x
                return fl.multilabel_softmax_cross_entropy.grad(a, t, **kw)[i, j]

            assert g[i, j] == pytest.approx(central_difference(f, s[i, j], 1e-4), rel=1e-7, abs=1e-10)
            assert h[i, j] == pytest.approx(central_difference(gf, s[i, j], 1e-4), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multilabel_extremes_and_bad_input(dtype, isa):
    s = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, 1e4, 1e4, -1e4]], dtype=dtype)
    t = np.array([[0, 1, 1, 1], [1, 0, 0, 1]], dtype=dtype)
    v, g = fl.multilabel_softmax_cross_entropy.value_and_grad(s, t)
    _, h = fl.multilabel_softmax_cross_entropy.grad_hess(s, t)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    assert v[0] == pytest.approx(2e4, rel=1e-6)
    with pytest.raises(ValueError, match="probabilities in"):
        fl.multilabel_softmax_cross_entropy(s, t + 1)
    with pytest.raises(ValueError, match="probabilities in"):
        fl.multilabel_softmax_cross_entropy(s, t - 2, mask=np.ones(4, bool))
    with pytest.raises(ValueError, match="target must have the shape of scores"):
        fl.multilabel_softmax_cross_entropy(s, t[0])
    with pytest.raises(TypeError, match="mask must be a boolean"):
        fl.multilabel_softmax_cross_entropy(s, t, mask=np.ones(4))
    with pytest.raises(ValueError, match="mask"):
        fl.multilabel_softmax_cross_entropy(s, t, mask=np.ones(3, bool))


@pytest.mark.parametrize("tdtype", (np.float64, np.float32, np.int8, np.int64))
@pytest.mark.parametrize("masked", (False, True), ids=("no_mask", "mask"))
@pytest.mark.parametrize("nan_policy", ("propagate", "raise", "omit"))
def test_multilabel_target_minus_one_is_refused(tdtype, masked, nan_policy):
    # -1 is the kernels' internal mark of an absent class, not a label: it is refused as any
    # other value outside [0, 1], with or without mask=, before any output is written.
    s = np.array([[0.5, 1.0, -2.0], [0.1, 0.2, 0.3]])
    t = np.array([[1, 0, 0], [0, -1, 1]], dtype=tdtype)
    keep = t.copy()
    kw = {"nan_policy": nan_policy}
    if masked:
        kw["mask"] = np.array([True, True, True])
    g, h = np.full(s.shape, 7.0), np.full(s.shape, 7.0)
    msg = r"target must hold probabilities in \[0, 1\]; got -1\.0 at index \(1, 1\)"
    with pytest.raises(ValueError, match=msg):
        fl.multilabel_softmax_cross_entropy(s, t, **kw)
    with pytest.raises(ValueError, match=msg):
        fl.multilabel_softmax_cross_entropy.grad_hess(s, t, grad_out=g, hess_out=h, **kw)
    np.testing.assert_array_equal(t, keep)
    assert np.all(g == 7.0) and np.all(h == 7.0)


def test_multilabel_nan_targets_follow_nan_policy():
    s = np.array([[0.5, 1.0, -2.0], [0.1, 0.2, 0.3]])
    t = np.array([[1.0, np.nan, 0.0], [0.0, 1.0, 1.0]])
    clean = fl.multilabel_softmax_cross_entropy(s[1:], t[1:])
    for mask in (None, np.array([True, True, True])):
        v = fl.multilabel_softmax_cross_entropy(s, t, mask=mask)
        assert np.isnan(v[0]) and v[1] == clean[0]
        m = fl.multilabel_softmax_cross_entropy(s, t, mask=mask, nan_policy="omit",
                                                reduction="mean")
        assert m == clean[0]
        with pytest.raises(ValueError, match=r"target contains NaN"):
            fl.multilabel_softmax_cross_entropy(s, t, mask=mask, nan_policy="raise")
    # A NaN elsewhere hides no -1 (the range check skips NaN, it does not stop at it).
    bad = t.copy()
    bad[1, 2] = -1.0
    for policy in ("propagate", "omit"):
        with pytest.raises(ValueError, match=r"target must hold .* at index \(1, 2\)"):
            fl.multilabel_softmax_cross_entropy(s, bad, nan_policy=policy)


def test_row_losses_nan_omit_mean():
    s = np.array([[1.0, 2.0, 0.5], [np.nan, 0.0, 1.0], [0.2, 0.1, 0.0]])
    y = np.array([0, 1, 2])
    t = np.eye(3)[y]
    for loss, tgt in ((fl.crcnn_ranking, y), (fl.multilabel_softmax_cross_entropy, t)):
        v = loss(s, tgt)
        assert np.isnan(v[1]) and not np.isnan(v[0])
        m = loss(s, tgt, nan_policy="omit", reduction="mean")
        assert m == pytest.approx((v[0] + v[2]) / 2, rel=1e-14)


def test_losses_registered():
    for name in ("hinge", "squared_hinge", "margin_ranking", "multiclass_hinge",
                 "crcnn_ranking", "multilabel_softmax_cross_entropy", "pairwise_logistic",
                 "pairwise_hinge"):
        assert fl.losses[name] is getattr(fl, name)
    assert fl.margin_ranking.arg_names == ("x1", "x2", "y")
    assert fl.pairwise_logistic.kind == "pairwise"


def test_margin_ranking_broadcast_gradient_summed_wide():
    """A float32 x2 broadcast against a float64 x1: its gradient is summed in float64, then
    cast (a float32 running sum of 10^6 terms would be off by about 1%)."""
    x1 = np.zeros((10**6, 4))
    x2 = np.ones((1, 4), dtype=np.float32)
    y = np.ones((10**6, 4))
    _, g2 = fl.margin_ranking.grad(x1, x2, y, margin=0.0, sample_weight=0.1)
    assert g2.dtype == np.float32
    np.testing.assert_allclose(g2, 1e5, rtol=1e-6)
