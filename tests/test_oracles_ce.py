"""The cross-entropy losses against external oracles, where installed:
PyTorch (cross_entropy, binary_cross_entropy_with_logits, autograd),
scikit-learn (log_loss) and JAX / optax.

Each oracle computes in float64 on the same arrays; gradients come from the
oracle's automatic differentiation, Hessian diagonals from its second-order
differentiation.
"""

from __future__ import annotations

import contextlib

import fastloss as fl
import numpy as np
import pytest

SIGMOID = fl.sigmoid_cross_entropy
SOFTMAX = fl.softmax_cross_entropy
RTOL = 1e-12
REDUCTIONS = ("none", "sum", "mean")


def close(actual, desired, rtol=RTOL, what=""):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(desired, dtype=np.float64), rtol=rtol, atol=1e-14,
                               err_msg=what)


def softmax_np(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def multiclass_data(seed, n=12, k=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, size=(n, k))
    y = rng.integers(0, k, size=n)
    m = min(n, k)
    y[:m] = np.arange(m)
    t = rng.dirichlet(np.full(k, 0.8), size=n)
    c = rng.uniform(0.3, 3.0, size=k)
    sw = rng.uniform(0.5, 2.0, size=n)
    return x, y, t, c, sw


def binary_data(seed, shape=(10, 4)):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.5, size=shape)
    t = (rng.uniform(size=shape) < 0.4).astype(np.float64)
    soft = rng.uniform(size=shape) < 0.2
    t[soft] = rng.uniform(size=int(soft.sum()))
    pw = rng.uniform(0.5, 3.0, size=shape[-1])
    sw = rng.uniform(0.5, 2.0, size=shape)
    return z, t, pw, sw


