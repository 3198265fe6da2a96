"""fastloss.torch for the pairwise ranking losses (pairwise_logistic, pairwise_hinge): values
and gradients against a pure-torch reference differentiated by torch.autograd, the module
forms, the dtypes, bad input and a few optimiser steps."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fastloss as fl  # noqa: E402
import fastloss.torch as flt  # noqa: E402

NAMES = ["pairwise_logistic", "pairwise_hinge"]
# Group sizes with an empty group (first and last too) and a group of one document.
SIZES = [0, 7, 1, 12, 0, 20, 0]
QIDS = [11, 2, 9, 5, 3]


def reference(s, r, groups, *, name, scale, pair_weight="uniform", sample_weight=None,
              reduction="mean", value_per="group"):
    """The loss from its formula, one group at a time, in plain torch (autograd gives the
    gradient). groups: the documents of each group (index tensors), in the loss's order."""
    group_values = []
    per_doc = s.new_zeros(s.shape)
    for g, idx in enumerate(groups):
        ss, rr = s[idx], r[idx].to(s.dtype)
        d = ss[:, None] - ss[None, :]  # d[i, j] = s_i - s_j
        if name == "pairwise_logistic":
            f = F.softplus(-scale * d)
        else:
            f = torch.relu(scale - d)
        if pair_weight == "relevance_difference":
            f = f * (rr[:, None] - rr[None, :]).abs()
        pair = torch.where(rr[:, None] > rr[None, :], f, torch.zeros_like(f))
        wg = 1.0 if sample_weight is None else sample_weight[g]
        group_values.append(wg * pair.sum())
        # value_per="document": each pair's loss split evenly between its two documents
        per_doc = per_doc.index_add(0, idx, wg * 0.5 * (pair.sum(1) + pair.sum(0)))
    values = torch.stack(group_values) if group_values else s.new_zeros(0)
    if reduction == "none":
        return values if value_per == "group" else per_doc
    if reduction == "sum":
        return values.sum()
    denom = len(groups) if sample_weight is None else sample_weight.sum()
    return values.sum() / denom


def groups_of_sizes(sizes):
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    return [torch.arange(bounds[g], bounds[g + 1]) for g in range(len(sizes))]


def groups_of_qid(qid):
    qid = torch.as_tensor(qid)
    return [torch.nonzero(qid == q).flatten() for q in torch.unique(qid)]  # ascending qid


def case(rng, grouping, dtype):
    """(scores, relevance, grouping keywords, the reference's groups)."""
    if grouping == "group":
        n = sum(SIZES)
        kw = {"group": torch.tensor(SIZES)}
        groups = groups_of_sizes(SIZES)
        relevance = torch.tensor(rng.integers(0, 4, n), dtype=dtype)  # float relevance
    else:  # unsorted query ids, given as a NumPy array
        qid = rng.permutation(np.repeat(QIDS, [6, 9, 1, 13, 8]))
        n = qid.size
        kw = {"qid": qid}
        groups = groups_of_qid(qid)
        relevance = torch.tensor(rng.integers(0, 4, n))  # integer relevance
    scores = torch.tensor(rng.standard_normal(n) * 1.5, dtype=dtype)
    return scores, relevance, kw, groups


def tolerances(dtype):
    if dtype == torch.float64:
        return dict(rtol=1e-10, atol=1e-12)
    return dict(rtol=2e-5, atol=2e-5)


