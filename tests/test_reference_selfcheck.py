"""Checks of the reference formulas themselves (no fastloss needed).

The reference is what every kernel is compared with, so its derivatives are
verified here independently: gradients against 4th-order central finite
differences of the value, Hessians against finite differences of the
gradient, and a few values computed by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference as ref

NAMES = sorted(ref.REFERENCE)


def central_difference(f, x, h):
    """4th-order central difference: f'(x) with error O(h^4)."""
    return (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h)


def params_cases(name):
    base = ref.REFERENCE[name]["params"]
    cases = [dict(base)]
    if name == "huber":
        cases += [{"delta": 0.3}, {"delta": 2.5}]
    return cases


def sample_points(rng, n=400):
    pred = np.concatenate([rng.normal(0, 3, n), rng.uniform(-40, 40, 50), [0.0, 1e-3, -1e-3]])
    target = np.concatenate([rng.normal(0, 3, n), rng.uniform(-40, 40, 50), [0.5, -2.0, 1.0]])
    return pred, target


def away_from_kinks(name, pred, target, params, margin):
    """Points at least `margin` from every kink of the loss."""
    distance = ref.REFERENCE[name]["kink_distance"]
    if distance is None:
        return np.ones(np.shape(pred), bool)
    return distance(pred, target, **params) > margin


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry(name):
    entry = ref.REFERENCE[name]
    assert callable(entry["fn"])
    assert entry["kind"] == "elementwise"
    assert isinstance(entry["params"], dict)
    value, grad, hess = entry["fn"](np.array([0.3, -1.7]), np.array([0.0, 0.5]), **entry["params"])
    for out in (value, grad, hess):
        assert out.shape == (2,)
        assert out.dtype == np.float64