# --------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def torch_ce(torch, x, target, reduction, **kw):
    """(value, grad of the returned value's sum) from torch.nn.functional.cross_entropy."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(target)
    if "weight" in kw and kw["weight"] is not None:
        kw["weight"] = torch.tensor(kw["weight"], dtype=torch.float64)
    if tt.is_floating_point():
        tt = tt.to(torch.float64)
    out = torch.nn.functional.cross_entropy(xt, tt, reduction=reduction, **kw)
    out.sum().backward()
    return out.detach().numpy(), xt.grad.numpy()


TORCH_CE_OPTIONS = {
    "plain": {},
    "weight": {"weight": True},
    "smoothing": {"label_smoothing": 0.2},
    "weight_smoothing": {"weight": True, "label_smoothing": 0.1},
    "ignore": {"ignore_index": 2},
    "everything": {"weight": True, "label_smoothing": 0.15, "ignore_index": 0},
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", list(TORCH_CE_OPTIONS), ids=str)
def test_torch_cross_entropy_index(torch, options, reduction):
    x, y, _, c, _ = multiclass_data(1)
    opts = dict(TORCH_CE_OPTIONS[options])
    ignore = opts.get("ignore_index", -100)
    y = y.copy()
    y[[5, 9]] = ignore  # some ignored rows
    tkw = {"label_smoothing": opts.get("label_smoothing", 0.0), "ignore_index": ignore}
    fkw = {"label_smoothing": opts.get("label_smoothing", 0.0), "ignore_index": ignore}
    if opts.get("weight"):
        tkw["weight"] = c
        fkw["class_weight"] = c
    want_v, want_g = torch_ce(torch, x, y, reduction, **tkw)
    v, g = SOFTMAX.value_and_grad(x, y, reduction=reduction, **fkw)
    close(v, want_v, what="value")
    close(g, want_g, what="grad")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", ["plain", "weight", "smoothing", "weight_smoothing"])
def test_torch_cross_entropy_probabilities(torch, options, reduction):
    x, _, t, c, _ = multiclass_data(2)
    opts = TORCH_CE_OPTIONS[options]
    tkw = {"label_smoothing": opts.get("label_smoothing", 0.0)}
    fkw = dict(tkw)
    if opts.get("weight"):
        tkw["weight"] = c
        fkw["class_weight"] = c
    want_v, want_g = torch_ce(torch, x, t, reduction, **tkw)
    v, g = SOFTMAX.value_and_grad(x, t, reduction=reduction, **fkw)
    close(v, want_v, what="value")
    close(g, want_g, what="grad")


def test_torch_cross_entropy_sample_weight(torch):
    """PyTorch has no sample weight: weight its per-row losses by hand."""
    x, y, _, c, sw = multiclass_data(3)
    y = y.copy()
    y[4] = -100
    xt = torch.tensor(x, requires_grad=True)
    rows = torch.nn.functional.cross_entropy(xt, torch.tensor(y), weight=torch.tensor(c),
                                             reduction="none", label_smoothing=0.1)
    sw_t = torch.tensor(sw)
    keep = torch.tensor(y != -100, dtype=torch.float64)
    cy = torch.tensor(c[np.where(y < 0, 0, y)])
    mean = (sw_t * rows).sum() / (sw_t * cy * keep).sum()
    mean.backward()
    v, g = SOFTMAX.value_and_grad(x, y, class_weight=c, label_smoothing=0.1, sample_weight=sw,
                                  reduction="mean")
    close(v, mean.item(), what="value")
    close(g, xt.grad.numpy(), what="grad")


def test_torch_cross_entropy_higher_dims(torch):
    """Class axis last in fastloss, second in PyTorch."""
    rng = np.random.default_rng(4)
    x = rng.normal(0, 2, size=(3, 4, 6))
    y = rng.integers(0, 6, size=(3, 4))
    xt = torch.tensor(np.moveaxis(x, -1, 1).copy(), requires_grad=True)
    out = torch.nn.functional.cross_entropy(xt, torch.tensor(y), reduction="mean",
                                            label_smoothing=0.05)
    out.backward()
    v, g = SOFTMAX.value_and_grad(x, y, reduction="mean", label_smoothing=0.05)
    close(v, out.item())
    close(g, np.moveaxis(xt.grad.numpy(), 1, -1))


@pytest.mark.parametrize("target", ["index", "prob"])
def test_torch_hessian_diagonal(torch, target):
    x, y, t, c, sw = multiclass_data(5, n=4, k=5)
    tgt = y if target == "index" else t
    tt = torch.tensor(tgt)
    kw = {"weight": torch.tensor(c), "label_smoothing": 0.1}

    def total(xx):
        rows = torch.nn.functional.cross_entropy(xx, tt, reduction="none", **kw)
        return (torch.tensor(sw) * rows).sum()

    hess = torch.autograd.functional.hessian(total, torch.tensor(x)).reshape(x.size, x.size)
    want = torch.diagonal(hess).numpy().reshape(x.shape)
    _, h = SOFTMAX.grad_hess(x, tgt, class_weight=c, label_smoothing=0.1, sample_weight=sw,
                             reduction="sum")
    close(h, want, what="hess")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", ["plain", "pos_weight", "weight", "everything"])
def test_torch_bce_with_logits(torch, options, reduction):
    z, t, pw, sw = binary_data(6)
    tkw, fkw = {}, {}
    if options in ("pos_weight", "everything"):
        tkw["pos_weight"] = torch.tensor(pw)  # one per column, broadcast over rows
        fkw["pos_weight"] = pw
    weighted = options in ("weight", "everything")
    if weighted:
        tkw["weight"] = torch.tensor(sw)
        fkw["sample_weight"] = sw
    zt = torch.tensor(z, requires_grad=True)
    out = torch.nn.functional.binary_cross_entropy_with_logits(zt, torch.tensor(t),
                                                               reduction=reduction, **tkw)
    out.sum().backward()
    want_v, want_g = out.detach().numpy(), zt.grad.numpy()
    v, g = SIGMOID.value_and_grad(z, t, reduction=reduction, **fkw)
    if reduction == "mean" and weighted:
        # PyTorch's mean divides by the element count, fastloss's by sum(weight).
        scale = sw.sum() / sw.size
        v, g = v * scale, g * scale
    close(v, want_v, what="value")
    close(g, want_g, what="grad")


def test_torch_bce_label_smoothing_and_hessian(torch):
    """Binary smoothing t' = t (1 - eps) + eps / 2 is BCE on the smoothed target."""
    z, t, pw, sw = binary_data(7, shape=(6, 3))
    eps = 0.2
    ts = torch.tensor(t * (1 - eps) + eps / 2)

    def total(zz):
        return torch.nn.functional.binary_cross_entropy_with_logits(
            zz, ts, weight=torch.tensor(sw), pos_weight=torch.tensor(pw), reduction="sum")

    zt = torch.tensor(z, requires_grad=True)
    out = total(zt)
    out.backward()
    hess = torch.autograd.functional.hessian(total, torch.tensor(z)).reshape(z.size, z.size)
    v, g = SIGMOID.value_and_grad(z, t, label_smoothing=eps, pos_weight=pw, sample_weight=sw,
                                  reduction="sum")
    _, h = SIGMOID.grad_hess(z, t, label_smoothing=eps, pos_weight=pw, sample_weight=sw,
                             reduction="sum")
    close(v, out.item())
    close(g, zt.grad.numpy())
    close(h, torch.diagonal(hess).numpy().reshape(z.shape))


