"""The margin and ranking losses against external oracles, where installed: PyTorch
(hinge_embedding_loss, multi_margin_loss, margin_ranking_loss, autograd), scikit-learn
(hinge_loss) and optax (hinge_loss, multiclass_hinge_loss, jax.grad).

Each oracle computes in float64 on the same arrays, with data kept away from the kinks so
that every library's subgradient choice agrees. PyTorch's multilabel_soft_margin_loss is a
different loss (a mean of per-class binary cross-entropies), not compared with
multilabel_softmax_cross_entropy.
"""

from __future__ import annotations

import fastloss as fl
import numpy as np
import pytest

RTOL = 1e-12
REDUCTIONS = ("none", "sum", "mean")


def close(actual, desired, rtol=RTOL, what=""):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(desired, dtype=np.float64), rtol=rtol, atol=1e-13,
                               err_msg=what)


def scores_grid(rng, shape):
    # Off the kinks: differences of grid points (multiples of 0.0075) stay 0.0025 away from
    # the margins 0.5 and 1 (0.3 is a multiple: margin_ranking's x2 is offset by 0.001).
    return np.round(rng.normal(0, 1.5, shape) / 0.0075) * 0.0075 + 0.003


# --------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hinge_vs_torch_hinge_embedding_loss(reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = scores_grid(rng, 200)
    # hinge_embedding_loss(x, y = -1, margin) = max(0, margin - x) = hinge(x, +1, margin);
    # for y = +1 it is x itself, not a hinge, so only y = -1 is compared.
    xt = torch.tensor(x, requires_grad=True)
    want = torch.nn.functional.hinge_embedding_loss(xt, -torch.ones(200, dtype=torch.float64),
                                                    margin=0.5, reduction=reduction)
    want.sum().backward()
    v, g = fl.hinge.value_and_grad(x, np.ones(200), margin=0.5, reduction=reduction)
    close(v, want.detach().numpy())
    close(g, xt.grad.numpy())


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", (1, 2))
@pytest.mark.parametrize("weighted", (False, True))
def test_weston_watkins_vs_torch_multi_margin_loss(reduction, p, weighted):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2 + p)
    n, k = 60, 7
    s = scores_grid(rng, (n, k))
    y = rng.integers(0, k, n)
    c = rng.uniform(0.5, 2.0, k) if weighted else None
    st = torch.tensor(s, requires_grad=True)
    want = torch.nn.functional.multi_margin_loss(
        st, torch.tensor(y), p=p, margin=0.5, reduction=reduction,
        weight=None if c is None else torch.tensor(c))
    want.sum().backward()
    kw = {"kind": "weston_watkins", "p": p, "margin": 0.5, "class_weight": c, "reduction": reduction}
    v, g = fl.multiclass_hinge.value_and_grad(s, y, **kw)
    if reduction == "mean" and weighted:
        # PyTorch's weighted mean divides by N; fastloss's by the sum of the class weights
        # of the rows (docs/losses.md).
        scale = np.sum(c[y]) / n
        close(v * scale, want.detach().numpy())
        close(g * scale, st.grad.numpy())
    else:
        close(v, want.detach().numpy())
        close(g, st.grad.numpy())


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_margin_ranking_vs_torch(reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x1, x2 = scores_grid(rng, 300), scores_grid(rng, 300) + 0.001
    y = rng.choice(np.array([-1.0, 1.0]), 300)
    a = torch.tensor(x1, requires_grad=True)
    b = torch.tensor(x2, requires_grad=True)
    want = torch.nn.functional.margin_ranking_loss(a, b, torch.tensor(y), margin=0.3,
                                                   reduction=reduction)
    want.sum().backward()
    v, (g1, g2) = fl.margin_ranking.value_and_grad(x1, x2, y, margin=0.3, reduction=reduction)
    close(v, want.detach().numpy())
    close(g1, a.grad.numpy())
    close(g2, b.grad.numpy())


def test_multilabel_soft_margin_is_a_different_loss():
    torch = pytest.importorskip("torch")
    s = np.array([[2.0, -1.0, 0.5]])
    t = np.array([[1.0, 0.0, 0.0]])
    theirs = float(torch.nn.functional.multilabel_soft_margin_loss(torch.tensor(s), torch.tensor(t)))
    ours = float(fl.multilabel_softmax_cross_entropy(s, t)[0])
    assert abs(theirs - ours) > 0.1


# --------------------------------------------------------------------------
# scikit-learn
# --------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", (False, True))
def test_hinge_vs_sklearn_binary(weighted):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    f = scores_grid(rng, 400)
    t = rng.integers(0, 2, 400)
    w = rng.uniform(0.5, 2, 400) if weighted else None
    want = metrics.hinge_loss(t, f, sample_weight=w)
    close(fl.hinge(f, t, reduction="mean", sample_weight=w), want)
    close(fl.hinge(f, 2 * t - 1, reduction="mean", sample_weight=w), want)


@pytest.mark.parametrize("weighted", (False, True))
def test_crammer_singer_vs_sklearn_multiclass(weighted):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(8)
    n, k = 300, 6
    s = scores_grid(rng, (n, k))
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)
    w = rng.uniform(0.5, 2, n) if weighted else None
    want = metrics.hinge_loss(y, s, labels=np.arange(k), sample_weight=w)
    close(fl.multiclass_hinge(s, y, reduction="mean", sample_weight=w), want)


# --------------------------------------------------------------------------
# optax
# --------------------------------------------------------------------------


def _jax():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jax.config.update("jax_enable_x64", True)
    return jax, optax


def test_hinge_vs_optax():
    jax, optax = _jax()
    rng = np.random.default_rng(9)
    f = scores_grid(rng, 500)
    y = rng.choice(np.array([-1.0, 1.0]), 500)
    loss = getattr(optax, "hinge_loss", None) or optax.losses.hinge_loss
    want = np.asarray(loss(f, y))
    grad = np.asarray(jax.grad(lambda a: loss(a, y).sum())(f))
    v, g = fl.hinge.value_and_grad(f, y)
    close(v, want)
    close(g, grad)


def test_multiclass_hinge_vs_optax():
    jax, optax = _jax()
    rng = np.random.default_rng(10)
    s = rng.normal(0, 1.5, (200, 9))  # no ties: JAX splits the gradient of a tied max
    y = rng.integers(0, 9, 200)
    loss = getattr(optax, "multiclass_hinge_loss", None) or optax.losses.multiclass_hinge_loss
    want = np.asarray(loss(s, y))
    grad = np.asarray(jax.grad(lambda a: loss(a, y).sum())(s))
    v, g = fl.multiclass_hinge.value_and_grad(s, y)
    close(v, want)
    close(g, grad)