@pytest.mark.parametrize("name", NAMES)
def test_grad_is_derivative_of_value(name):
    rng = np.random.default_rng(1)
    fn = ref.REFERENCE[name]["fn"]
    h = 1e-4
    for params in params_cases(name):
        pred, target = sample_points(rng)
        keep = away_from_kinks(name, pred, target, params, margin=4 * h)
        pred, target = pred[keep], target[keep]
        fd = central_difference(lambda p, t=target, k=params: fn(p, t, **k)[0], pred, h)
        _, grad, _ = fn(pred, target, **params)
        np.testing.assert_allclose(grad, fd, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_hess_is_derivative_of_grad(name):
    rng = np.random.default_rng(2)
    fn = ref.REFERENCE[name]["fn"]
    h = 1e-4
    for params in params_cases(name):
        pred, target = sample_points(rng)
        keep = away_from_kinks(name, pred, target, params, margin=4 * h)
        pred, target = pred[keep], target[keep]
        fd = central_difference(lambda p, t=target, k=params: fn(p, t, **k)[1], pred, h)
        _, _, hess = fn(pred, target, **params)
        np.testing.assert_allclose(hess, fd, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_derivatives_depend_on_residual_only(name):
    # d/dpred = -d/dtarget for a function of pred - target.
    fn = ref.REFERENCE[name]["fn"]
    params = ref.REFERENCE[name]["params"]
    rng = np.random.default_rng(3)
    pred, target = sample_points(rng)
    keep = away_from_kinks(name, pred, target, params, margin=1e-3)
    pred, target = pred[keep], target[keep]
    h = 1e-4
    fd_target = central_difference(lambda t: fn(pred, t, **params)[0], target, h)
    np.testing.assert_allclose(fn(pred, target, **params)[1], -fd_target, rtol=1e-8, atol=1e-8)


# (name, params, pred, target, value, grad, hess), computed by hand.
HAND_VALUES = [
    ("squared_error", {}, 3.0, 1.0, 4.0, 4.0, 2.0),
    ("squared_error", {}, -0.5, 0.5, 1.0, -2.0, 2.0),
    ("absolute_error", {}, 0.0, 2.0, 2.0, -1.0, 0.0),
    ("absolute_error", {}, 2.5, 1.0, 1.5, 1.0, 0.0),
    ("absolute_error", {}, 1.0, 1.0, 0.0, 0.0, 0.0),
    ("huber", {"delta": 1.0}, 0.5, 0.0, 0.125, 0.5, 1.0),
    ("huber", {"delta": 1.0}, 3.0, 0.0, 2.5, 1.0, 0.0),
    ("huber", {"delta": 1.0}, 0.0, 3.0, 2.5, -1.0, 0.0),
    ("huber", {"delta": 1.0}, 1.0, 0.0, 0.5, 1.0, 1.0),  # on the kink: quadratic side
    ("huber", {"delta": 2.0}, 3.0, 0.0, 4.0, 2.0, 0.0),
    ("huber", {"delta": 2.0}, -1.5, 0.0, 1.125, -1.5, 1.0),
    ("log_cosh", {}, 0.0, 0.0, 0.0, 0.0, 1.0),
    (
        "log_cosh",
        {},
        1.0,
        0.0,
        math.log(math.cosh(1.0)),
        math.tanh(1.0),
        1.0 / math.cosh(1.0) ** 2,
    ),
    (
        "log_cosh",
        {},
        0.0,
        2.0,
        math.log(math.cosh(2.0)),
        -math.tanh(2.0),
        1.0 / math.cosh(2.0) ** 2,
    ),
    # No overflow where cosh itself overflows: log cosh r -> |r| - log 2.
    ("log_cosh", {}, 800.0, 0.0, 800.0 - math.log(2.0), 1.0, 0.0),
    ("log_cosh", {}, -800.0, 0.0, 800.0 - math.log(2.0), -1.0, 0.0),
    # Full relative accuracy for tiny residuals: log cosh r = r^2/2 - r^4/12 + ...
    ("log_cosh", {}, 1e-10, 0.0, 5e-21, 1e-10, 1.0),
]


@pytest.mark.parametrize(
    "name, params, pred, target, value, grad, hess",
    HAND_VALUES,
    ids=[f"{c[0]}-{c[2]}-{c[3]}-{c[1]}" for c in HAND_VALUES],
)
def test_hand_computed(name, params, pred, target, value, grad, hess):
    v, g, h = ref.REFERENCE[name]["fn"](np.array([pred]), np.array([target]), **params)
    assert v[0] == pytest.approx(value, rel=1e-14, abs=1e-300)
    assert g[0] == pytest.approx(grad, rel=1e-14, abs=1e-300)
    assert h[0] == pytest.approx(hess, rel=1e-14, abs=1e-300)


def test_log_cosh_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    r = np.concatenate([np.geomspace(1e-12, 700, 200), -np.geomspace(1e-12, 700, 37)])
    value, grad, hess = ref.log_cosh(r, np.zeros_like(r))
    exact_v = np.array([float(mpmath.log(mpmath.cosh(mpmath.mpf(x)))) for x in r])
    exact_g = np.array([float(mpmath.tanh(mpmath.mpf(x))) for x in r])
    exact_h = np.array([float(mpmath.sech(mpmath.mpf(x)) ** 2) for x in r])
    np.testing.assert_allclose(value, exact_v, rtol=1e-14)
    np.testing.assert_allclose(grad, exact_g, rtol=1e-14)
    np.testing.assert_allclose(hess, exact_h, rtol=1e-13)


def test_huber_against_scipy():
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(4)
    r = rng.normal(0, 3, 1000)
    for delta in (0.3, 1.0, 2.5):
        value, _, _ = ref.huber(r, np.zeros_like(r), delta=delta)
        np.testing.assert_allclose(value, special.huber(delta, r), rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_kink_distance(name):
    # Where a kink is declared, the gradient jumps across it; elsewhere the
    # gradient is continuous (checked on a fine grid of residuals).
    entry = ref.REFERENCE[name]
    fn, params = entry["fn"], entry["params"]
    r = np.linspace(-5, 5, 200_001)
    zero = np.zeros_like(r)
    grad = fn(r, zero, **params)[1]
    jumps = np.abs(np.diff(grad)) > 1e-3
    if entry["kink_distance"] is None:
        assert not jumps.any()
        return
    dist = entry["kink_distance"](r, zero, **params)
    near = (dist[:-1] <= 1e-4) | (dist[1:] <= 1e-4)
    assert np.array_equal(jumps & ~near, np.zeros_like(jumps))
    if name == "absolute_error":
        assert jumps.any()


def test_nan_propagates():
    for name in NAMES:
        entry = ref.REFERENCE[name]
        v, g, _ = entry["fn"](np.array([np.nan, 1.0]), np.array([0.0, np.nan]), **entry["params"])
        assert np.isnan(v).all() and np.isnan(g).all(), name


def test_fisher_entries():
    assert ref.REFERENCE["squared_error"]["fisher"] == 2.0
    assert ref.REFERENCE["absolute_error"]["fisher"] == 1.0
    assert ref.REFERENCE["log_cosh"]["fisher"] == 0.5
    assert ref.REFERENCE["huber"]["fisher"] is None
    with pytest.raises(ValueError):
        ref.apply_hessian_policy(np.ones(3), "huber", "fisher")


def test_log_cosh_fisher_is_expected_hessian():
    # log cosh is the negative log-likelihood of the hyperbolic secant law
    # p(r) = 1 / (pi cosh r); under it E[sech^2 r] = E[tanh^2 r] = 1/2, the
    # documented Fisher value.
    integrate = pytest.importorskip("scipy.integrate")
    density = lambda r: 1.0 / (math.pi * math.cosh(r))
    total, _ = integrate.quad(density, -60, 60)
    expected_hess, _ = integrate.quad(lambda r: density(r) / math.cosh(r) ** 2, -60, 60)
    expected_grad2, _ = integrate.quad(lambda r: density(r) * math.tanh(r) ** 2, -60, 60)
    assert total == pytest.approx(1.0, rel=1e-10)
    assert expected_hess == pytest.approx(ref.REFERENCE["log_cosh"]["fisher"], rel=1e-10)
    assert expected_grad2 == pytest.approx(ref.REFERENCE["log_cosh"]["fisher"], rel=1e-10)


def test_hessian_policies():
    h = np.array([-0.5, 0.0, 1e-9, 0.3])
    assert np.array_equal(ref.apply_hessian_policy(h, "log_cosh", "exact"), h)
    assert np.array_equal(ref.apply_hessian_policy(h, "log_cosh", "abs"), np.abs(h))
    assert np.array_equal(
        ref.apply_hessian_policy(h, "log_cosh", "clip", hess_floor=1e-6),
        [1e-6, 1e-6, 1e-6, 0.3],
    )
    assert np.array_equal(ref.apply_hessian_policy(h, "log_cosh", "fisher"), [0.5] * 4)


def test_reduce():
    values = np.array([1.0, 2.0, 4.0])
    weights = np.array([0.5, 1.0, 2.0])
    assert np.array_equal(ref.reduce(values, None, "none"), values)
    assert np.array_equal(ref.reduce(values, weights, "none"), [0.5, 2.0, 8.0])
    assert ref.reduce(values, None, "sum") == 7.0
    assert ref.reduce(values, None, "mean") == pytest.approx(7.0 / 3.0, rel=1e-15)
    assert ref.reduce(values, weights, "sum") == 10.5
    assert ref.reduce(values, weights, "mean") == 10.5 / 3.5
    assert ref.reduce(values, 2.0, "mean") == pytest.approx(7.0 / 3.0, rel=1e-15)
    assert ref.reduce(np.array([]), None, "sum") == 0.0
    assert math.isnan(ref.reduce(np.array([]), None, "mean"))
    with pytest.raises(ValueError):
        ref.reduce(values, None, "average")


def test_derivative_scale():
    w = np.array([0.5, 1.0, 2.5])
    assert np.array_equal(ref.derivative_scale(None, (3,), "none"), [1.0, 1.0, 1.0])
    assert np.array_equal(ref.derivative_scale(w, (3,), "sum"), w)
    assert np.allclose(ref.derivative_scale(w, (3,), "mean"), w / 4.0)
    assert np.allclose(ref.derivative_scale(None, (4,), "mean"), [0.25] * 4)


def test_mean_gradient_matches_finite_difference_of_mean():
    # The documented meaning of a reduced gradient: d(mean)/d(pred_i).
    rng = np.random.default_rng(5)
    pred, target = rng.normal(size=6), rng.normal(size=6)
    w = rng.uniform(0.5, 2.0, 6)
    _, g, _ = ref.log_cosh(pred, target)
    grad = ref.derivative_scale(w, (6,), "mean") * g
    for i in range(6):

        def mean_at(x, i=i):
            p = pred.copy()
            p[i] = x
            return ref.reduce(ref.log_cosh(p, target)[0], w, "mean")

        fd = central_difference(np.vectorize(mean_at), np.array(pred[i]), 1e-4)
        assert grad[i] == pytest.approx(float(fd), rel=1e-8, abs=1e-10)


def test_sum_to_shape():
    g = np.arange(12.0).reshape(3, 4)
    assert np.array_equal(ref.sum_to_shape(g, (3, 4)), g)
    assert np.array_equal(ref.sum_to_shape(g, (3, 1)), g.sum(axis=1, keepdims=True))
    assert np.array_equal(ref.sum_to_shape(g, (1, 4)), g.sum(axis=0, keepdims=True))
    assert np.array_equal(ref.sum_to_shape(g, (4,)), g.sum(axis=0))
    assert ref.sum_to_shape(g, ()) == g.sum()
    assert ref.sum_to_shape(g, ()).shape == ()
