"""sigmoid_focal, sigmoid_power_cross_entropy and softmax_focal: derivatives by finite
differences of the kernels' own outputs, the identities the issue lists, policies, extreme
logits, and the external oracles (torchvision's formula in torch ops, optax) where installed.

The comparisons with the independent reference (tests/reference_focal.py) across dtypes,
reductions and weights are in test_focal_reference.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastloss as fl
import reference_focal

RNG = np.random.default_rng(20261129)
GAMMAS = [0.0, 0.5, 1.0, 2.0, 3.7, 5.0]


def fd_grad(fn, z, h=1e-6):
    """Central differences of an elementwise function (per element)."""
    return (fn(z + h) - fn(z - h)) / (2 * h)


def binary_data(n=64, soft=False):
    z = RNG.uniform(-6, 6, n)
    t = RNG.uniform(0, 1, n) if soft else (RNG.uniform(size=n) < 0.4).astype(float)
    return z, t


# -- sigmoid_focal ------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25, 0.7])
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_focal_derivatives_fd(gamma, alpha, soft):
    z, t = binary_data(soft=soft)
    kw = dict(gamma=gamma, alpha=alpha)
    g, h = fl.sigmoid_focal.grad_hess(z, t, **kw)
    np.testing.assert_allclose(g, fd_grad(lambda v: fl.sigmoid_focal(v, t, **kw), z),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h, fd_grad(lambda v: fl.sigmoid_focal.grad(v, t, **kw), z),
                               rtol=1e-6, atol=1e-8)
    v2, g2 = fl.sigmoid_focal.value_and_grad(z, t, **kw)
    # Other kernel modes: the same up to the compiler's contraction of a * b + c.
    np.testing.assert_allclose(g2, g, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(v2, fl.sigmoid_focal(z, t, **kw), rtol=1e-14)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.7])
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_focal_probabilities_fd(gamma, soft):
    _, t = binary_data(soft=soft)
    p = RNG.uniform(0.05, 0.95, t.size)
    kw = dict(gamma=gamma, alpha=0.25, from_logits=False)
    g, h = fl.sigmoid_focal.grad_hess(p, t, **kw)
    np.testing.assert_allclose(g, fd_grad(lambda v: fl.sigmoid_focal(v, t, **kw), p),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h, fd_grad(lambda v: fl.sigmoid_focal.grad(v, t, **kw), p),
                               rtol=1e-6, atol=1e-7)
    # The same loss as from logits at the matching point.
    z = np.log(p) - np.log1p(-p)
    np.testing.assert_allclose(fl.sigmoid_focal(p, t, **kw),
                               fl.sigmoid_focal(z, t, gamma=gamma, alpha=0.25), rtol=1e-12)


def test_sigmoid_focal_identities():
    for soft in (False, True):
        z, t = binary_data(soft=soft)
        # gamma = 0, no alpha: the cross-entropy.
        for a, b in zip(fl.sigmoid_focal.grad_hess(z, t, gamma=0.0, alpha=None),
                        fl.sigmoid_cross_entropy.grad_hess(z, t)):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(fl.sigmoid_focal(z, t, gamma=0.0, alpha=None),
                                   fl.sigmoid_cross_entropy(z, t), rtol=1e-13)
        # alpha = the class weights [1 - alpha, alpha] of the cross-entropy (per sample:
        # class weights also enter the mean's denominator, alpha does not).
        a = 0.3
        np.testing.assert_allclose(fl.sigmoid_focal(z, t, gamma=0.0, alpha=a),
                                   fl.sigmoid_cross_entropy(z, t, class_weight=[1 - a, a]),
                                   rtol=1e-13)
        np.testing.assert_allclose(fl.sigmoid_focal.grad(z, t, gamma=0.0, alpha=a),
                                   fl.sigmoid_cross_entropy.grad(z, t, class_weight=[1 - a, a]),
                                   rtol=1e-13, atol=1e-16)
        # alpha = -1 is None.
        np.testing.assert_array_equal(fl.sigmoid_focal(z, t, alpha=-1),
                                      fl.sigmoid_focal(z, t, alpha=None))
    # The focal factor: (1 - p_t)^gamma times the cross-entropy, hard targets.
    z, t = binary_data()
    p = 1 / (1 + np.exp(-z))
    pt = np.where(t == 1, p, 1 - p)
    np.testing.assert_allclose(fl.sigmoid_focal(z, t, gamma=2.0, alpha=None),
                               (1 - pt) ** 2 * fl.sigmoid_cross_entropy(z, t), rtol=1e-12)
    # Mean: alpha is part of the loss, so the mean divides by N.
    assert fl.sigmoid_focal(z, t, reduction="mean") == pytest.approx(
        fl.sigmoid_focal(z, t).sum() / z.size, rel=1e-14)


def test_sigmoid_focal_fisher_is_expected_hessian():
    z, _ = binary_data()
    p = 1 / (1 + np.exp(-z))
    for gamma in (0.5, 2.0, 3.7):
        kw = dict(gamma=gamma, alpha=0.25)
        h1 = fl.sigmoid_focal.grad_hess(z, np.ones_like(z), **kw)[1]
        h0 = fl.sigmoid_focal.grad_hess(z, np.zeros_like(z), **kw)[1]
        hf = fl.sigmoid_focal.grad_hess(z, np.ones_like(z), hessian="fisher", **kw)[1]
        np.testing.assert_allclose(hf, p * h1 + (1 - p) * h0, rtol=1e-12, atol=1e-15)


def test_focal_exact_hessian_can_be_negative_and_policies():
    z = np.linspace(-8, 8, 401)
    t = np.ones_like(z)
    h = fl.sigmoid_focal.grad_hess(z, t, gamma=2.0, alpha=None)[1]
    assert h.min() < 0  # the documented negative region (z < about -1.6 for t = 1)
    hc = fl.sigmoid_focal.grad_hess(z, t, gamma=2.0, alpha=None, hessian="clip",
                                    hess_floor=1e-3)[1]
    np.testing.assert_array_equal(hc, np.maximum(h, 1e-3))
    ha = fl.sigmoid_focal.grad_hess(z, t, gamma=2.0, alpha=None, hessian="abs")[1]
    np.testing.assert_array_equal(ha, np.abs(h))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_finite(dtype):
    z = np.array([-1e4, -1e3, -100, -30, -1, 0, 1, 30, 100, 1e3, 1e4], dtype=dtype)
    for t in (np.zeros_like(z), np.ones_like(z), np.full_like(z, 0.3)):
        for gamma in (0.0, 0.5, 2.0, 5.0):
            for hess in ("exact", "fisher"):
                v = fl.sigmoid_focal(z, t, gamma=gamma)
                g, h = fl.sigmoid_focal.grad_hess(z, t, gamma=gamma, hessian=hess)
                assert np.isfinite(v).all() and np.isfinite(g).all() and np.isfinite(h).all()
        for n in (0.5, 1.0, 4.0):
            v = fl.sigmoid_power_cross_entropy(z, t, n=n)
            for hess in ("exact", "fisher"):
                g, h = fl.sigmoid_power_cross_entropy.grad_hess(z, t, n=n, hessian=hess)
                assert np.isfinite(v).all() and np.isfinite(g).all() and np.isfinite(h).all()
            assert v.dtype == dtype


@pytest.mark.parametrize("k", [2, 100, 3000])  # 3000: a row of two softmax chunks
@pytest.mark.parametrize("z", [20.0, 30.0, 40.0])
@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.7])
@pytest.mark.parametrize("onehot", [False, True])  # the short path and the general one
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_focal_confident_rows_keep_relative_accuracy(k, z, gamma, onehot, dtype):
    """Rows (z, 0, ..., 0), label 0, p_0 ~ 1: with s = (k - 1) e^-z, 1 - p_0 = s / (1 + s) and
    log p_0 = -log1p(s) in closed form, the focal loss -(1 - p)^gamma log p and its gradient
    (Lin et al.: d/dx_0 = -(1 - p) phi, d/dx_j = p_j phi with
    phi = (1 - p)^gamma - gamma p (1 - p)^(gamma - 1) log p) keep their relative accuracy:
    1 - p is not clamped inside the positive powers."""
    s = (k - 1) * np.exp(-z)
    om, lp, p0 = s / (1 + s), -np.log1p(s), 1 / (1 + s)
    pj = np.exp(-z) / (1 + s)
    phi = om ** gamma - gamma * p0 * om ** (gamma - 1) * lp
    x = np.zeros((1, k), dtype)
    x[0, 0] = z
    y = np.eye(k, dtype=dtype)[[0]] if onehot else np.array([0])
    kw = {"gamma": gamma}
    v = fl.softmax_focal(x, y, **kw)
    g = fl.softmax_focal.grad(x, y, **kw)
    rtol = 1e-5 if dtype == np.float32 else 1e-11
    tiny = np.finfo(dtype).tiny
    np.testing.assert_allclose(v[0], -(om ** gamma) * lp, rtol=rtol, atol=tiny)
    np.testing.assert_allclose(g[0, 0], -om * phi, rtol=rtol, atol=tiny)
    np.testing.assert_allclose(g[0, 1:], pj * phi, rtol=rtol, atol=tiny)


# -- sigmoid_power_cross_entropy ----------------------------------------------------------


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 3.0, 3.7, 8.0, 10.0])
@pytest.mark.parametrize("soft", [False, True])
def test_power_derivatives_fd(n, soft):
    z, t = binary_data(soft=soft)
    g, h = fl.sigmoid_power_cross_entropy.grad_hess(z, t, n=n)
    f = lambda v: fl.sigmoid_power_cross_entropy(v, t, n=n)  # noqa: E731
    np.testing.assert_allclose(g, fd_grad(f, z), rtol=1e-6, atol=1e-8)
    gf = lambda v: fl.sigmoid_power_cross_entropy.grad(v, t, n=n)  # noqa: E731
    np.testing.assert_allclose(h, fd_grad(gf, z), rtol=1e-6, atol=1e-8)


def test_power_value_formula_and_identities():
    z, t = binary_data(soft=True)
    p = 1 / (1 + np.exp(-z))
    for n in (0.5, 2.0, 3.7):
        pn = p ** n
        expect = -t * np.log(pn) - (1 - t) * np.log1p(-pn)
        np.testing.assert_allclose(fl.sigmoid_power_cross_entropy(z, t, n=n), expect, rtol=1e-10)
    # n = 1 is the cross-entropy, with its derivatives.
    for a, b in zip(fl.sigmoid_power_cross_entropy.grad_hess(z, t, n=1.0),
                    fl.sigmoid_cross_entropy.grad_hess(z, t)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fl.sigmoid_power_cross_entropy(z, t, n=1.0),
                               fl.sigmoid_cross_entropy(z, t), rtol=1e-12)


def test_power_tails_accurate():
    # Large positive logits, t = 0: -log(1 - p^n) ~ z - log(n); negative logits, t = 1: n
    # softplus(-z); small losses keep their relative accuracy.
    z = np.array([40.0, 200.0, 1e4])
    np.testing.assert_allclose(fl.sigmoid_power_cross_entropy(z, np.zeros(3), n=3.0),
                               z - np.log(3.0), rtol=1e-12)
    z = np.array([5.0, 12.0, 20.0])  # -log(-expm1(n log s)) in float64, Maechler's form
    np.testing.assert_allclose(fl.sigmoid_power_cross_entropy(z, np.zeros(3), n=3.0),
                               -np.log(-np.expm1(-3.0 * np.log1p(np.exp(-z)))), rtol=1e-12)
    z = np.array([-10.0, -30.0])
    v = fl.sigmoid_power_cross_entropy(z, np.zeros(2), n=2.0)
    np.testing.assert_allclose(v, -np.log1p(-np.exp(2 * (-np.log1p(np.exp(-z))))), rtol=1e-12)
    np.testing.assert_allclose(v, np.exp(2 * z), rtol=1e-3)  # ~ p^2, p ~ e^z


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_power_integer_n_closed_form_matches_general_n(dtype, n):
    # n = 2 (the default) runs closed forms (P = s^2, 1 - P = s'(1 + s)), integer n up to 8
    # their polynomial extension (1 - P = s'(1 + s + ... + s^(n-1))); n one ulp above runs
    # the general log1mexp path. Both must agree over the whole logit range, tails
    # included, for value, gradient and Hessian, and for soft targets.
    z = np.concatenate([np.linspace(-40, 40, 2001), [-1e4, -200.0, -88.0, 0.0, 88.0, 200.0, 1e4]])
    z = z.astype(dtype)
    n_above = float(np.nextafter(dtype(n), dtype(n + 1)))
    # (the gradient for soft targets is a difference of two O(1) terms near its zero: an
    # absolute tolerance at the dtype's resolution of those terms)
    rtol, atol = (1e-10, 1e-15) if dtype == np.float64 else (2e-5, 1e-6)
    for t in (np.zeros_like(z), np.ones_like(z), np.full_like(z, 0.3)):
        a = fl.sigmoid_power_cross_entropy.value_and_grad(z, t, n=float(n))
        b = fl.sigmoid_power_cross_entropy.value_and_grad(z, t, n=n_above)
        ha = fl.sigmoid_power_cross_entropy.grad_hess(z, t, n=float(n))[1]
        hb = fl.sigmoid_power_cross_entropy.grad_hess(z, t, n=n_above)[1]
        for x, y in ((a[0], b[0]), (a[1], b[1]), (ha, hb)):
            assert np.isfinite(x).all()
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_power_fisher():
    z, _ = binary_data()
    for n in (0.5, 2.0, 3.7):
        pn = (1 / (1 + np.exp(-z))) ** n
        h1 = fl.sigmoid_power_cross_entropy.grad_hess(z, np.ones_like(z), n=n)[1]
        h0 = fl.sigmoid_power_cross_entropy.grad_hess(z, np.zeros_like(z), n=n)[1]
        hf = fl.sigmoid_power_cross_entropy.grad_hess(z, z * 0, n=n, hessian="fisher")[1]
        np.testing.assert_allclose(hf, pn * h1 + (1 - pn) * h0, rtol=1e-10, atol=1e-15)
        assert (hf >= 0).all()


def test_power_float32_close_to_float64():
    z, t = binary_data(4096, soft=True)
    z = z * 5
    for n in (0.5, 2.0, 3.7):
        v64, g64 = fl.sigmoid_power_cross_entropy.value_and_grad(z, t, n=n)
        v32, g32 = fl.sigmoid_power_cross_entropy.value_and_grad(z.astype(np.float32),
                                                                  t.astype(np.float32), n=n)
        np.testing.assert_allclose(v32, v64, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(g32, g64, rtol=2e-5, atol=1e-6)


# -- softmax_focal ------------------------------------------------------------------------


def softmax_data(n=9, k=5, scale=3.0):
    x = RNG.standard_normal((n, k)) * scale
    y = RNG.integers(0, k, n)
    q = RNG.dirichlet(np.ones(k), n)
    return x, y, q


def fd_rows(fn, x, h=1e-6):
    """Finite differences of a per-row function w.r.t. each logit (all rows at once)."""
    out = np.empty_like(x)
    for j in range(x.shape[-1]):
        xp, xm = x.copy(), x.copy()
        xp[..., j] += h
        xm[..., j] -= h
        out[..., j] = (fn(xp) - fn(xm)) / (2 * h)
    return out


def fd_diag(gradfn, x, h=1e-6):
    out = np.empty_like(x)
    for j in range(x.shape[-1]):
        xp, xm = x.copy(), x.copy()
        xp[..., j] += h
        xm[..., j] -= h
        out[..., j] = (gradfn(xp)[..., j] - gradfn(xm)[..., j]) / (2 * h)
    return out


SMF_OPTIONS = [
    {},
    {"alpha": 0.25},
    {"alpha": np.array([0.1, 0.5, 1.0, 2.0, 0.3])},
    {"class_weight": np.array([1.0, 2.0, 0.5, 1.5, 3.0])},
    {"label_smoothing": 0.1},
    {"label_smoothing": 0.2, "alpha": np.array([0.1, 0.5, 1.0, 2.0, 0.3]),
     "class_weight": np.array([1.0, 2.0, 0.5, 1.5, 3.0])},
]


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("opts", range(len(SMF_OPTIONS)))
@pytest.mark.parametrize("target", ["index", "prob"])
def test_softmax_focal_derivatives_fd(gamma, opts, target):
    x, y, q = softmax_data()
    tgt = y if target == "index" else q
    kw = dict(gamma=gamma, **SMF_OPTIONS[opts])
    g, h = fl.softmax_focal.grad_hess(x, tgt, **kw)
    np.testing.assert_allclose(g, fd_rows(lambda v: fl.softmax_focal(v, tgt, **kw), x),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h, fd_diag(lambda v: fl.softmax_focal.grad(v, tgt, **kw), x),
                               rtol=1e-6, atol=1e-7)


def test_softmax_focal_value_formula():
    x, y, q = softmax_data()
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    alpha = np.array([0.1, 0.5, 1.0, 2.0, 0.3])
    for gamma in (0.5, 2.0):
        expect = -(alpha * q * (1 - p) ** gamma * np.log(p)).sum(1)
        np.testing.assert_allclose(fl.softmax_focal(x, q, gamma=gamma, alpha=alpha), expect,
                                   rtol=1e-12)
        onehot = np.eye(5)[y]
        expect = -(onehot * (1 - p) ** gamma * np.log(p)).sum(1)
        np.testing.assert_allclose(fl.softmax_focal(x, y, gamma=gamma), expect, rtol=1e-12)


def test_softmax_focal_gamma0_is_cross_entropy():
    x, y, q = softmax_data()
    cw = np.array([1.0, 2.0, 0.5, 1.5, 3.0])
    for tgt in (y, q):
        for kw in ({}, {"class_weight": cw}, {"label_smoothing": 0.1, "class_weight": cw}):
            for red in ("none", "mean", "sum"):
                a = fl.softmax_focal.value_and_grad(x, tgt, gamma=0.0, reduction=red, **kw)
                b = fl.softmax_cross_entropy.value_and_grad(x, tgt, reduction=red, **kw)
                np.testing.assert_allclose(a[0], b[0], rtol=1e-12)
                np.testing.assert_allclose(a[1], b[1], rtol=1e-12, atol=1e-15)
            ha = fl.softmax_focal.grad_hess(x, tgt, gamma=0.0, **kw)[1]
            hb = fl.softmax_cross_entropy.grad_hess(x, tgt, **kw)[1]
            np.testing.assert_allclose(ha, hb, rtol=1e-12, atol=1e-15)


def test_softmax_focal_alpha_forms():
    x, _, _ = softmax_data()
    y = np.array([0, 1, 2, 3, 4, 0, 0, 1, 3])
    a = np.array([0.1, 0.5, 1.0, 2.0, 0.3])
    # An index target's alpha_y scales its loss; a scalar alpha scales every row.
    np.testing.assert_allclose(fl.softmax_focal(x, y, alpha=a), a[y] * fl.softmax_focal(x, y),
                               rtol=1e-12)
    np.testing.assert_allclose(fl.softmax_focal(x, y, alpha=0.25), 0.25 * fl.softmax_focal(x, y),
                               rtol=1e-12)
    # "balanced" is scikit-learn's n / (K n_c) of the target's classes.
    bal = y.size / (5 * np.bincount(y, minlength=5).astype(float))
    np.testing.assert_allclose(fl.softmax_focal(x, y, alpha="balanced"),
                               bal[y] * fl.softmax_focal(x, y), rtol=1e-12)
    # alpha is part of the loss: the mean divides by the number of rows.
    assert fl.softmax_focal(x, y, alpha=a, reduction="mean") == pytest.approx(
        fl.softmax_focal(x, y, alpha=a).sum() / y.size, rel=1e-13)
    with pytest.raises(ValueError, match="alpha='balanced' is undefined: class 4"):
        fl.softmax_focal(x[:4], y[:4], alpha="balanced")


def test_softmax_focal_ignore_index_and_weights():
    x, y, _ = softmax_data(12)
    y[[1, 5]] = -100
    w = RNG.uniform(0.5, 2, 12)
    v = fl.softmax_focal(x, y, sample_weight=w)
    assert v[1] == 0 and v[5] == 0
    keep = y != -100
    full = fl.softmax_focal(x[keep], y[keep], sample_weight=w[keep])
    np.testing.assert_allclose(v[keep], full, rtol=1e-13)
    m = fl.softmax_focal(x, y, sample_weight=w, reduction="mean")
    assert m == pytest.approx(full.sum() / w[keep].sum(), rel=1e-13)
    g = fl.softmax_focal.grad(x, y, sample_weight=w, reduction="mean")
    assert (g[~keep] == 0).all()


def test_softmax_focal_fisher_is_hessian_at_model_target():
    x, y, _ = softmax_data()
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    for gamma in (0.5, 2.0):
        hf = fl.softmax_focal.grad_hess(x, y, gamma=gamma, hessian="fisher")[1]
        hp = fl.softmax_focal.grad_hess(x, p, gamma=gamma)[1]
        np.testing.assert_allclose(hf, hp, rtol=1e-12, atol=1e-15)
        # The gradient stays that of the given target.
        np.testing.assert_allclose(
            fl.softmax_focal.grad_hess(x, y, gamma=gamma, hessian="fisher")[0],
            fl.softmax_focal.grad(x, y, gamma=gamma), rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_softmax_focal_extreme_logits(dtype, gamma):
    x = np.array([[1e4, -1e4, 0.0, 3.0], [-1e4, -1e4, 1e4, 1e4], [0.0, 0.0, 0.0, 0.0],
                  [-1e4, 0.0, 1e4, -5.0]], dtype=dtype)
    for tgt in (np.array([0, 1, 2, 3]), np.full((4, 4), 0.25, dtype=dtype)):
        for hess in ("exact", "fisher"):
            v = fl.softmax_focal(x, tgt, gamma=gamma, label_smoothing=0.1)
            g, h = fl.softmax_focal.grad_hess(x, tgt, gamma=gamma, hessian=hess)
            assert np.isfinite(v).all() and np.isfinite(g).all() and np.isfinite(h).all()
            assert g.dtype == dtype


def test_softmax_focal_float32_and_large_k():
    x = RNG.standard_normal((6, 5000)) * 4
    y = RNG.integers(0, 5000, 6)
    for kw in ({}, {"label_smoothing": 0.1}):
        v64, g64 = fl.softmax_focal.value_and_grad(x, y, gamma=1.5, **kw)
        v32, g32 = fl.softmax_focal.value_and_grad(x.astype(np.float32), y, gamma=1.5, **kw)
        np.testing.assert_allclose(v32, v64, rtol=1e-4)
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-6)
    # Rows spanning several softmax chunks agree with the formula.
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    py = p[np.arange(6), y]
    np.testing.assert_allclose(fl.softmax_focal(x, y, gamma=1.5),
                               -(1 - py) ** 1.5 * np.log(py), rtol=1e-11)


# -- softmax_focal, from_logits=False: probabilities in, differentiated w.r.t. them ----------


def prob_rows(n=9, k=5):
    """Probability rows, not renormalised by the loss: kept inside [0.02, 0.95] so that
    central differences stay inside the clip range, and not summing to 1 exactly."""
    return np.clip(RNG.dirichlet(np.full(k, 2.0), n) * RNG.uniform(0.8, 1.2, (n, 1)),
                   0.02, 0.95)


def focal_prob_value(p, q_rows, gamma, a_vec):
    """-sum_k a_k q_k (1 - p_k)^gamma log p_k, written directly."""
    return -(a_vec * q_rows * (1 - p) ** gamma * np.log(p)).sum(-1)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("opts", range(len(SMF_OPTIONS)))
@pytest.mark.parametrize("target", ["index", "prob"])
def test_softmax_focal_probabilities_fd(gamma, opts, target):
    p = prob_rows()
    _, y, q = softmax_data()
    tgt = y if target == "index" else q
    kw = dict(gamma=gamma, from_logits=False, **SMF_OPTIONS[opts])
    g, h = fl.softmax_focal.grad_hess(p, tgt, **kw)
    np.testing.assert_allclose(g, fd_rows(lambda v: fl.softmax_focal(v, tgt, **kw), p),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h, fd_diag(lambda v: fl.softmax_focal.grad(v, tgt, **kw), p),
                               rtol=1e-6, atol=1e-6)


def test_softmax_focal_probabilities_value_formula():
    p = prob_rows()
    _, y, q = softmax_data()
    alpha = np.array([0.1, 0.5, 1.0, 2.0, 0.3])
    cw = np.array([1.0, 2.0, 0.5, 1.5, 3.0])
    eps = 0.1
    for gamma in (0.0, 0.5, 2.0, 3.7):
        # Probability targets: a_k = alpha_k c_k q_k with q smoothed.
        qs = (1 - eps) * q + eps / 5
        np.testing.assert_allclose(
            fl.softmax_focal(p, q, gamma=gamma, alpha=alpha, class_weight=cw,
                             label_smoothing=eps, from_logits=False),
            focal_prob_value(p, qs, gamma, alpha * cw), rtol=1e-12)
        # Index targets: only the target class's term.
        np.testing.assert_allclose(
            fl.softmax_focal(p, y, gamma=gamma, from_logits=False),
            focal_prob_value(p, np.eye(5)[y], gamma, np.ones(5)), rtol=1e-12)


def test_softmax_focal_probabilities_gamma0_is_cross_entropy():
    p = prob_rows()
    _, y, q = softmax_data()
    cw = np.array([1.0, 2.0, 0.5, 1.5, 3.0])
    for tgt in (y, q):
        for kw in ({}, {"class_weight": cw}, {"label_smoothing": 0.1, "class_weight": cw}):
            for red in ("none", "mean", "sum"):
                a = fl.softmax_focal.value_and_grad(p, tgt, gamma=0.0, reduction=red,
                                                    from_logits=False, **kw)
                b = fl.softmax_cross_entropy.value_and_grad(p, tgt, reduction=red,
                                                            from_logits=False, **kw)
                np.testing.assert_allclose(a[0], b[0], rtol=1e-12)
                np.testing.assert_allclose(a[1], b[1], rtol=1e-12, atol=1e-15)
            for hess in ("exact", "fisher"):
                ha = fl.softmax_focal.grad_hess(p, tgt, gamma=0.0, hessian=hess,
                                                from_logits=False, **kw)[1]
                hb = fl.softmax_cross_entropy.grad_hess(p, tgt, hessian=hess, from_logits=False,
                                                        **kw)[1]
                np.testing.assert_allclose(ha, hb, rtol=1e-12, atol=1e-15)


def test_softmax_focal_probabilities_fisher_and_policies():
    p = prob_rows()
    _, y, _ = softmax_data()
    for gamma in (0.5, 2.0):
        kw = dict(gamma=gamma, from_logits=False)
        # The Hessian is linear in the target: "fisher" is it at the model's own q = p.
        hf = fl.softmax_focal.grad_hess(p, y, hessian="fisher", **kw)[1]
        np.testing.assert_allclose(hf, fl.softmax_focal.grad_hess(p, p, **kw)[1], rtol=1e-12)
        he = fl.softmax_focal.grad_hess(p, y, **kw)[1]
        np.testing.assert_allclose(fl.softmax_focal.grad_hess(p, y, hessian="abs", **kw)[1],
                                   np.abs(he), rtol=1e-15)
        np.testing.assert_allclose(
            fl.softmax_focal.grad_hess(p, y, hessian="clip", hess_floor=0.5, **kw)[1],
            np.maximum(he, 0.5), rtol=1e-15)
        for hess in ("xgboost", "lightgbm"):
            with pytest.raises(ValueError, match="from_logits=False"):
                fl.softmax_focal.grad_hess(p, y, hessian=hess, **kw)


def test_softmax_focal_probabilities_ignore_weights_and_torch():
    p = prob_rows(12)
    _, y, _ = softmax_data(12)
    y[[2, 7]] = -100
    w = RNG.uniform(0.5, 2.0, 12)
    kw = dict(gamma=2.0, from_logits=False, sample_weight=w)
    v = fl.softmax_focal(p, y, **kw)
    assert v[2] == 0 and v[7] == 0
    keep = y != -100
    m, g = fl.softmax_focal.value_and_grad(p, y, reduction="mean", **kw)
    assert m == pytest.approx(v[keep].sum() / w[keep].sum(), rel=1e-13)
    assert (g[~keep] == 0).all()
    torch = pytest.importorskip("torch")
    pt = torch.tensor(p[keep], requires_grad=True)
    yt = torch.tensor(y[keep])
    wt = torch.tensor(w[keep])
    pyv = pt.gather(1, yt[:, None])[:, 0]
    loss = (wt * (-(1 - pyv) ** 2 * torch.log(pyv))).sum() / wt.sum()
    loss.backward()
    assert m == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(g[keep], pt.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_softmax_focal_probabilities_at_0_and_1(dtype, gamma):
    p = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]],
                 dtype=dtype)
    for tgt in (np.array([0, 0, 3]), np.full((3, 4), 0.25, dtype=dtype)):
        for hess in ("exact", "fisher", "clip"):
            g, h = fl.softmax_focal.grad_hess(p, tgt, gamma=gamma, hessian=hess,
                                              from_logits=False)
            v = fl.softmax_focal(p, tgt, gamma=gamma, from_logits=False)
            assert v.dtype == dtype and g.dtype == dtype and h.dtype == dtype
            assert np.isfinite(v).all() and np.isfinite(g).all() and np.isfinite(h).all()
    with pytest.raises(ValueError, match="logits"):
        fl.softmax_focal(np.array([[0.5, 1.5]]), np.array([0]), from_logits=False)


@pytest.mark.parametrize("bad, exc, word", [
    ({"gamma": -1.0}, ValueError, "gamma"),
    ({"gamma": float("nan")}, ValueError, "gamma"),
    ({"alpha": 1.5}, ValueError, "alpha"),
    ({"alpha": "x"}, (TypeError, ValueError), "alpha"),
    ({"from_logits": 1}, TypeError, "from_logits"),
    ({"delta": 1.0}, TypeError, "delta"),
])
def test_sigmoid_focal_bad_params(bad, exc, word):
    with pytest.raises(exc, match=word):
        fl.sigmoid_focal(np.zeros(3), np.zeros(3), **bad)


@pytest.mark.parametrize("bad, exc, word", [
    ({"gamma": -0.5}, ValueError, "gamma"),
    ({"alpha": np.ones(4)}, ValueError, "alpha"),
    ({"alpha": np.array([1.0, -1, 1, 1, 1])}, ValueError, "alpha"),
    ({"alpha": "auto"}, ValueError, "alpha"),
    ({"alpha": 2.0}, ValueError, "alpha"),
    ({"label_smoothing": 2.0}, ValueError, "label_smoothing"),
    ({"n": 2.0}, TypeError, "'n'"),
])
def test_softmax_focal_bad_params(bad, exc, word):
    with pytest.raises(exc, match=word):
        fl.softmax_focal(np.zeros((2, 5)), np.array([0, 1]), **bad)


@pytest.mark.parametrize("n", [0.0, -1.0, float("inf")])
def test_power_bad_n(n):
    with pytest.raises(ValueError, match="n must"):
        fl.sigmoid_power_cross_entropy(np.zeros(3), np.zeros(3), n=n)


def test_targets_outside_unit_interval_raise():
    with pytest.raises(ValueError, match="target"):
        fl.sigmoid_focal(np.zeros(3), np.array([0.0, 1.5, 1.0]))
    with pytest.raises(ValueError, match="target"):
        fl.sigmoid_power_cross_entropy(np.zeros(3), np.array([0.0, -0.5, 1.0]))
    with pytest.raises(ValueError, match="^logits must hold probabilities"):
        fl.sigmoid_focal(np.array([0.5, 1.5]), np.zeros(2), from_logits=False)


# -- oracles ------------------------------------------------------------------------------


def test_sigmoid_focal_matches_torchvision_formula():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z, t = binary_data(200, soft=True)
    for gamma, alpha in ((2.0, 0.25), (0.5, None), (3.7, 0.6)):
        zt = torch.tensor(z, requires_grad=True)
        tt = torch.tensor(t)
        # torchvision.ops.sigmoid_focal_loss, written out with torch ops.
        p = torch.sigmoid(zt)
        ce = F.binary_cross_entropy_with_logits(zt, tt, reduction="none")
        p_t = p * tt + (1 - p) * (1 - tt)
        loss = ce * (1 - p_t) ** gamma
        if alpha is not None:
            loss = (alpha * tt + (1 - alpha) * (1 - tt)) * loss
        loss.mean().backward()
        v, g = fl.sigmoid_focal.value_and_grad(z, t, gamma=gamma, alpha=alpha, reduction="mean")
        assert v == pytest.approx(loss.mean().item(), rel=1e-12)
        np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_sigmoid_focal_matches_optax():
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    z, t = binary_data(200)
    for gamma, alpha in ((2.0, 0.25), (0.5, None), (1.0, 0.75)):
        ref = np.asarray(optax.sigmoid_focal_loss(jnp.asarray(z, dtype=jnp.float32),
                                                  jnp.asarray(t, dtype=jnp.float32),
                                                  alpha=alpha, gamma=gamma))
        got = fl.sigmoid_focal(z.astype(np.float32), t.astype(np.float32), gamma=gamma,
                               alpha=alpha)
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-6)


def test_softmax_focal_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    x, y, q = softmax_data(20, 6)
    a = RNG.uniform(0.2, 1.0, 6)
    for tgt in (y, q):
        xt = torch.tensor(x, requires_grad=True)
        logp = torch.log_softmax(xt, dim=-1)
        qt = torch.tensor(np.eye(6)[tgt] if tgt.ndim == 1 else tgt)
        loss = -(torch.tensor(a) * qt * (1 - logp.exp()) ** 2.5 * logp).sum(-1)
        loss.sum().backward()
        v, g = fl.softmax_focal.value_and_grad(x, tgt, gamma=2.5, alpha=a, reduction="sum")
        assert v == pytest.approx(loss.sum().item(), rel=1e-12)
        np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------
# log_base on the losses whose kernels work in natural log
# --------------------------------------------------------------------------


def _log_base_cases(rng):
    z = (rng.standard_normal(1001) * 3).astype(np.float32)
    t = (rng.random(1001) < 0.3).astype(np.float32)
    x = rng.standard_normal((40, 5))
    y = rng.integers(0, 5, 40)
    m = (rng.random((40, 5)) < 0.4).astype(np.float64)
    return {"sigmoid_focal": (z, t), "sigmoid_power_cross_entropy": (z, t),
            "softmax_focal": (x, y), "multilabel_softmax_cross_entropy": (x, m)}


@pytest.mark.parametrize("name", ["sigmoid_focal", "sigmoid_power_cross_entropy",
                                  "softmax_focal", "multilabel_softmax_cross_entropy"])
@pytest.mark.parametrize("base", [10, 2, 1.5])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_log_base_divides_value_gradient_and_hessian_by_ln_base(name, base, reduction, rng):
    loss = fl.losses[name]
    a, b = _log_base_cases(rng)[name]
    assert loss.params["log_base"] is None
    s = 1.0 / math.log(base)
    v0 = loss(a, b, reduction=reduction)
    v1 = loss(a, b, reduction=reduction, log_base=base)
    g0, h0 = loss.grad_hess(a, b, reduction=reduction)
    g1, h1 = loss.grad_hess(a, b, reduction=reduction, log_base=base)
    tol = 1e-6 if a.dtype == np.float32 else 1e-14
    np.testing.assert_allclose(v1, np.asarray(v0) * s, rtol=tol)
    np.testing.assert_allclose(g1, g0 * s, rtol=tol)
    np.testing.assert_allclose(h1, h0 * s, rtol=tol)
    assert np.asarray(v1).dtype == np.asarray(v0).dtype and g1.dtype == g0.dtype
    # natural log spelled out is the default, bit for bit
    np.testing.assert_array_equal(loss(a, b, reduction=reduction, log_base=math.e), v0)
    if reduction == "none":
        out, gout = np.empty_like(v0), np.empty_like(g0)
        v2, g2 = loss.value_and_grad(a, b, log_base=base, out=out, grad_out=gout)
        assert v2 is out and g2 is gout
        np.testing.assert_array_equal(out, v1)


def test_log_base_textbook_example_through_softmax_focal():
    # gamma = 0 is the cross-entropy; logits log p give softmax p for a row summing to 1.
    x = np.log(np.array([[0.5, 0.4, 0.1]]))
    y = np.array([0])
    assert float(fl.softmax_focal(x, y, gamma=0.0, reduction="mean")) == pytest.approx(
        0.693147, abs=1e-6)
    assert float(fl.softmax_focal(x, y, gamma=0.0, log_base=10, reduction="mean")) == \
        pytest.approx(0.30103, abs=1e-6)
    with pytest.raises(ValueError, match="log_base"):
        fl.sigmoid_focal(np.zeros(2), np.zeros(2), log_base=1)
    with pytest.raises(ValueError, match="log_base"):
        fl.softmax_focal(x, y, log_base=-2.0)


# -- sigmoid_power_cross_entropy on probabilities (from_logits=False) ---------------------


def _probabilities(rng, size=257):
    q = rng.uniform(0.02, 0.98, size)
    t = rng.random(size)
    t[::2] = np.round(t[::2])
    return q, t


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 3.0, 3.7])
@pytest.mark.parametrize("policy", ["exact", "fisher"])
def test_power_probabilities_match_the_reference_and_differences(n, policy, rng):
    q, t = _probabilities(rng)
    v = fl.sigmoid_power_cross_entropy(q, t, n=n, from_logits=False)
    g, h = fl.sigmoid_power_cross_entropy.grad_hess(q, t, n=n, from_logits=False,
                                                     hessian=policy)
    rv, rg, rh = reference_focal.sigmoid_power_prob_terms(q, t, n=n, fisher=policy == "fisher")
    np.testing.assert_allclose(v, rv, rtol=1e-12)
    np.testing.assert_allclose(g, rg, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(h, rh, rtol=1e-11, atol=1e-14)
    if policy == "exact":
        f = lambda x: fl.sigmoid_power_cross_entropy(x, t, n=n, from_logits=False)  # noqa: E731
        np.testing.assert_allclose(g, fd_grad(f, q), rtol=1e-6, atol=1e-8)
        gf = lambda x: fl.sigmoid_power_cross_entropy.grad(x, t, n=n,  # noqa: E731
                                                            from_logits=False)
        np.testing.assert_allclose(h, fd_grad(gf, q), rtol=1e-6, atol=1e-8)


def test_power_probabilities_identities_and_bounds(rng):
    q, t = _probabilities(rng)
    # n = 1 is the cross-entropy on probabilities, value and derivatives.
    for kw in ({}, {"hessian": "fisher"}):
        for a, b in zip(fl.sigmoid_power_cross_entropy.grad_hess(q, t, n=1.0, from_logits=False,
                                                                  **kw),
                        fl.sigmoid_cross_entropy.grad_hess(q, t, from_logits=False, **kw)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fl.sigmoid_power_cross_entropy(q, t, n=1.0, from_logits=False),
                               fl.sigmoid_cross_entropy(q, t, from_logits=False), rtol=1e-12)
    # The same loss as on the logits of the same probabilities, every n and split.
    z = np.log(q) - np.log1p(-q)
    for n in (0.5, 2.0, 3.0, 3.7):
        np.testing.assert_allclose(fl.sigmoid_power_cross_entropy(q, t, n=n, from_logits=False),
                                   fl.sigmoid_power_cross_entropy(z, t, n=n), rtol=1e-9)
    # 0 and 1 are clipped to [eps, 1 - eps]: finite everywhere, both dtypes.
    for dtype in (np.float32, np.float64):
        edge = np.array([0.0, 1.0, 0.5, 1e-30], dtype)
        for n in (0.5, 1.0, 4.0):
            for tt in (np.zeros(4, dtype), np.ones(4, dtype)):
                v, g = fl.sigmoid_power_cross_entropy.value_and_grad(edge, tt, n=n,
                                                                     from_logits=False)
                _, h = fl.sigmoid_power_cross_entropy.grad_hess(edge, tt, n=n, from_logits=False)
                assert v.dtype == dtype and np.all(np.isfinite(v))
                assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    with pytest.raises(ValueError, match="^logits must hold probabilities"):
        fl.sigmoid_power_cross_entropy(np.array([0.5, 1.5]), np.ones(2), from_logits=False)
    with pytest.raises(TypeError, match="from_logits"):
        fl.sigmoid_power_cross_entropy(q, t, from_logits="no")


@pytest.mark.parametrize("n", [0.5, 2.0, 3.0, 3.7])
def test_power_probabilities_float32_against_float64(n, rng):
    q, t = _probabilities(rng, 4099)
    v64, g64 = fl.sigmoid_power_cross_entropy.value_and_grad(q, t, n=n, from_logits=False)
    v32, g32 = fl.sigmoid_power_cross_entropy.value_and_grad(q.astype(np.float32),
                                                             t.astype(np.float32), n=n,
                                                             from_logits=False)
    assert v32.dtype == np.float32 and g32.dtype == np.float32
    np.testing.assert_allclose(v32, v64, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(g32, g64, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["sigmoid_focal", "softmax_focal"])
@pytest.mark.parametrize("base", [10, 1.5])
def test_log_base_hessian_policies_act_on_the_scaled_loss(name, base, rng):
    # gamma = 5: the exact Hessians of both focal losses change sign, so the policies bite.
    loss = fl.losses[name]
    a, b = _log_base_cases(rng)[name]
    a = a.astype(np.float64)
    s = 1.0 / math.log(base)
    _, h = loss.grad_hess(a, b, gamma=5.0, log_base=base)
    _, habs = loss.grad_hess(a, b, gamma=5.0, log_base=base, hessian="abs")
    np.testing.assert_allclose(habs, np.abs(h), rtol=1e-14)
    _, hf0 = loss.grad_hess(a, b, gamma=5.0, hessian="fisher")
    _, hf = loss.grad_hess(a, b, gamma=5.0, hessian="fisher", log_base=base)
    np.testing.assert_allclose(hf, hf0 * s, rtol=1e-14)
    floor = 0.05
    _, hc = loss.grad_hess(a, b, gamma=5.0, log_base=base, hessian="clip", hess_floor=floor)
    np.testing.assert_allclose(hc, np.maximum(h, floor), rtol=1e-14)
    assert np.any(h < floor)


@pytest.mark.parametrize("name", ["sigmoid_cross_entropy", "softmax_cross_entropy",
                                  "sigmoid_focal", "sigmoid_power_cross_entropy",
                                  "softmax_focal", "multilabel_softmax_cross_entropy"])
@pytest.mark.parametrize("base", [1.0, 0.5, 0.0, -2.0])
def test_log_base_at_or_below_one_is_refused(name, base, rng):
    cases = _log_base_cases(rng)
    cases["sigmoid_cross_entropy"] = cases["sigmoid_focal"]
    cases["softmax_cross_entropy"] = cases["softmax_focal"]
    a, b = cases[name]
    with pytest.raises(ValueError, match="log_base must be > 1"):
        fl.losses[name](a, b, log_base=base)


def test_log_base_clip_keeps_ignored_rows_at_zero():
    x = np.array([[2.0, -1.0, 0.5], [0.3, 0.2, -4.0]])
    y = np.array([1, -100])
    _, h = fl.softmax_focal.grad_hess(x, y, log_base=10, hessian="clip", hess_floor=0.5)
    assert np.all(h[1] == 0.0) and np.all(h[0] >= 0.5 * (1 - 1e-15))
