"""pairwise_logistic and pairwise_hinge against tests/reference_margin.py.

Groups by sizes and by query ids (sorted and unsorted), per-group and per-document values,
pair weighting, every reduction x weighting x dtype x ISA path x thread count, finite
differences away from the hinge's kinks, NaN policies and bad input.
"""

from __future__ import annotations

import functools
import zlib

import fastloss as fl
import numpy as np
import pytest
import reference_margin as ref

DTYPES = (np.float32, np.float64)
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
REDUCTIONS = ("none", "sum", "mean")
LOSSES = {"pairwise_logistic": ("logistic", "sigma", 1.0),
          "pairwise_hinge": ("hinge", "margin", 1.0)}


def rounded(x, dtype):
    return np.asarray(x).astype(dtype).astype(np.float64)


def assert_close(actual, desired, rtol, what=""):
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, what
    assert np.array_equal(np.isnan(actual), np.isnan(desired)), f"{what}: NaN placement"
    ok = ~np.isnan(desired)
    if not ok.any():
        return
    scale = float(np.max(np.abs(desired[ok]))) + 1e-300
    err = np.abs(actual[ok] - desired[ok])
    assert np.all(err <= rtol * (np.abs(desired[ok]) + scale)), f"{what}: max err {err.max():.3g}"


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def ranking_data(rng, sizes, dtype, levels=4):
    n = int(np.sum(sizes))
    # Scores on a grid of step 0.0075: differences are multiples of it, at least 0.0025 away
    # from the hinge's kinks (margin 1 or 0.5), also after rounding to float32.
    scores = (np.round(rng.normal(0, 1.5, n) / 0.0075) * 0.0075 + 0.003).astype(dtype)
    rel = rng.integers(0, levels, n).astype(dtype)  # ties included
    return scores, rel


def groups_of(sizes):
    ends = np.cumsum(sizes)
    return [np.arange(e - s, e) for s, e in zip(sizes, ends)]


def expected(raw, groups, n, reduction, w, value_per):
    """Reference (value, grad, hess) of a call from ref.pairwise's raw sums."""
    per_group, per_doc, grad, hess = raw
    ng = len(groups)
    wg = np.ones(ng) if w is None else np.asarray(w, dtype=np.float64)
    wdoc = np.zeros(n)
    for g, idx in enumerate(groups):
        wdoc[idx] = wg[g]
    if reduction == "none":
        value = wg * per_group if value_per == "group" else wdoc * per_doc
        return value, wdoc * grad, wdoc * hess
    total = float(np.sum(wg * per_group))
    if reduction == "sum":
        return total, wdoc * grad, wdoc * hess
    d = float(np.sum(wg))
    return (np.nan if d == 0 else total / d), wdoc * grad / d, wdoc * hess / d


def matrix_params(name, weighted_):
    params = {"pair_weight": "relevance_difference"} if weighted_ else {}
    if name == "pairwise_logistic" and weighted_:
        params["sigma"] = 0.7
    return params


@functools.lru_cache(maxsize=None)
def matrix_case(sizes, dtype_name, weighted_):
    """Data of one matrix cell, shared by its reductions, ISA paths and both losses."""
    dtype = np.dtype(dtype_name)
    rng = np.random.default_rng(zlib.crc32(f"{sizes}-{dtype_name}-{weighted_}".encode()))
    s, r = ranking_data(rng, SIZES[sizes], dtype)
    w = rng.uniform(0.5, 2, len(SIZES[sizes])) if weighted_ else None
    return s, r, w


@functools.lru_cache(maxsize=None)
def matrix_reference(name, sizes, dtype_name, weighted_):
    s, r, w = matrix_case(sizes, dtype_name, weighted_)
    kind, pname, default = LOSSES[name]
    params = matrix_params(name, weighted_)
    kw = {pname: params.get(pname, default), "pair_weight": params.get("pair_weight", "uniform")}
    return ref.pairwise(rounded(s, dtype_name), rounded(r, dtype_name), groups_of(SIZES[sizes]),
                        kind=kind, **kw)


