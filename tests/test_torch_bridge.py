"""fastloss.torch: autograd functions and modules against torch's own losses, and a few
optimiser steps."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fastloss as fl  # noqa: E402
import fastloss.torch as flt  # noqa: E402


def tensors(rng, shape, dtype=torch.float64, requires_grad=True):
    return torch.tensor(rng.standard_normal(shape) * 2, dtype=dtype, requires_grad=requires_grad)


def value_and_grad(fn, x, *args, **kw):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, *args, **kw)
    out.backward(torch.ones_like(out) if out.ndim else None)
    return out.detach(), x.grad


# torch's counterpart of each loss, for the reductions torch has
ORACLES = {
    "squared_error": lambda x, t, reduction: F.mse_loss(x, t, reduction=reduction),
    "absolute_error": lambda x, t, reduction: F.l1_loss(x, t, reduction=reduction),
    "huber": lambda x, t, reduction: F.huber_loss(x, t, reduction=reduction, delta=1.0),
    "log_cosh": lambda x, t, reduction: getattr(torch.log(torch.cosh(x - t)), reduction)()
    if reduction != "none" else torch.log(torch.cosh(x - t)),
    "sigmoid_cross_entropy": lambda x, t, reduction: F.binary_cross_entropy_with_logits(
        x, t, reduction=reduction),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("name", sorted(ORACLES))
def test_elementwise_matches_torch(name, reduction, dtype, rng):
    x = tensors(rng, (300, 3), dtype)
    if name == "sigmoid_cross_entropy":
        t = torch.tensor((rng.random((300, 3)) < 0.3).astype(np.float64), dtype=dtype)
    else:
        t = tensors(rng, (300, 3), dtype, requires_grad=False)
    got_v, got_g = value_and_grad(flt.losses[name], x, t, reduction=reduction)
    want_v, want_g = value_and_grad(ORACLES[name], x, t, reduction)
    assert got_v.dtype == dtype and got_v.shape == want_v.shape
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_v, want_v, **tol)
    torch.testing.assert_close(got_g, want_g, **tol)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_softmax_cross_entropy_matches_torch(reduction, rng):
    x = tensors(rng, (200, 7))
    y = torch.tensor(rng.integers(0, 7, 200))
    y[::9] = -100
    w = torch.tensor(rng.uniform(0.5, 2.0, 7))
    kw = dict(reduction=reduction, class_weight=w, label_smoothing=0.1)
    got_v, got_g = value_and_grad(flt.softmax_cross_entropy, x, y, **kw)
    want_v, want_g = value_and_grad(F.cross_entropy, x, y, weight=w, reduction=reduction,
                                    label_smoothing=0.1)
    torch.testing.assert_close(got_v, want_v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_g, want_g, rtol=1e-10, atol=1e-12)


def test_module_classes_and_weights(rng):
    x = tensors(rng, 500)
    t = torch.tensor((rng.random(500) < 0.2).astype(np.float64))
    sw = torch.tensor(rng.uniform(0.5, 2.0, 500))
    module = flt.SigmoidCrossEntropy(pos_weight=torch.tensor(3.0))
    assert isinstance(module, torch.nn.Module)
    assert "sigmoid_cross_entropy" in repr(module)
    got_v, got_g = value_and_grad(lambda a, b: module(a, b, sample_weight=sw), x, t)
    want = fl.sigmoid_cross_entropy.value_and_grad(x.detach().numpy(), t.numpy(), pos_weight=3.0,
                                                   sample_weight=sw.numpy(), reduction="mean")
    torch.testing.assert_close(got_v, torch.tensor(want[0]))
    torch.testing.assert_close(got_g, torch.from_numpy(want[1]))
    assert isinstance(flt.Module("huber", delta=0.5), torch.nn.Module)
    with pytest.raises(TypeError, match="deltaa"):
        flt.Huber(deltaa=0.5)


def test_zero_copy_and_fused_gradient(rng, monkeypatch):
    seen = {}
    loss = fl.losses["log_cosh"]
    original = type(loss).value_and_grad

    def spy(self, pred, target, **kw):
        seen["pred"], seen["calls"] = pred, seen.get("calls", 0) + 1
        return original(self, pred, target, **kw)

    monkeypatch.setattr(type(loss), "value_and_grad", spy)
    monkeypatch.setattr(type(loss), "grad", lambda *a, **k: pytest.fail("second pass"))
    base = torch.tensor(rng.standard_normal((64, 8)))
    x = base[:, ::2].requires_grad_(True)  # a strided view: still no copy
    out = flt.log_cosh(x, torch.zeros(64, 4, dtype=torch.float64))
    out.backward()
    assert seen["calls"] == 1
    assert np.shares_memory(seen["pred"], base.numpy())
    torch.testing.assert_close(x.grad, torch.tanh(x.detach()) / x.numel())


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_broadcast_input_gradient(reduction, rng):
    # One prediction per row against several targets per row; backward with a non-uniform
    # incoming gradient for "none".
    x = tensors(rng, (50, 1))
    t = tensors(rng, (50, 4), requires_grad=False)
    out = flt.huber(x, t, reduction=reduction, delta=0.7)
    # The oracle on an explicitly expanded input (torch warns about implicit broadcasting).
    want = F.huber_loss(x.expand(50, 4), t, reduction=reduction, delta=0.7)
    go = torch.tensor(rng.uniform(0.5, 2.0, tuple(out.shape)))
    (g_got,) = torch.autograd.grad(out, x, go)
    (g_want,) = torch.autograd.grad(want, x, go)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-14)


def test_no_grad_path_and_half_precision(rng):
    x = tensors(rng, 100, torch.float32, requires_grad=False)
    t = tensors(rng, 100, torch.float32, requires_grad=False)
    v = flt.squared_error(x, t)
    assert not v.requires_grad
    h = x.to(torch.float16).requires_grad_(True)
    out = flt.squared_error(h, t.to(torch.float16), reduction="sum")
    out.backward()
    assert out.dtype == torch.float16 and h.grad.dtype == torch.float16


def test_bad_inputs(rng):
    x = tensors(rng, 10)
    with pytest.raises(ValueError, match="target requires grad"):
        flt.squared_error(x, tensors(rng, 10))
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        flt.squared_error(np.zeros(10), torch.zeros(10))
    with pytest.raises(ValueError, match="reduction"):
        flt.squared_error(x, torch.zeros(10), reduction="avg")
    with pytest.raises(ValueError, match="shape|broadcast"):
        flt.squared_error(x, torch.zeros(11, dtype=torch.float64))


def test_optimiser_steps_reduce_the_loss(rng):
    torch.manual_seed(0)
    X = torch.tensor(rng.standard_normal((2_000, 10)))
    true_w = torch.tensor(rng.standard_normal(10))
    y = (X @ true_w + 0.3 * torch.tensor(rng.standard_normal(2_000)) > 0).to(torch.float64)
    model = torch.nn.Linear(10, 1, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    crit = flt.SigmoidCrossEntropy()
    losses, oracle = [], []
    for _ in range(20):
        opt.zero_grad()
        z = model(X).squeeze(-1)
        loss = crit(z, y)
        oracle.append(float(F.binary_cross_entropy_with_logits(z.detach(), y)))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses == pytest.approx(oracle, rel=1e-12)
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("shapes", [((6,), (6,)), ((1,), (6,)), ((6,), ())],
                         ids=["same", "x1-broadcast", "x2-scalar"])
def test_margin_ranking_differentiates_both_inputs_as_torch(reduction, shapes, rng):
    y = torch.tensor(np.where(rng.random(6) < 0.5, -1.0, 1.0))
    x1 = tensors(rng, shapes[0])
    x2 = tensors(rng, shapes[1])
    got = flt.margin_ranking(x1, x2, y, reduction=reduction, margin=0.25)
    (got.sum() if reduction == "none" else got).backward()
    a = x1.detach().clone().requires_grad_(True)
    b = x2.detach().clone().requires_grad_(True)
    want = F.margin_ranking_loss(a.expand(6), b.expand(6), y, margin=0.25, reduction=reduction)
    (want.sum() if reduction == "none" else want).backward()
    assert torch.allclose(got.double(), want, rtol=1e-12, atol=0)
    assert x1.grad.shape == x1.shape and x2.grad.shape == x2.shape
    assert torch.allclose(x1.grad, a.grad, rtol=1e-12, atol=0)
    assert torch.allclose(x2.grad, b.grad, rtol=1e-12, atol=0)


def test_margin_ranking_module_weights_and_gradcheck(rng):
    x1, x2 = tensors(rng, 5), tensors(rng, 5)
    y = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    w = torch.tensor(rng.uniform(0.5, 2.0, 5))
    module = flt.MarginRanking(margin=0.5, reduction="sum")
    got = module(x1, x2, y, sample_weight=w).detach()
    want = (w * torch.clamp(0.5 - y * (x1 - x2), min=0)).sum().detach()
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    assert torch.autograd.gradcheck(
        lambda a, b: flt.margin_ranking(a, b, y, reduction="none", margin=0.3),
        (x1.detach().clone().requires_grad_(True), x2.detach().clone().requires_grad_(True)))
    with pytest.raises(TypeError, match="input1, input2 and target"):
        module(x1, x2)


def test_margin_ranking_promotes_mixed_dtypes_and_module_refuses_two_weights(rng):
    a = tensors(rng, 4, dtype=torch.float32)
    b = tensors(rng, 4, dtype=torch.float64)
    y = torch.ones(4, dtype=torch.float64)
    got = flt.margin_ranking(a, b, y, reduction="sum")
    assert got.dtype == F.margin_ranking_loss(a.detach(), b.detach(), y, reduction="sum").dtype
    got.backward()
    assert a.grad.dtype == torch.float32 and b.grad.dtype == torch.float64
    m = flt.Huber()
    x, t = tensors(rng, 3), torch.zeros(3, dtype=torch.float64)
    with pytest.raises(TypeError, match="sample_weight given twice"):
        m(x, t, torch.ones(3), sample_weight=torch.ones(3))


@pytest.mark.parametrize("name", ["squared_error", "log_cosh", "softmax_cross_entropy"])
def test_second_derivatives_are_an_error_not_zeros(name, rng):
    """The losses are differentiated once: building a graph of the gradient (double backward,
    torch.autograd.functional.hessian) raises instead of giving zeros."""
    if name == "softmax_cross_entropy":
        x = torch.tensor(rng.standard_normal((4, 3)), requires_grad=True)
        t = torch.tensor(rng.integers(0, 3, 4))
    else:
        x = torch.tensor(rng.standard_normal(5), requires_grad=True)
        t = torch.tensor(rng.standard_normal(5))
    f = getattr(flt, name)
    with pytest.raises(RuntimeError, match="differentiated once"):
        torch.autograd.grad(f(x, t, reduction="sum"), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiated once"):
        torch.autograd.functional.hessian(lambda z: f(z, t, reduction="sum"), x.detach())
    # The first derivative is unchanged.
    (g,) = torch.autograd.grad(f(x, t, reduction="sum"), x)
    np.testing.assert_allclose(g.numpy(), fl.losses[name].grad(x.detach().numpy(), t.numpy(),
                                                               reduction="sum"), rtol=1e-12)
