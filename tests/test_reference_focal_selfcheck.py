"""Checks of the class-imbalance reference (tests/reference_focal.py) itself.

No fastloss needed.  Gradients are compared with 4th-order central finite
differences of the value, Hessians with finite differences of the gradient;
identities (gamma = 0 is cross-entropy, n = 1 is cross-entropy, alpha acts
as the class weights [1 - alpha, alpha]) are checked against formulas
written out here and against tests/reference_ce.py; PyTorch, optax and
mpmath serve as external oracles where installed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference_ce as ref_ce
import reference_focal as ref

GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)
ALPHAS = (None, 0.25, 0.7)
POWERS = (0.5, 1.0, 2.0, 3.7)
EXTREMES = np.array([-1e4, -1e3, -800.0, -40.0, -1.0, 0.0, 1.0, 40.0, 800.0, 1e3, 1e4])


def central_difference(f, x, h):
    """Elementwise 4th-order central difference of an elementwise f."""
    return (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h)


def row_difference(f, x, h=1e-4):
    """d f(x)[i] / d x[i, j] for a row function f: [N, K] -> [N] (rows independent)."""
    out = np.zeros_like(x)
    for j in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, j] = h
        out[:, j] = (-f(x + 2 * e) + 8 * f(x + e) - 8 * f(x - e) + f(x - 2 * e)) / (12 * h)
    return out


def naive_sigmoid(z):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def targets(rng, size, kind):
    if kind == "hard":
        return (rng.uniform(size=size) < 0.4).astype(np.float64)
    return rng.uniform(0.0, 1.0, size)


# --------------------------------------------------------------------------
# sigmoid_focal
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hard", "soft"])
@pytest.mark.parametrize("alpha", ALPHAS, ids=str)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_focal_derivatives_logits(gamma, alpha, kind):
    rng = np.random.default_rng(10)
    z = np.concatenate([rng.normal(0, 3, 300), [-12.0, -6.0, 0.0, 6.0, 12.0]])
    t = targets(rng, z.size, kind)
    fn = lambda v, i: ref.sigmoid_focal_terms(v, t, gamma=gamma, alpha=alpha)[i]
    _, grad, hess = ref.sigmoid_focal_terms(z, t, gamma=gamma, alpha=alpha)
    np.testing.assert_allclose(grad, central_difference(lambda v: fn(v, 0), z, 1e-4),
                               rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(hess, central_difference(lambda v: fn(v, 1), z, 1e-4),
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ["hard", "soft"])
@pytest.mark.parametrize("alpha", ALPHAS, ids=str)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_focal_derivatives_probabilities(gamma, alpha, kind):
    rng = np.random.default_rng(11)
    p = rng.uniform(0.02, 0.98, 300)
    t = targets(rng, p.size, kind)
    kw = {"gamma": gamma, "alpha": alpha, "from_logits": False}
    fn = lambda v, i: ref.sigmoid_focal_terms(v, t, **kw)[i]
    _, grad, hess = ref.sigmoid_focal_terms(p, t, **kw)
    np.testing.assert_allclose(grad, central_difference(lambda v: fn(v, 0), p, 1e-5),
                               rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(hess, central_difference(lambda v: fn(v, 1), p, 1e-5),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("target_form", ["index", "prob"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_focal_prob_rows_derivatives(gamma, target_form):
    """The reference's from_logits=False path: its gradient and Hessian by central
    differences of its own value and gradient, class by class."""
    rng = np.random.default_rng(13)
    p = rng.uniform(0.02, 0.98, (40, 4))
    t = rng.integers(0, 4, 40) if target_form == "index" else rng.dirichlet(np.ones(4), 40)
    kw = {"gamma": gamma, "alpha": np.array([0.2, 1.0, 0.7, 1.5]), "label_smoothing": 0.1,
          "class_weight": np.array([1.0, 2.0, 0.5, 1.0])}
    _, grad, hess, _, _ = ref.softmax_focal_prob_rows(p, t, **kw)
    for j in range(4):
        def fn(v, i, j=j):
            q = p.copy()
            q[:, j] = v
            out = ref.softmax_focal_prob_rows(q, t, **kw)
            return out[0] if i == 0 else out[1][:, j]
        np.testing.assert_allclose(grad[:, j], central_difference(lambda v: fn(v, 0), p[:, j],
                                                                  1e-5), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(hess[:, j], central_difference(lambda v: fn(v, 1), p[:, j],
                                                                  1e-5), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("alpha", ALPHAS, ids=str)
def test_sigmoid_focal_gamma0_is_weighted_bce(alpha):
    rng = np.random.default_rng(12)
    z = rng.normal(0, 4, 500)
    t = rng.uniform(0, 1, 500)
    p = naive_sigmoid(z)
    a = 1.0 if alpha is None else alpha * t + (1 - alpha) * (1 - t)
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    value, grad, hess = ref.sigmoid_focal_terms(z, t, gamma=0.0, alpha=alpha)
    np.testing.assert_allclose(value, a * bce, rtol=1e-10)
    np.testing.assert_allclose(grad, a * (p - t), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(hess, a * p * (1 - p), rtol=1e-10)
    # and the same as the cross-entropy reference with class weights [1 - alpha, alpha]
    cw = None if alpha is None else [1 - alpha, alpha]
    ce = ref_ce.sigmoid_cross_entropy(z, t, class_weight=cw)
    for mine, theirs in zip((value, grad, hess), ce):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-300)
    # on probabilities
    q = rng.uniform(0.01, 0.99, 500)
    value, grad, hess = ref.sigmoid_focal_terms(q, t, gamma=0.0, alpha=alpha, from_logits=False)
    ce = ref_ce.sigmoid_cross_entropy(q, t, class_weight=cw, from_logits=False)
    for mine, theirs in zip((value, grad, hess), ce):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("from_logits", [True, False])
def test_sigmoid_focal_alpha_is_class_weight(gamma, from_logits):
    rng = np.random.default_rng(13)
    z = rng.normal(0, 3, 400) if from_logits else rng.uniform(0.01, 0.99, 400)
    for t in (targets(rng, 400, "hard"), targets(rng, 400, "soft")):
        plain = ref.sigmoid_focal_terms(z, t, gamma=gamma, alpha=None, from_logits=from_logits)
        for alpha in (0.25, 0.7):
            c = (1 - alpha) * (1 - t) + alpha * t
            weighted = ref.sigmoid_focal_terms(z, t, gamma=gamma, alpha=alpha,
                                               from_logits=from_logits)
            for w, u in zip(weighted, plain):
                np.testing.assert_allclose(w, c * u, rtol=1e-13, atol=1e-300)
    # alpha = -1 switches the weighting off, as None does (torchvision)
    off = ref.sigmoid_focal_terms(z, t, gamma=gamma, alpha=-1, from_logits=from_logits)
    for w, u in zip(off, plain):
        np.testing.assert_array_equal(w, u)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_focal_against_naive_formula(gamma):
    # The textbook form, where it has no rounding trouble.
    rng = np.random.default_rng(14)
    z = rng.normal(0, 2, 300)
    t = rng.uniform(0, 1, 300)
    p = naive_sigmoid(z)
    p_t = p * t + (1 - p) * (1 - t)
    ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    expected = (0.25 * t + 0.75 * (1 - t)) * ce * (1 - p_t) ** gamma
    value, _, _ = ref.sigmoid_focal_terms(z, t, gamma=gamma, alpha=0.25)
    np.testing.assert_allclose(value, expected, rtol=1e-10)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", ALPHAS, ids=str)
def test_sigmoid_focal_finite_at_extremes(gamma, alpha):
    z = np.repeat(EXTREMES, 3)
    t = np.tile([0.0, 1.0, 0.3], EXTREMES.size)
    for from_logits in (True, False):
        arg = z if from_logits else np.clip(naive_sigmoid(z), 0.0, 1.0)
        for hess_kind in (False, True):
            out = ref.sigmoid_focal_terms(arg, t, gamma=gamma, alpha=alpha,
                                          from_logits=from_logits, fisher=hess_kind)
            for a in out:
                assert np.all(np.isfinite(a)), (gamma, alpha, from_logits, a)


@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.9])
def test_sigmoid_focal_gamma_below_one_at_pt_one(gamma):
    # p_t -> 1: the loss, its gradient and Hessian tend to 0; no NaN on the way.
    z = np.array([30.0, 100.0, 745.0, 800.0, 1e4, -30.0, -800.0, -1e4])
    t = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    value, grad, hess = ref.sigmoid_focal_terms(z, t, gamma=gamma, alpha=0.25)
    for a in (value, grad, hess):
        assert np.all(np.isfinite(a))
        assert np.all(np.abs(a) < 1e-12)
    # gamma = 0 keeps the factor exactly 1 where u = 1 - p_t underflows: plain BCE.
    value, grad, _ = ref.sigmoid_focal_terms(np.array([1e4, -1e4]), np.array([0.0, 1.0]), gamma=0.0,
                                             alpha=None)
    assert value.tolist() == [1e4, 1e4]
    assert grad.tolist() == [1.0, -1.0]


def test_sigmoid_focal_tail_accuracy():
    # t = 1, z large: l = alpha softplus(-z) sigma(-z)^gamma ~ alpha e^-((1 + gamma) z)
    z = np.array([20.0, 50.0, 200.0])
    value, grad, _ = ref.sigmoid_focal_terms(z, np.ones(3), gamma=2.0, alpha=0.25)
    np.testing.assert_allclose(value, 0.25 * np.exp(-3 * z), rtol=1e-8)
    # l' ~ -alpha (1 + gamma) e^-((1 + gamma) z)
    np.testing.assert_allclose(grad, -0.25 * 3 * np.exp(-3 * z), rtol=1e-7)


def test_sigmoid_focal_hessian_sign():
    # The exact Hessian is negative for badly misclassified samples (here
    # t = 1, gamma = 2, z below about -2.79, p_t < 0.058), never for
    # z >= -2.5.
    z = np.linspace(-2.5, 30.0, 2001)
    _, _, hess = ref.sigmoid_focal_terms(z, np.ones_like(z), gamma=2.0, alpha=None)
    assert np.all(hess >= 0.0)
    _, _, hess = ref.sigmoid_focal_terms(np.array([-3.0, -6.0, -20.0]), np.ones(3), gamma=2.0,
                                         alpha=None)
    assert np.all(hess < 0.0)


def test_sigmoid_focal_fisher():
    rng = np.random.default_rng(15)
    z = rng.normal(0, 3, 200)
    t = rng.uniform(0, 1, 200)
    p = naive_sigmoid(z)
    # gamma = 0 and no alpha: the Bernoulli Fisher information p (1 - p), for any t
    _, _, h = ref.sigmoid_focal_terms(z, t, gamma=0.0, alpha=None, fisher=True)
    np.testing.assert_allclose(h, p * (1 - p), rtol=1e-10)
    # with alpha: p alpha + (1 - p)(1 - alpha) times it
    _, _, h = ref.sigmoid_focal_terms(z, t, gamma=0.0, alpha=0.25, fisher=True)
    np.testing.assert_allclose(h, (0.25 * p + 0.75 * (1 - p)) * p * (1 - p), rtol=1e-10)
    # on probabilities: 1 / (p (1 - p))
    q = rng.uniform(0.01, 0.99, 200)
    _, _, h = ref.sigmoid_focal_terms(q, t, gamma=0.0, alpha=None, from_logits=False, fisher=True)
    np.testing.assert_allclose(h, 1.0 / (q * (1 - q)), rtol=1e-10)
    # gamma > 0: the mixture of the two hard-target Hessians, independent of t
    _, _, h = ref.sigmoid_focal_terms(z, t, gamma=2.0, alpha=0.25, fisher=True)
    h1 = ref.sigmoid_focal_terms(z, np.ones_like(z), gamma=2.0, alpha=0.25)[2]
    h0 = ref.sigmoid_focal_terms(z, np.zeros_like(z), gamma=2.0, alpha=0.25)[2]
    np.testing.assert_allclose(h, p * h1 + (1 - p) * h0, rtol=1e-12, atol=1e-300)


def test_sigmoid_focal_probability_clip():
    eps = np.finfo(np.float64).eps
    t = np.array([1.0, 0.0])
    at_edge = ref.sigmoid_focal_terms(np.array([0.0, 1.0]), t, gamma=0.5, alpha=0.25,
                                      from_logits=False)
    at_clip = ref.sigmoid_focal_terms(np.array([eps, 1 - eps]), t, gamma=0.5, alpha=0.25,
                                      from_logits=False)
    for a, b in zip(at_edge, at_clip):
        np.testing.assert_array_equal(a, b)
        assert np.all(np.isfinite(a))
    np.testing.assert_allclose(at_edge[0][0], 0.25 * -math.log(eps) * (1 - eps) ** 0.5, rtol=1e-14)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_sigmoid_focal_reductions(reduction):
    rng = np.random.default_rng(16)
    z = rng.normal(0, 2, 50)
    t = targets(rng, 50, "hard")
    w = rng.uniform(0.2, 3.0, 50)
    kw = {"gamma": 2.0, "alpha": 0.25, "sample_weight": w, "reduction": reduction}
    value, grad, hess = ref.sigmoid_focal(z, t, **kw)
    l, g, h = ref.sigmoid_focal_terms(z, t, gamma=2.0, alpha=0.25)
    scale = w / w.sum() if reduction == "mean" else w
    expected = {"none": w * l, "sum": np.sum(w * l), "mean": np.sum(w * l) / np.sum(w)}[reduction]
    np.testing.assert_allclose(value, expected, rtol=1e-13)
    np.testing.assert_allclose(grad, scale * g, rtol=1e-13)
    np.testing.assert_allclose(hess, scale * h, rtol=1e-13)
    if reduction != "none":
        # the gradient is of the reduced value
        def reduced(v, i):
            zz = z.copy()
            zz[i] = v
            return ref.sigmoid_focal(zz, t, **kw)[0]

        for i in (0, 7, 31):
            fd = central_difference(np.vectorize(lambda v, i=i: reduced(v, i)), np.array(z[i]), 1e-4)
            assert grad[i] == pytest.approx(float(fd), rel=1e-7, abs=1e-11)
    # policies
    _, _, hc = ref.sigmoid_focal(z, t, hessian="clip", hess_floor=1e-3, reduction=reduction,
                                 sample_weight=w)
    np.testing.assert_allclose(hc, scale * np.maximum(h, 1e-3), rtol=1e-13)
    _, _, ha = ref.sigmoid_focal(z, t, hessian="abs", reduction=reduction, sample_weight=w)
    np.testing.assert_allclose(ha, scale * np.abs(h), rtol=1e-13)


def test_sigmoid_focal_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(17)
    z = rng.normal(0, 3, 300)
    for t in (targets(rng, 300, "hard"), targets(rng, 300, "soft")):
        for gamma, alpha in ((2.0, 0.25), (0.5, 0.7), (5.0, None), (1.0, -1)):
            zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
            tt = torch.tensor(t, dtype=torch.float64)
            # torchvision.ops.sigmoid_focal_loss, written with torch ops
            p = torch.sigmoid(zt)
            ce = torch.nn.functional.binary_cross_entropy_with_logits(zt, tt, reduction="none")
            p_t = p * tt + (1 - p) * (1 - tt)
            loss = ce * (1 - p_t) ** gamma
            if alpha is not None and alpha >= 0:
                loss = (alpha * tt + (1 - alpha) * (1 - tt)) * loss
            (g,) = torch.autograd.grad(loss.sum(), zt, create_graph=True)
            (h,) = torch.autograd.grad(g.sum(), zt)
            value, grad, hess = ref.sigmoid_focal_terms(z, t, gamma=gamma, alpha=alpha)
            np.testing.assert_allclose(value, loss.detach().numpy(), rtol=1e-10, atol=1e-15)
            np.testing.assert_allclose(grad, g.detach().numpy(), rtol=1e-9, atol=1e-14)
            np.testing.assert_allclose(hess, h.numpy(), rtol=1e-8, atol=1e-13)


def test_sigmoid_focal_against_optax():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    enable_x64 = getattr(jax, "enable_x64", None)  # jax >= 0.7; jax.experimental before
    if enable_x64 is None:
        from jax.experimental import enable_x64

    rng = np.random.default_rng(18)
    z = rng.normal(0, 3, 300)
    with enable_x64(True):
        for t in (targets(rng, 300, "hard"), targets(rng, 300, "soft")):
            for gamma, alpha in ((2.0, 0.25), (0.5, None), (5.0, 0.7)):

                def f(v, t=t, gamma=gamma, alpha=alpha):
                    return optax.sigmoid_focal_loss(v, t, alpha=alpha, gamma=gamma)

                zj = jax.numpy.asarray(z, dtype=jax.numpy.float64)
                value = np.asarray(f(zj))
                grad_fn = jax.grad(lambda v, f=f: f(v).sum())
                grad = np.asarray(grad_fn(zj))
                hess = np.asarray(jax.grad(lambda v, g=grad_fn: g(v).sum())(zj))
                mine = ref.sigmoid_focal_terms(z, t, gamma=gamma, alpha=alpha)
                np.testing.assert_allclose(mine[0], value, rtol=1e-10, atol=1e-15)
                np.testing.assert_allclose(mine[1], grad, rtol=1e-9, atol=1e-14)
                np.testing.assert_allclose(mine[2], hess, rtol=1e-8, atol=1e-13)


# --------------------------------------------------------------------------
# sigmoid_power_cross_entropy
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n", POWERS)
def test_power_derivatives(n):
    rng = np.random.default_rng(20)
    z = np.concatenate([rng.normal(0, 4, 400), [-30.0, -10.0, 0.0, 10.0, 30.0]])
    t = rng.uniform(0, 1, z.size)
    t[:100] = np.round(t[:100])
    fn = lambda v, i: ref.sigmoid_power_terms(v, t, n=n)[i]
    _, grad, hess = ref.sigmoid_power_terms(z, t, n=n)
    np.testing.assert_allclose(grad, central_difference(lambda v: fn(v, 0), z, 1e-4),
                               rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(hess, central_difference(lambda v: fn(v, 1), z, 1e-4),
                               rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("n", POWERS)
def test_power_against_naive_formula(n):
    rng = np.random.default_rng(21)
    z = rng.normal(0, 2, 400)
    t = rng.uniform(0, 1, 400)
    p = naive_sigmoid(z)
    expected = -(t * np.log(p ** n) + (1 - t) * np.log(1 - p ** n))
    value, _, _ = ref.sigmoid_power_terms(z, t, n=n)
    np.testing.assert_allclose(value, expected, rtol=1e-9)


def test_power_one_is_bce():
    rng = np.random.default_rng(22)
    z = np.concatenate([rng.normal(0, 5, 400), EXTREMES])
    t = rng.uniform(0, 1, z.size)
    mine = ref.sigmoid_power_terms(z, t, n=1.0)
    theirs = ref_ce.sigmoid_ce_terms(z, t)
    for a, b in zip(mine, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("n", (0.5, 1.0, 4.0, 3.7))
def test_power_finite_and_convex_at_extremes(n):
    z = np.repeat(np.concatenate([EXTREMES, [-745.5, 745.5, 709.0, 36.0, 37.5]]), 3)
    t = np.tile([0.0, 1.0, 0.3], z.size // 3)
    for fisher in (False, True):
        value, grad, hess = ref.sigmoid_power_terms(z, t, n=n, fisher=fisher)
        for a in (value, grad, hess):
            assert np.all(np.isfinite(a))
        assert np.all(hess >= 0.0)
    # asymptotes: l -> (1 - t)(z - log n) for z -> +inf, n t |z| for z -> -inf
    value, grad, _ = ref.sigmoid_power_terms(np.array([1e4, -1e4]), np.array([0.0, 1.0]), n=n)
    np.testing.assert_allclose(value, [1e4 - math.log(n), n * 1e4], rtol=1e-15)
    np.testing.assert_allclose(grad, [1.0, -n], rtol=1e-12)


def test_power_convex_on_grid():
    z = np.linspace(-60, 60, 12001)
    for n in POWERS:
        for tv in (0.0, 0.5, 1.0):
            assert np.all(ref.sigmoid_power_terms(z, np.full_like(z, tv), n=n)[2] >= 0.0)


def test_power_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 160  # 1 - p^n ~ e^-300 must survive
    step = mpmath.mpf("1e-30")  # differences at 160 digits: error ~ step^2, far below 1e-16
    z = np.array([-300.0, -50.0, -7.5, -1.0, 0.0, 0.3, 2.0, 9.0, 25.0, 38.0, 60.0, 300.0])

    def loss(zv, tv, n):
        p = 1 / (1 + mpmath.exp(-zv))
        return -tv * n * mpmath.log(p) - (1 - tv) * mpmath.log1p(-(p ** n))

    for n in (0.5, 2.0, 3.7):
        for tv in (0.0, 1.0, 0.3):
            value, grad, hess = ref.sigmoid_power_terms(z, np.full_like(z, tv), n=n)
            for i, zi in enumerate(z):
                f = lambda v, tv=tv, n=n: loss(v, mpmath.mpf(tv), mpmath.mpf(n))
                zm = mpmath.mpf(zi)
                assert value[i] == pytest.approx(float(f(zm)), rel=1e-13, abs=1e-300)
                assert grad[i] == pytest.approx(float(mpmath.diff(f, zm, 1, h=step)), rel=1e-12, abs=1e-300)
                assert hess[i] == pytest.approx(float(mpmath.diff(f, zm, 2, h=step)), rel=1e-10, abs=1e-300)


def test_power_fisher():
    rng = np.random.default_rng(23)
    z = rng.normal(0, 3, 200)
    t = rng.uniform(0, 1, 200)
    # n = 1: the Bernoulli Fisher information p (1 - p) = the exact Hessian
    p = naive_sigmoid(z)
    np.testing.assert_allclose(ref.sigmoid_power_terms(z, t, n=1.0, fisher=True)[2],
                               p * (1 - p), rtol=1e-10)
    # in general the exact Hessian at t = p^n (the Hessian is linear in t)
    for n in (0.5, 3.7):
        h = ref.sigmoid_power_terms(z, t, n=n, fisher=True)[2]
        np.testing.assert_allclose(h, ref.sigmoid_power_terms(z, p ** n, n=n)[2], rtol=1e-10)


def test_power_reductions():
    rng = np.random.default_rng(24)
    z = rng.normal(0, 2, 40)
    t = targets(rng, 40, "hard")
    w = rng.uniform(0.5, 2.0, 40)
    l, g, h = ref.sigmoid_power_terms(z, t, n=3.0)
    value, grad, hess = ref.sigmoid_power_cross_entropy(z, t, n=3.0, reduction="mean",
                                                        sample_weight=w)
    assert value == pytest.approx(np.sum(w * l) / np.sum(w), rel=1e-13)
    np.testing.assert_allclose(grad, w * g / w.sum(), rtol=1e-13)
    np.testing.assert_allclose(hess, w * h / w.sum(), rtol=1e-13)


# --------------------------------------------------------------------------
# softmax_focal
# --------------------------------------------------------------------------


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


SOFTMAX_CASES = [
    {},
    {"alpha": 0.25},
    {"alpha": "array"},
    {"class_weight": "array", "label_smoothing": 0.1},
    {"alpha": "array", "class_weight": "array", "label_smoothing": 0.2},
]


def _materialise(kw, rng, k):
    out = dict(kw)
    for key in ("alpha", "class_weight"):
        if out.get(key) == "array":
            out[key] = rng.uniform(0.2, 2.0, k)
    return out


@pytest.mark.parametrize("case", range(len(SOFTMAX_CASES)))
@pytest.mark.parametrize("form", ["index", "proba"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_focal_derivatives(gamma, form, case):
    rng = np.random.default_rng(30 + case)
    n, k = 12, 5
    x = rng.normal(0, 2, (n, k))
    x[0] = [8.0, -3.0, 0.0, 1.0, -8.0]  # one confident row
    if form == "index":
        target = rng.integers(0, k, n)
        target[3] = -100
        target[0] = 0
    else:
        target = rng.dirichlet(np.ones(k), n)
    kw = _materialise(SOFTMAX_CASES[case], rng, k)
    kw["gamma"] = gamma
    _, grad, hess, _, kept = ref.softmax_focal_rows(x, target, **kw)
    g_fd = row_difference(lambda v: ref.softmax_focal_rows(v, target, **kw)[0], x)
    np.testing.assert_allclose(grad, g_fd, rtol=1e-7, atol=1e-10)
    h_fd = np.zeros_like(x)
    for j in range(k):
        e = np.zeros_like(x)
        e[:, j] = 1e-4
        gj = lambda v, j=j: ref.softmax_focal_rows(v, target, **kw)[1][:, j]
        h_fd[:, j] = (-gj(x + 2 * e) + 8 * gj(x + e) - 8 * gj(x - e) + gj(x - 2 * e)) / 12e-4
    np.testing.assert_allclose(hess, h_fd, rtol=1e-6, atol=1e-9)
    if form == "index":
        assert not kept[3] and np.all(grad[3] == 0) and np.all(hess[3] == 0)


@pytest.mark.parametrize("form", ["index", "proba"])
def test_softmax_focal_gamma0_is_cross_entropy(form):
    rng = np.random.default_rng(40)
    n, k = 20, 4
    x = rng.normal(0, 3, (n, k))
    target = rng.integers(0, k, n) if form == "index" else rng.dirichlet(np.ones(k), n)
    c = rng.uniform(0.5, 2.0, k)
    alpha = rng.uniform(0.1, 1.0, k)
    eps = 0.15
    value, grad, hess, _, _ = ref.softmax_focal_rows(x, target, gamma=0.0, alpha=alpha,
                                                     class_weight=c, label_smoothing=eps)
    # written out: -sum_k alpha_k c_k q_k log p_k
    t = np.eye(k)[target] if form == "index" else target
    q = (1 - eps) * t + eps / k
    w = alpha * c * q
    p = _softmax(x)
    np.testing.assert_allclose(value, -(w * np.log(p)).sum(axis=1), rtol=1e-11)
    a = w.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(grad, a * p - w, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(hess, a * p * (1 - p), rtol=1e-10)
    # alpha acts as class weights alpha_k c_k: the cross-entropy reference agrees
    theirs = ref_ce.softmax_ce_rows(x, target, class_weight=alpha * c, label_smoothing=eps)
    for mine, other in zip((value, grad, hess), theirs[:3]):
        np.testing.assert_allclose(mine, other, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_focal_against_naive_formula(gamma):
    rng = np.random.default_rng(41)
    n, k = 30, 6
    x = rng.normal(0, 2, (n, k))
    y = rng.integers(0, k, n)
    p = _softmax(x)
    py = p[np.arange(n), y]
    value, _, _, _, _ = ref.softmax_focal_rows(x, y, gamma=gamma, alpha=0.25)
    np.testing.assert_allclose(value, -0.25 * (1 - py) ** gamma * np.log(py), rtol=1e-10)
    # alpha scalar and array of equal entries agree; a scalar scales everything
    a = ref.softmax_focal_rows(x, y, gamma=gamma, alpha=np.full(k, 0.25))
    b = ref.softmax_focal_rows(x, y, gamma=gamma, alpha=0.25)
    c = ref.softmax_focal_rows(x, y, gamma=gamma, alpha=None)
    for i in range(3):
        np.testing.assert_array_equal(a[i], b[i])
        np.testing.assert_allclose(b[i], 0.25 * c[i], rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_focal_finite_at_extremes(gamma):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0], [1e4, 1e4, -1e4], [0.0, 0.0, 0.0],
                  [800.0, -800.0, 0.0]])
    for target in (np.array([0, 0, 2, 1, 1]), _softmax(np.array([[1.0, 2.0, 0.0]] * 5))):
        for kw in ({}, {"alpha": 0.25, "label_smoothing": 0.1}):
            for hessian in ("exact", "fisher"):
                value, grad, hess = ref.softmax_focal(x, target, gamma=gamma, hessian=hessian, **kw)
                for a in (value, grad, hess):
                    assert np.all(np.isfinite(a)), (gamma, target, kw, hessian)
    value, grad, _ = ref.softmax_focal(x[:2], np.array([0, 0]), gamma=gamma)
    assert value[0] == 0.0 and value[1] == 2e4
    np.testing.assert_array_equal(grad[1], [-1.0, 1.0, 0.0])


@pytest.mark.parametrize("form", ["index", "proba"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_softmax_focal_reductions_and_ignore(form, reduction):
    rng = np.random.default_rng(42)
    n, k = 10, 4
    x = rng.normal(0, 2, (n, k))
    y = rng.integers(0, k - 1, n)  # class 3 only where ignored below
    y[[2, 5]] = 3 if form == "proba" else -100
    ignore = 3 if form == "proba" else -100
    target = y if form == "index" else np.eye(k)[y]
    if form == "proba":
        target[0] = rng.dirichlet(np.ones(k))
    c = np.array([0.5, 2.0, 1.0, 1.5])
    sw = rng.uniform(0.5, 2.0, n)
    kw = {"gamma": 2.0, "alpha": 0.25, "class_weight": c, "ignore_index": ignore}
    value, grad, hess = ref.softmax_focal(x, target, reduction=reduction, sample_weight=sw, **kw)
    l, g, h, _, kept = ref.softmax_focal_rows(x, target, **kw)
    assert not kept[2] and not kept[5] and kept.sum() == n - 2
    assert l[2] == 0.0 and np.all(g[5] == 0.0) and np.all(h[5] == 0.0)
    denom_w = sw * (c[np.where(kept, y, 0)] if form == "index" else 1.0) * kept
    scale = sw / denom_w.sum() if reduction == "mean" else sw
    expected = {"none": sw * l, "sum": np.sum(sw * l), "mean": np.sum(sw * l) / denom_w.sum()}
    np.testing.assert_allclose(value, expected[reduction], rtol=1e-13)
    np.testing.assert_allclose(grad, scale[:, None] * g, rtol=1e-13)
    np.testing.assert_allclose(hess, scale[:, None] * h, rtol=1e-13)
    if reduction == "mean":
        # the gradient is of the mean
        def mean_at(v):
            return ref.softmax_focal(v, target, reduction="mean", sample_weight=sw, **kw)[0]

        for i, j in ((0, 1), (4, 3), (5, 0)):
            e = np.zeros_like(x)
            e[i, j] = 1e-4
            fd = (-mean_at(x + 2 * e) + 8 * mean_at(x + e) - 8 * mean_at(x - e)
                  + mean_at(x - 2 * e)) / 12e-4
            assert grad[i, j] == pytest.approx(fd, rel=1e-7, abs=1e-11)


def test_softmax_focal_all_ignored():
    x = np.zeros((3, 4))
    value, grad, hess = ref.softmax_focal(x, np.full(3, -100), reduction="mean")
    assert math.isnan(value)
    assert np.all(grad == 0.0) and np.all(hess == 0.0)


def test_softmax_focal_fisher():
    rng = np.random.default_rng(43)
    x = rng.normal(0, 2, (8, 5))
    y = rng.integers(0, 5, 8)
    p = _softmax(x)
    # gamma = 0, no weights: the exact Hessian p (1 - p), whatever the target
    _, _, h = ref.softmax_focal(x, y, gamma=0.0, hessian="fisher")
    np.testing.assert_allclose(h, p * (1 - p), rtol=1e-10)
    # gamma > 0: sum over classes c of p_c times the Hessian with target c
    _, _, h = ref.softmax_focal(x, y, gamma=2.0, alpha=0.25, hessian="fisher")
    expected = sum(p[:, [c]] * ref.softmax_focal(x, np.full(8, c), gamma=2.0, alpha=0.25)[2]
                   for c in range(5))
    np.testing.assert_allclose(h, expected, rtol=1e-12)


def test_softmax_focal_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(44)
    n, k = 6, 4
    x = rng.normal(0, 2, (n, k))
    for gamma in (0.5, 2.0, 5.0):
        for target in (rng.integers(0, k, n), rng.dirichlet(np.ones(k), n)):
            alpha = rng.uniform(0.2, 1.0, k)
            xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            t = np.eye(k)[target] if target.dtype.kind == "i" else target
            q = torch.tensor(0.9 * t + 0.1 / k, dtype=torch.float64)
            at = torch.tensor(alpha, dtype=torch.float64)

            def loss_fn(v, qq=q, at=at, gamma=gamma):
                # rows of v against rows of q; the multiclass focal loss with torch ops
                log_p = torch.log_softmax(v, dim=-1)
                return -(at * qq * (1 - log_p.exp()) ** gamma * log_p).sum(dim=-1)

            loss = loss_fn(xt)
            (g,) = torch.autograd.grad(loss.sum(), xt)
            hdiag = np.stack([
                np.diag(torch.autograd.functional.hessian(
                    lambda r, i=i, f=loss_fn, q=q: f(r.unsqueeze(0), q[i:i + 1])[0],
                    xt[i].detach()).numpy())
                for i in range(n)])
            value, grad, hess, _, _ = ref.softmax_focal_rows(
                x, target, gamma=gamma, alpha=alpha, label_smoothing=0.1)
            np.testing.assert_allclose(value, loss.detach().numpy(), rtol=1e-10)
            np.testing.assert_allclose(grad, g.numpy(), rtol=1e-9, atol=1e-13)
            np.testing.assert_allclose(hess, hdiag, rtol=1e-8, atol=1e-12)


def test_log1mexp():
    x = np.array([-1e-300, -1e-20, -1e-5, -0.5, -math.log(2.0), -1.0, -40.0, -800.0])
    expected = [math.log(-math.expm1(v)) if v > -0.7 else math.log1p(-math.exp(v)) for v in x]
    np.testing.assert_allclose(ref.log1mexp(x), expected, rtol=1e-15)
    assert ref.log1mexp(np.array([0.0]))[0] == -np.inf