SIZES = {
    "empty": [],
    "single": [1],
    "ones": [1, 1, 1],
    "tails": [2, 3, 7, 8, 9, 15, 16, 17, 33, 0, 1],
    "hundred": [100] * 12,
    "uneven": [5, 200, 1, 64, 129, 2, 40],
}


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted_", (False, True), ids=("unweighted", "weights"))
@pytest.mark.parametrize("sizes", list(SIZES), ids=str)
def test_pairwise_matrix(name, dtype, reduction, weighted_, sizes, isa):
    loss = fl.losses[name]
    sz = SIZES[sizes]
    s, r, w = matrix_case(sizes, np.dtype(dtype).name, weighted_)
    raw = matrix_reference(name, sizes, np.dtype(dtype).name, weighted_)
    groups = groups_of(sz)
    params = matrix_params(name, weighted_)
    rtol = RTOL[np.dtype(dtype)]
    # float32 sums over a document's pairs (up to 200 here) in float32.
    if np.dtype(dtype) == np.float32:
        rtol = 1e-4
    wr = None if w is None else rounded(w, dtype)
    want = {vp: expected(raw, groups, s.size, reduction, wr, vp) for vp in ("group", "document")}
    first = {}
    for nt in (1, 2, 7):
        with fl.threads(nt):
            for value_per in ("group", "document"):
                kw = dict(params, group=np.array(sz, dtype=np.int64), reduction=reduction,
                          sample_weight=w, value_per=value_per)
                v = loss(s, r, **kw)
                v2, g = loss.value_and_grad(s, r, **kw)
                g2, h = loss.grad_hess(s, r, **kw)
                _, hc = loss.grad_hess(s, r, hessian="clip", **kw)
                ve, ge, he = want[value_per]
                res = (v, v2, g, g2, h, hc)
                if value_per in first:
                    assert all(same(a, b) for a, b in zip(first[value_per], res)), nt
                    continue
                first[value_per] = res
                if reduction == "none":
                    assert v.dtype == np.dtype(dtype)
                    assert_close(v, ve, rtol, "value")
                else:
                    assert isinstance(v, np.float64)
                    assert v == pytest.approx(ve, rel=rtol, nan_ok=True)
                assert_close(v2, v, rtol, "value_and_grad value")
                assert_close(g, ge, rtol, "grad")
                assert_close(g2, ge, rtol, "grad_hess grad")
                assert_close(h, he, rtol, "hess")
                # "clip": each document's Hessian raised to hess_floor before the weights.
                wdoc = np.ones(s.size) if w is None else np.repeat(wr, sz)
                if reduction == "mean":
                    wdoc = wdoc / (len(sz) if w is None else np.sum(wr))
                raw = np.divide(he, wdoc, out=np.zeros_like(he), where=wdoc != 0)
                assert_close(hc, np.maximum(raw, 1e-6) * wdoc, rtol, "hess clip")


def test_pairwise_hand_values():
    s = np.array([2.0, 1.0, 0.0])
    r = np.array([2, 0, 1])
    # Pairs (0 > 1), (0 > 2), (2 > 1): d = 1, 2, -1.
    sp = lambda d: np.log1p(np.exp(-d))
    v = fl.pairwise_logistic(s, r)
    assert v.tolist() == pytest.approx([sp(1) + sp(2) + sp(-1)])
    v = fl.pairwise_hinge(s, r, margin=1.5)
    assert v.tolist() == [0.5 + 0.0 + 2.5]
    g = fl.pairwise_hinge.grad(s, r, margin=1.5)
    assert g.tolist() == [-1.0, 2.0, -1.0]
    v = fl.pairwise_hinge(s, r, margin=1.5, pair_weight="relevance_difference")
    assert v.tolist() == [2 * 0.5 + 1 * 0.0 + 1 * 2.5]
    pd = fl.pairwise_hinge(s, r, margin=1.5, value_per="document")
    assert pd.tolist() == [0.25, 1.5, 1.25] and pd.sum() == 3.0