def test_torch_bce_probabilities(torch):
    rng = np.random.default_rng(8)
    q = rng.uniform(0.01, 0.99, size=(8, 3))
    t = (rng.uniform(size=(8, 3)) < 0.5).astype(np.float64)
    sw = rng.uniform(0.5, 2.0, size=(8, 3))
    qt = torch.tensor(q, requires_grad=True)
    out = torch.nn.functional.binary_cross_entropy(qt, torch.tensor(t), weight=torch.tensor(sw),
                                                   reduction="sum")
    out.backward()
    v, g = SIGMOID.value_and_grad(q, t, from_logits=False, sample_weight=sw, reduction="sum")
    close(v, out.item())
    close(g, qt.grad.numpy())


def test_torch_nll_of_probabilities(torch):
    """softmax_cross_entropy(from_logits=False) is nll_loss of log(p)."""
    x, y, _, c, _ = multiclass_data(9)
    p = softmax_np(x)
    pt = torch.tensor(p, requires_grad=True)
    out = torch.nn.functional.nll_loss(torch.log(pt), torch.tensor(y), weight=torch.tensor(c),
                                       reduction="mean")
    out.backward()
    v, g = SOFTMAX.value_and_grad(p, y, from_logits=False, class_weight=c, reduction="mean")
    close(v, out.item())
    close(g, pt.grad.numpy())


# --------------------------------------------------------------------------
# scikit-learn log_loss
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log_loss():
    metrics = pytest.importorskip("sklearn.metrics")
    return metrics.log_loss


@pytest.mark.parametrize("weighted", [False, True], ids=["sw_none", "sw_array"])
def test_sklearn_log_loss_binary(log_loss, weighted):
    rng = np.random.default_rng(10)
    y = (rng.uniform(size=200) < 0.3).astype(np.int64)
    y[:2] = [0, 1]
    z = rng.normal(0.0, 2.0, size=200)
    q = 1.0 / (1.0 + np.exp(-z))
    sw = rng.uniform(0.2, 3.0, size=200) if weighted else None
    want = log_loss(y, q, sample_weight=sw)
    # Probabilities ...
    close(SIGMOID(q, y.astype(np.float64), from_logits=False, reduction="mean", sample_weight=sw),
          want, rtol=1e-13)
    # ... or the logits they came from.
    close(SIGMOID(z, y.astype(np.float64), reduction="mean", sample_weight=sw), want, rtol=1e-13)
    # Two-column probabilities through the softmax loss.
    q2 = np.stack([1.0 - q, q], axis=1)
    close(SOFTMAX(q2, y, from_logits=False, reduction="mean", sample_weight=sw), want, rtol=1e-13)


@pytest.mark.parametrize("k", [3, 7])
@pytest.mark.parametrize("weighted", [False, True], ids=["sw_none", "sw_array"])
def test_sklearn_log_loss_multiclass(log_loss, k, weighted):
    rng = np.random.default_rng(11 + k)
    x = rng.normal(0.0, 2.0, size=(150, k))
    y = rng.integers(0, k, size=150)
    y[:k] = np.arange(k)
    p = softmax_np(x)
    sw = rng.uniform(0.2, 3.0, size=150) if weighted else None
    want = log_loss(y, p, sample_weight=sw, labels=np.arange(k))
    close(SOFTMAX(p, y, from_logits=False, reduction="mean", sample_weight=sw), want, rtol=1e-13)
    close(SOFTMAX(x, y, reduction="mean", sample_weight=sw), want, rtol=1e-13)
    # One-hot probability targets: the same mean.
    close(SOFTMAX(x, np.eye(k)[y], reduction="mean", sample_weight=sw), want, rtol=1e-13)
    # log_loss in bits is the same divided by ln 2.
    close(SOFTMAX(x, y, reduction="mean", sample_weight=sw, log_base=2), want / np.log(2),
          rtol=1e-13)