def params_of(name):
    return ("sigma", 0.7) if name == "pairwise_logistic" else ("margin", 1.3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("value_per", ["group", "document"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("grouping", ["group", "qid"])
@pytest.mark.parametrize("pair_weight", ["uniform", "relevance_difference"])
@pytest.mark.parametrize("name", NAMES)
def test_matches_torch_reference(name, pair_weight, grouping, reduction, value_per, weighted,
                                 dtype, rng):
    scores, relevance, kw, groups = case(rng, grouping, dtype)
    key, scale = params_of(name)
    sw = torch.tensor(rng.uniform(0.5, 2.0, len(groups)), dtype=dtype) if weighted else None
    x = scores.clone().requires_grad_(True)
    got = flt.losses[name](x, relevance, reduction=reduction, sample_weight=sw,
                           pair_weight=pair_weight, value_per=value_per, **{key: scale}, **kw)
    x64 = scores.double().requires_grad_(True)
    want = reference(x64, relevance, groups, name=name, scale=scale, pair_weight=pair_weight,
                     sample_weight=None if sw is None else sw.double(), reduction=reduction,
                     value_per=value_per)
    assert got.dtype == dtype and got.shape == want.shape
    # The incoming gradient: any vector for one loss per group; for one loss per document
    # the same value within each group (the case the bridge differentiates, see below).
    if reduction != "none":
        go = torch.tensor(1.7, dtype=torch.float64)
    elif value_per == "group":
        go = torch.tensor(rng.uniform(-2.0, 2.0, len(groups)))
    else:
        per_group = torch.tensor(rng.uniform(-2.0, 2.0, len(groups)))
        go = torch.zeros(len(scores), dtype=torch.float64)
        for g, idx in enumerate(groups):
            go[idx] = per_group[g]
    (g_got,) = torch.autograd.grad(got, x, go.to(dtype))
    (g_want,) = torch.autograd.grad(want, x64, go)
    assert g_got.dtype == dtype
    torch.testing.assert_close(got, want.to(dtype), **tolerances(dtype))
    torch.testing.assert_close(g_got, g_want.to(dtype), **tolerances(dtype))


@pytest.mark.parametrize("name", NAMES)
def test_group_values_gradcheck(name, rng):
    # Per-group values: torch's gradcheck feeds arbitrary incoming gradients.
    key, scale = params_of(name)
    sizes = [4, 0, 5, 3]
    s = torch.tensor(rng.standard_normal(12), requires_grad=True)
    r = torch.tensor(rng.integers(0, 3, 12))
    w = torch.tensor(rng.uniform(0.5, 2.0, 4))
    assert torch.autograd.gradcheck(
        lambda a: flt.losses[name](a, r, group=sizes, reduction="none", sample_weight=w,
                                   **{key: scale}), (s,))


def test_document_values_with_uneven_incoming_gradient_raise(rng):
    scores, relevance, kw, groups = case(rng, "qid", torch.float64)
    x = scores.clone().requires_grad_(True)
    out = flt.pairwise_logistic(x, relevance, reduction="none", value_per="document", **kw)
    go = torch.ones_like(out)
    k = int(groups[2][1])
    go[k] = 2.0  # a different value inside one group (the third, 13 documents)
    with pytest.raises(ValueError, match=f"value_per='document'.*group 2 .*document {k}\\)"):
        out.backward(go)
    # Weighting whole groups is exact, and the same as value_per="group".
    per_group = torch.tensor(rng.uniform(0.5, 2.0, len(groups)))
    doc_go = torch.zeros_like(out)
    for g, idx in enumerate(groups):
        doc_go[idx] = per_group[g]
    x.grad = None
    flt.pairwise_logistic(x, relevance, reduction="none", value_per="document",
                          **kw).backward(doc_go)
    by_document = x.grad.clone()
    x.grad = None
    flt.pairwise_logistic(x, relevance, reduction="none", **kw).backward(per_group)
    torch.testing.assert_close(by_document, x.grad, rtol=1e-12, atol=1e-14)


def test_groups_as_lists_arrays_and_tensors(rng):
    scores, relevance, _, _ = case(rng, "group", torch.float64)
    qid = np.repeat(np.arange(len(SIZES)), SIZES)
    want = flt.pairwise_hinge(scores, relevance, group=SIZES, reduction="none")
    for kw in ({"group": np.array(SIZES)}, {"group": torch.tensor(SIZES, dtype=torch.int32)},
               {"qid": torch.tensor(qid)}):
        got = flt.pairwise_hinge(scores, relevance, reduction="none", **kw)
        if "qid" in kw:  # a qid makes no empty groups
            want_q = want[torch.tensor(SIZES) > 0]
            torch.testing.assert_close(got, want_q, rtol=0, atol=0)
        else:
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    # Neither: all documents form one group.
    one = flt.pairwise_hinge(scores, relevance, reduction="sum")
    want_one = reference(scores, relevance, [torch.arange(len(scores))], name="pairwise_hinge",
                         scale=1.0, reduction="sum")
    torch.testing.assert_close(one, want_one, rtol=1e-12, atol=1e-12)


def test_numpy_loss_called_once_zero_copy(rng, monkeypatch):
    calls = []
    cls = type(fl.pairwise_logistic)
    original = cls.value_and_grad

    def spy(self, pred, target, **kw):
        calls.append(pred)
        return original(self, pred, target, **kw)

    base = torch.tensor(rng.standard_normal(60))
    x = base[::2].requires_grad_(True)  # a strided view: still no copy
    r = torch.tensor(rng.integers(0, 3, 30))
    want = fl.pairwise_logistic.grad(x.detach().numpy(), r.numpy(), group=[10, 20])
    monkeypatch.setattr(cls, "value_and_grad", spy)
    monkeypatch.setattr(cls, "grad", lambda *a, **k: pytest.fail("second pass"))
    flt.pairwise_logistic(x, r, group=[10, 20], reduction="none").sum().backward()
    assert len(calls) == 1
    assert np.shares_memory(calls[0], base.numpy())
    torch.testing.assert_close(x.grad, torch.from_numpy(want))
    # Without a gradient: the value only.
    monkeypatch.setattr(cls, "value_and_grad", lambda *a, **k: pytest.fail("gradient computed"))
    out = flt.pairwise_logistic(x.detach(), r, group=[10, 20])
    assert not out.requires_grad and out.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_precision_in_float32(dtype, rng):
    scores, relevance, kw, groups = case(rng, "group", torch.float32)
    h = scores.to(dtype).requires_grad_(True)
    out = flt.pairwise_logistic(h, relevance, reduction="sum", **kw)
    out.backward()
    assert out.dtype == dtype and h.grad.dtype == dtype
    x = h.detach().float().requires_grad_(True)
    want = flt.pairwise_logistic(x, relevance, reduction="sum", **kw)
    want.backward()
    assert out.item() == pytest.approx(want.item(), rel=1e-2)
    torch.testing.assert_close(h.grad, x.grad.to(dtype))


def test_modules(rng):
    scores, relevance, kw, groups = case(rng, "qid", torch.float64)
    sw = torch.tensor(rng.uniform(0.5, 2.0, len(groups)))
    want = flt.pairwise_logistic(scores, relevance, sigma=0.5, sample_weight=sw, **kw)
    module = flt.PairwiseLogistic(sigma=0.5)
    assert isinstance(module, torch.nn.Module) and "pairwise_logistic" in repr(module)
    assert module(scores, relevance, sw, **kw) == want  # sample_weight by position
    assert module(scores, relevance, sample_weight=sw, **kw) == want
    fixed = flt.Module("pairwise_logistic", sigma=0.5, **kw)  # groups fixed at construction
    assert fixed(scores, relevance, sample_weight=sw) == want
    hinge = flt.Module("pairwise_hinge", reduction="none", value_per="document", margin=0.4)
    x = scores.clone().requires_grad_(True)
    out = hinge(x, relevance, **kw)
    out.sum().backward()
    x64 = scores.clone().requires_grad_(True)
    ref = reference(x64, relevance, groups, name="pairwise_hinge", scale=0.4, reduction="none",
                    value_per="document")
    ref.sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, x64.grad, rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="groups are given twice"):
        fixed(scores, relevance, group=[len(scores)])
    with pytest.raises(TypeError, match="group= or qid="):
        flt.Huber()(scores, scores.detach(), group=[len(scores)])
    with pytest.raises(TypeError, match="unexpected keyword argument 'sigmaa'"):
        flt.PairwiseLogistic(sigmaa=1.0)


def test_empty_input_and_empty_groups():
    x = torch.zeros(0, dtype=torch.float64, requires_grad=True)
    r = torch.zeros(0)
    out = flt.pairwise_hinge(x, r, group=[0, 0], reduction="none")
    assert out.tolist() == [0.0, 0.0]
    out.backward(torch.ones(2, dtype=torch.float64))
    assert x.grad.shape == (0,)
    doc = flt.pairwise_hinge(x, r, reduction="none", value_per="document")
    assert doc.shape == (0,)
    doc.backward(torch.ones(0, dtype=torch.float64))
    assert flt.pairwise_hinge(x, r, group=[0, 0], reduction="sum").item() == 0.0


def test_bad_inputs(rng):
    s = torch.tensor(rng.standard_normal(6), requires_grad=True)
    r = torch.tensor([2.0, 0.0, 1.0, 1.0, 0.0, 3.0])
    with pytest.raises(ValueError, match="relevance requires grad"):
        flt.pairwise_logistic(s, r.clone().requires_grad_(True), group=[3, 3])
    with pytest.raises(ValueError, match="sample_weight requires grad"):
        flt.pairwise_logistic(s, r, group=[3, 3],
                              sample_weight=torch.ones(2, dtype=torch.float64,
                                                       requires_grad=True))
    with pytest.raises(ValueError, match="group sizes sum to 5"):
        flt.pairwise_logistic(s, r, group=torch.tensor([3, 2]))
    with pytest.raises(ValueError, match="group sizes must be >= 0"):
        flt.PairwiseHinge()(s, r, group=[7, -1])
    with pytest.raises(ValueError, match="qid must hold one query id per document"):
        flt.pairwise_logistic(s, r, qid=torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="group= .* or qid="):
        flt.pairwise_logistic(s, r, group=[6], qid=np.zeros(6, dtype=int))
    with pytest.raises(ValueError, match="sample_weight holds one weight per group"):
        flt.pairwise_logistic(s, r, group=[3, 3], sample_weight=torch.ones(3))
    with pytest.raises(ValueError, match="scores must be one-dimensional"):
        flt.pairwise_logistic(s.detach().reshape(2, 3), r)
    with pytest.raises(ValueError, match="relevance must have one entry per document"):
        flt.pairwise_logistic(s, r[:5])
    with pytest.raises(TypeError, match="scores must be a torch.Tensor"):
        flt.pairwise_logistic(s.detach().numpy(), r)
    with pytest.raises(ValueError, match="value_per"):
        flt.pairwise_logistic(s, r, value_per="pair")


def test_unsupported_kind_refused():
    # Every registered loss is bridged now; a loss of another kind is still refused by name.
    class Fake:
        name, kind = "fake", "listwise"

    with pytest.raises(ValueError, match="fake is of kind 'listwise'"):
        flt._check_loss(Fake())


@pytest.mark.parametrize("name", NAMES)
def test_sgd_steps_reduce_the_loss(name, rng):
    torch.manual_seed(0)
    n_queries, per_query = 40, 15
    qid = rng.permutation(np.repeat(np.arange(100, 100 + n_queries), per_query))
    X = torch.tensor(rng.standard_normal((qid.size, 6)))
    true_w = torch.tensor(rng.standard_normal(6))
    latent = X @ true_w + 0.3 * torch.tensor(rng.standard_normal(qid.size))
    relevance = torch.bucketize(latent, torch.tensor([-1.0, 0.0, 1.0]))  # grades 0..3
    groups = groups_of_qid(qid)
    model = torch.nn.Linear(6, 1, bias=False, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    crit = flt.Module(name)
    losses, oracle = [], []
    for _ in range(15):
        opt.zero_grad()
        scores = model(X).squeeze(-1)
        loss = crit(scores, relevance, qid=torch.tensor(qid))
        oracle.append(float(reference(scores.detach(), relevance, groups, name=name, scale=1.0)))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses == pytest.approx(oracle, rel=1e-12)
    assert losses[-1] < 0.6 * losses[0]