@pytest.mark.parametrize("name", list(LOSSES))
def test_qid_sorted_unsorted_and_sizes_agree(name, rng):
    loss = fl.losses[name]
    sizes = [3, 1, 8, 20, 2]
    s, r = ranking_data(rng, sizes, np.float64)
    qid_sorted = np.repeat(np.array([2, 5, 7, 11, 40]), sizes)
    a = loss.value_and_grad(s, r, group=sizes)
    b = loss.value_and_grad(s, r, qid=qid_sorted)
    assert same(a[0], b[0]) and same(a[1], b[1])
    perm = rng.permutation(s.size)
    c = loss.value_and_grad(s[perm], r[perm], qid=qid_sorted[perm])
    assert_close(c[0], a[0], 1e-12)  # groups in ascending qid either way
    assert_close(c[1], a[1][perm], 1e-12)  # gradients stay with their documents
    pd = loss(s[perm], r[perm], qid=qid_sorted[perm], value_per="document")
    assert_close(pd, loss(s, r, group=sizes, value_per="document")[perm], 1e-12)
    # No groups given: one group.
    assert loss(s, r).shape == (1,)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("reduction", ("sum", "mean"))
def test_pairwise_finite_differences(name, reduction, rng):
    loss = fl.losses[name]
    sizes = [6, 1, 9, 4]
    s, r = ranking_data(rng, sizes, np.float64)
    kw = {"group": sizes, "reduction": reduction, "sample_weight": rng.uniform(0.5, 2, 4),
              "pair_weight": "relevance_difference"}
    if name == "pairwise_hinge":
        kw["margin"] = 0.5
    g, h = loss.grad_hess(s, r, **kw)
    for i in range(s.size):
        def f(x, i=i):
            a = s.copy()
            a[i] = x
            return loss(a, r, **kw)

        def gf(x, i=i):
            a = s.copy()
            a[i] = x
            return loss.grad(a, r, **kw)[i]

        assert g[i] == pytest.approx(central(f, s[i], 1e-4), rel=1e-7, abs=1e-10)
        assert h[i] == pytest.approx(central(gf, s[i], 1e-4), rel=1e-6, abs=1e-9)


def central(f, x, h):
    return (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pairwise_extremes_finite(dtype, isa):
    s = np.array([1e4, -1e4, 0.0, 1e4, -1e4], dtype=dtype)
    r = np.array([0, 1, 2, 3, 0])
    for loss in (fl.pairwise_logistic, fl.pairwise_hinge):
        v, g = loss.value_and_grad(s, r)
        _, h = loss.grad_hess(s, r)
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))


def test_pairwise_nan_policies():
    s = np.array([1.0, np.nan, 0.0, 2.0, 0.5])
    r = np.array([1, 0, 0, 2, 1])
    sizes = [3, 2]
    v = fl.pairwise_logistic(s, r, group=sizes)
    assert np.isnan(v[0]) and not np.isnan(v[1])
    g = fl.pairwise_logistic.grad(s, r, group=sizes)
    assert np.isnan(g[0]) and np.isnan(g[1]) and np.isfinite(g[3])
    # omit: the NaN document takes part in no pair.
    vo, go = fl.pairwise_logistic.value_and_grad(s, r, group=sizes, nan_policy="omit")
    keep = np.array([0, 2, 3, 4])
    vk, gk = fl.pairwise_logistic.value_and_grad(s[keep], r[keep], group=[2, 2])
    assert_close(vo, vk, 1e-14)
    assert go[1] == 0 and np.allclose(go[keep], gk)
    w = np.array([np.nan, 2.0])
    m = fl.pairwise_logistic(s, r, group=sizes, sample_weight=w, nan_policy="omit",
                             reduction="mean")
    assert m == pytest.approx(float(vk[1]), rel=1e-14)
    with pytest.raises(ValueError, match=r"scores contains NaN \(first at index \(1,\)\)"):
        fl.pairwise_logistic(s, r, group=sizes, nan_policy="raise")