def test_sklearn_log_loss_textbook(log_loss):
    want = log_loss([0], [[0.5, 0.4, 0.1]], labels=[0, 1, 2])
    assert abs(want - 0.693147) < 1e-6
    close(SOFTMAX(np.array([[0.5, 0.4, 0.1]]), np.array([0]), from_logits=False, reduction="mean"),
          want)


# --------------------------------------------------------------------------
# JAX / optax
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jax():
    return pytest.importorskip("jax")


@contextlib.contextmanager
def x64(jax):
    """Float64 in JAX for the duration of a test (the switch moved between versions)."""
    if hasattr(jax, "enable_x64"):
        with jax.enable_x64(True):
            yield
        return
    try:
        from jax.experimental import enable_x64
    except ImportError:
        pytest.skip("this JAX has no scoped float64 switch")
    with enable_x64():
        yield


def test_optax_softmax_cross_entropy_with_integer_labels(jax):
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    x, y, _, _, _ = multiclass_data(12)
    with x64(jax):
        want = np.asarray(optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(x),
                                                                          jnp.asarray(y)))
        want_g = np.asarray(jax.grad(lambda v: optax.softmax_cross_entropy_with_integer_labels(
            v, jnp.asarray(y)).sum())(jnp.asarray(x)))
    v, g = SOFTMAX.value_and_grad(x, y)
    close(v, want)
    close(g, want_g)


def test_optax_softmax_cross_entropy_probabilities(jax):
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    x, _, t, _, _ = multiclass_data(13)
    with x64(jax):
        want = np.asarray(optax.softmax_cross_entropy(jnp.asarray(x), jnp.asarray(t)))
    close(SOFTMAX(x, t), want)


def test_optax_sigmoid_binary_cross_entropy(jax):
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    z, t, _, _ = binary_data(14)
    with x64(jax):
        want = np.asarray(optax.sigmoid_binary_cross_entropy(jnp.asarray(z), jnp.asarray(t)))
        want_g = np.asarray(jax.grad(lambda v: optax.sigmoid_binary_cross_entropy(
            v, jnp.asarray(t)).sum())(jnp.asarray(z)))
    v, g = SIGMOID.value_and_grad(z, t)
    close(v, want)
    close(g, want_g)


@pytest.mark.parametrize("target", ["index", "prob"])
def test_jax_softmax_grad_and_hessian(jax, target):
    """jax.nn.log_softmax with jax.grad and jax.hessian as the oracle."""
    import jax.numpy as jnp

    x, y, t, c, sw = multiclass_data(15, n=4, k=6)
    q = np.eye(6)[y] if target == "index" else t
    eps = 0.1
    q = (1 - eps) * q + eps / 6

    def total(v):
        rows = -(jnp.asarray(c) * jnp.asarray(q) * jax.nn.log_softmax(v, axis=-1)).sum(axis=-1)
        return (jnp.asarray(sw) * rows).sum()

    with x64(jax):
        xj = jnp.asarray(x)
        want_v = float(total(xj))
        want_g = np.asarray(jax.grad(total)(xj))
        hess = np.asarray(jax.hessian(total)(xj)).reshape(x.size, x.size)
    tgt = y if target == "index" else t
    kw = {"class_weight": c, "label_smoothing": eps, "sample_weight": sw, "reduction": "sum"}
    v, g = SOFTMAX.value_and_grad(x, tgt, **kw)
    _, h = SOFTMAX.grad_hess(x, tgt, **kw)
    close(v, want_v)
    close(g, want_g)
    close(h, np.diagonal(hess).reshape(x.shape))


def test_jax_sigmoid_grad_and_hessian(jax):
    import jax.numpy as jnp

    z, t, pw, sw = binary_data(16, shape=(5, 4))

    def total(v):
        return (jnp.asarray(sw) * (jnp.asarray(pw) * jnp.asarray(t) * jax.nn.softplus(-v)
                                   + (1 - jnp.asarray(t)) * jax.nn.softplus(v))).sum()

    with x64(jax):
        zj = jnp.asarray(z)
        want_v = float(total(zj))
        want_g = np.asarray(jax.grad(total)(zj))
        hess = np.asarray(jax.hessian(total)(zj)).reshape(z.size, z.size)
    kw = {"pos_weight": pw, "sample_weight": sw, "reduction": "sum"}
    v, g = SIGMOID.value_and_grad(z, t, **kw)
    _, h = SIGMOID.grad_hess(z, t, **kw)
    close(v, want_v)
    close(g, want_g)
    close(h, np.diagonal(hess).reshape(z.shape))
