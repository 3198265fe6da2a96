"""The class-imbalance losses against the independent float64 reference (reference_focal.py):
every ISA path x dtype x reduction x weighting x hessian policy, tail and block lengths,
thread counts, and for softmax_focal every target form with alpha, class weights, label
smoothing and ignore_index at once."""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
import reference_focal as ref

REDUCTIONS = ["none", "sum", "mean"]
TOL = {np.float32: dict(rtol=5e-5, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-13)}

ELEMENTWISE = {
    "focal_default": ("sigmoid_focal", {}),
    "focal_g0.5_noalpha": ("sigmoid_focal", {"gamma": 0.5, "alpha": None}),
    "focal_g3.7_a0.6": ("sigmoid_focal", {"gamma": 3.7, "alpha": 0.6}),
    "focal_probs": ("sigmoid_focal", {"gamma": 2.0, "alpha": 0.25, "from_logits": False}),
    "power_n2": ("sigmoid_power_cross_entropy", {}),
    "power_n0.5": ("sigmoid_power_cross_entropy", {"n": 0.5}),
    "power_n3.7": ("sigmoid_power_cross_entropy", {"n": 3.7}),
}


def elem_data(rng, n, dtype, probs):
    z = rng.uniform(-8, 8, n)
    if probs:
        z = rng.uniform(0.02, 0.98, n)
    t = np.where(rng.uniform(size=n) < 0.5, (rng.uniform(size=n) < 0.3).astype(float),
                 rng.uniform(size=n))
    return z.astype(dtype), t.astype(dtype)


def check(got, want, dtype, scale=1.0):
    tol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=tol["rtol"],
                               atol=tol["atol"] * scale)