def test_pairwise_bad_input():
    s = np.zeros(5)
    r = np.zeros(5)
    loss = fl.pairwise_logistic
    with pytest.raises(ValueError, match="group sizes sum to 4, but scores holds 5"):
        loss(s, r, group=[2, 2])
    with pytest.raises(ValueError, match="group sizes must be >= 0"):
        loss(s, r, group=[6, -1])
    with pytest.raises(TypeError, match="group must hold integer"):
        loss(s, r, group=[2.0, 3.0])
    with pytest.raises(ValueError, match="not both"):
        loss(s, r, group=[5], qid=np.zeros(5, int))
    with pytest.raises(ValueError, match="qid must hold one query id per document"):
        loss(s, r, qid=np.zeros(4, int))
    with pytest.raises(TypeError, match="qid must hold integer"):
        loss(s, r, qid=np.zeros(5))
    with pytest.raises(ValueError, match="relevance must have one entry per document"):
        loss(s, r[:4])
    with pytest.raises(ValueError, match="scores must be one-dimensional"):
        loss(np.zeros((5, 1)), r)
    with pytest.raises(TypeError, match="scores must be a real array"):
        loss(np.array(["a"] * 5), r)
    with pytest.raises(ValueError, match="sigma"):
        loss(s, r, sigma=0.0)
    with pytest.raises(ValueError, match="pair_weight must be one of"):
        loss(s, r, pair_weight="gain")
    with pytest.raises(ValueError, match="value_per"):
        loss(s, r, value_per="pair")
    with pytest.raises(ValueError, match="sample_weight holds one weight per group"):
        loss(s, r, group=[2, 3], sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="hessian"):
        loss.grad_hess(s, r, hessian="fisher")
    with pytest.raises(TypeError, match="unexpected keyword argument 'margin'"):
        loss(s, r, margin=1.0)
    with pytest.raises(ValueError, match="out must have shape"):
        loss(s, r, group=[2, 3], out=np.zeros(5))
    with pytest.raises(ValueError, match="grad_out shares memory with scores"):
        fl.pairwise_hinge.value_and_grad(s, r, grad_out=s)


def test_pairwise_out_arrays(rng):
    s, r = ranking_data(rng, [4, 6], np.float64)
    out, gout, hout = np.empty(2), np.empty(10), np.empty(10)
    v, g = fl.pairwise_logistic.value_and_grad(s, r, group=[4, 6], out=out, grad_out=gout)
    assert v is out and g is gout
    g2, h = fl.pairwise_logistic.grad_hess(s, r, group=[4, 6], hess_out=hout)
    assert h is hout and same(g, g2)
    assert float(fl.pairwise_logistic(s, r, group=[4, 6], reduction="sum")) == pytest.approx(
        out.sum(), rel=1e-14)
    # Strided buffers are written as the other losses write them; a wrong dtype is a TypeError.
    big = np.full(20, np.nan)
    g3 = fl.pairwise_logistic.grad(s, r, group=[4, 6], out=big[::2])
    assert g3.base is big and same(big[::2], g) and np.all(np.isnan(big[1::2]))
    with pytest.raises(TypeError, match="out must have dtype float64"):
        fl.pairwise_logistic.grad(s, r, group=[4, 6], out=np.empty(10, np.float32))


def test_pairwise_large_group_thread_identity(rng):
    sizes = [3000, 2, 1500] + [50] * 200
    s, r = ranking_data(rng, sizes, np.float32, levels=5)
    res = []
    for nt in (1, 2, 7):
        with fl.threads(nt):
            res.append(fl.pairwise_logistic.value_and_grad(s, r, group=sizes, reduction="mean"))
    assert all(same(a[0], res[0][0]) and same(a[1], res[0][1]) for a in res)