@pytest.mark.parametrize("case", list(ELEMENTWISE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unw", "w"])
@pytest.mark.parametrize("n", [0, 1, 7, 17, 33, 1000])
def test_elementwise_matrix(isa, case, dtype, reduction, weighted, n, rng):
    name, params = ELEMENTWISE[case]
    loss = fl.losses[name]
    reffn = getattr(ref, name)
    z, t = elem_data(rng, n, dtype, params.get("from_logits") is False)
    w = rng.uniform(0.2, 3.0, n).astype(dtype) if weighted else None
    kw = dict(params)
    if name == "sigmoid_focal" and kw.get("from_logits") is False:
        kw_ref = dict(kw, clip=float(np.finfo(dtype).eps))
    else:
        kw_ref = dict(kw)
    zr, tr = z.astype(np.float64), t.astype(np.float64)
    wr = None if w is None else w.astype(np.float64)
    for hessian in ("exact", "clip", "abs", "fisher"):
        want_v, want_g, want_h = reffn(zr, tr, reduction=reduction, sample_weight=wr,
                                       hessian=hessian, hess_floor=1e-3, **kw_ref)
        g, h = loss.grad_hess(z, t, reduction=reduction, sample_weight=w, hessian=hessian,
                              hess_floor=1e-3, **kw)
        assert g.dtype == dtype and h.dtype == dtype and g.shape == z.shape
        gs = np.max(np.abs(want_g), initial=1.0)
        check(g, want_g, dtype, gs)
        check(h, want_h, dtype, np.max(np.abs(want_h), initial=1.0))
    v, g = loss.value_and_grad(z, t, reduction=reduction, sample_weight=w, **kw)
    want_v, want_g, _ = reffn(zr, tr, reduction=reduction, sample_weight=wr, **kw_ref)
    if reduction == "none":
        assert v.dtype == dtype
        check(v, want_v, dtype)
    elif n == 0 and reduction == "mean":
        assert np.isnan(v)
    else:
        assert isinstance(v, np.float64)
        tol = TOL[dtype]
        assert v == pytest.approx(want_v, rel=tol["rtol"] * 4, abs=tol["atol"] * 4)


@pytest.mark.parametrize("case", ["focal_default", "power_n3.7"])
def test_elementwise_threads_bitwise(nthreads, case, rng):
    name, params = ELEMENTWISE[case]
    loss = fl.losses[name]
    z, t = elem_data(rng, 300_001, np.float32, False)
    with fl.threads(1):
        v1 = loss(z, t, reduction="mean", **params)
        g1 = loss.grad(z, t, **params)
    assert loss(z, t, reduction="mean", **params) == v1
    np.testing.assert_array_equal(loss.grad(z, t, **params), g1)


def test_elementwise_broadcast_and_strides(rng):
    z = rng.uniform(-5, 5, (64, 3))
    t = (rng.uniform(size=3) < 0.5).astype(float)  # broadcast over rows
    v = fl.sigmoid_focal(z[::2], t, gamma=1.5)
    want = ref.sigmoid_focal(z[::2], np.broadcast_to(t, z[::2].shape), gamma=1.5)[0]
    np.testing.assert_allclose(v, want, rtol=1e-12)
    v = fl.sigmoid_power_cross_entropy(z.T, 1.0, n=2.5)
    np.testing.assert_allclose(v, ref.sigmoid_power_cross_entropy(z.T, np.ones_like(z.T),
                                                                  n=2.5)[0], rtol=1e-12)


ROW_OPTIONS = {
    "plain": {},
    "gamma0.5_alpha": {"gamma": 0.5, "alpha": "array"},
    "alpha_scalar": {"gamma": 1.0, "alpha": 0.25},
    "cw": {"class_weight": "array"},
    "smooth": {"label_smoothing": 0.15},
    "all": {"gamma": 3.7, "alpha": "array", "class_weight": "array", "label_smoothing": 0.1,
            "ignore_index": 1},
}


def row_params(opts, k, rng):
    out = dict(opts)
    for key in ("alpha", "class_weight"):
        if out.get(key) == "array":
            out[key] = rng.uniform(0.1, 2.0, k)
    return out


def check_softmax_focal(x, tgt, w, dtype, reduction, hessians, params, from_logits=True,
                        ref_clip=None):
    """softmax_focal's value_and_grad and grad_hess (under each Hessian policy) against the
    reference in float64, on the same inputs."""
    xr = x.astype(np.float64)
    tr = tgt if tgt.dtype.kind in "biu" else tgt.astype(np.float64)
    kw = dict(params) if from_logits else dict(params, from_logits=False)
    ref_kw = kw if ref_clip is None else dict(kw, clip=ref_clip)
    for hessian in hessians:
        want_v, want_g, want_h = ref.softmax_focal(xr, tr, reduction=reduction,
                                                   sample_weight=w.astype(np.float64),
                                                   hessian=hessian, hess_floor=1e-4, **ref_kw)
        v, g = fl.softmax_focal.value_and_grad(x, tgt, reduction=reduction, sample_weight=w,
                                               **kw)
        g2, h = fl.softmax_focal.grad_hess(x, tgt, reduction=reduction, sample_weight=w,
                                           hessian=hessian, hess_floor=1e-4, **kw)
        assert g.dtype == dtype and h.dtype == dtype
        check(g, want_g, dtype, np.max(np.abs(want_g), initial=1.0))
        check(g2, want_g, dtype, np.max(np.abs(want_g), initial=1.0))
        check(h, want_h, dtype, np.max(np.abs(want_h), initial=1.0))
        if reduction == "none":
            check(v, want_v, dtype, np.max(np.abs(want_v), initial=1.0))
        else:
            assert float(v) == pytest.approx(float(want_v), rel=TOL[dtype]["rtol"] * 4,
                                             abs=TOL[dtype]["atol"] * 4)


@pytest.mark.parametrize("opts", list(ROW_OPTIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_form", ["index", "prob"])
@pytest.mark.parametrize("k", [1, 3, 17, 300])
def test_softmax_focal_matrix(isa, opts, dtype, reduction, target_form, k, rng):
    n = 9 if k < 300 else 3
    x = (rng.standard_normal((n, k)) * 3).astype(dtype)
    params = row_params(ROW_OPTIONS[opts], k, rng)
    ig = params.get("ignore_index", -100)
    if target_form == "index":
        tgt = rng.integers(0, k, n)
        if 0 <= ig < k:
            tgt[0] = ig
    else:
        tgt = rng.dirichlet(np.ones(k), n).astype(dtype)
    w = rng.uniform(0.5, 2.0, n).astype(dtype)
    # The reference's fisher sums K full Hessians (O(K^2) per row): small K only.
    check_softmax_focal(x, tgt, w, dtype, reduction,
                        ("exact", "clip", "fisher") if k <= 17 else ("exact",), params)


@pytest.mark.parametrize("opts", list(ROW_OPTIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_form", ["index", "prob"])
@pytest.mark.parametrize("k", [1, 3, 17, 300])
def test_softmax_focal_probabilities_matrix(isa, opts, dtype, reduction, target_form, k, rng):
    """from_logits=False: probabilities in (rows not summing to 1, values at 0 and 1 included,
    which the clip moves inside), against the reference's own formulas."""
    n = 9 if k < 300 else 3
    p = rng.dirichlet(np.ones(k), n) * rng.uniform(0.7, 1.3, (n, 1))
    p = np.clip(p, 0.0, 1.0)
    p[0, 0] = 1.0
    if k > 1:
        p[1, 1] = 0.0
    p = p.astype(dtype)
    params = row_params(ROW_OPTIONS[opts], k, rng)
    ig = params.get("ignore_index", -100)
    if target_form == "index":
        tgt = rng.integers(0, k, n)
        if 0 <= ig < k:
            tgt[2] = ig
    else:
        tgt = rng.dirichlet(np.ones(k), n).astype(dtype)
    w = rng.uniform(0.5, 2.0, n).astype(dtype)
    check_softmax_focal(p, tgt, w, dtype, reduction, ("exact", "clip", "abs", "fisher"),
                        params, from_logits=False, ref_clip=float(np.finfo(dtype).eps))


def test_softmax_focal_threads_bitwise(nthreads, rng):
    x = rng.standard_normal((20_000, 10)).astype(np.float32)
    y = rng.integers(0, 10, 20_000)
    with fl.threads(1):
        v1 = fl.softmax_focal(x, y, gamma=2.0, label_smoothing=0.1, reduction="mean")
    assert fl.softmax_focal(x, y, gamma=2.0, label_smoothing=0.1, reduction="mean") == v1
