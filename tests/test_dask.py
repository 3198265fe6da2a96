"""fastloss.dask on a real dask.distributed LocalCluster (2 worker processes), compared with the
in-memory losses (themselves checked against tests/reference.py elsewhere)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastloss as fl  # noqa: E402
import fastloss.dask as fld  # noqa: E402
from fastloss._demo import DATA_GENERATORS  # noqa: E402

N = 20_011  # not a multiple of any chunk size below
K = 6


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cluster start-up chatter (ports, deprecations)
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=40)
        c = distributed.Client(cluster)
    try:
        assert len(c.scheduler_info()["workers"]) >= 2
        yield c
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c.close()
            cluster.close()


# Losses of (pred, target); margin_ranking and the pairwise losses have tests of their own below.
SUPPORTED = [name for name, loss in fl.losses.items() if loss.kind in ("elementwise", "rowwise")]


def inputs(name, dtype, rng):
    """In-memory (pred, target) for the loss, from the demo's per-family generators."""
    loss = fl.losses[name]
    if loss.kind == "rowwise":
        pred = (rng.standard_normal((N, K)) * 2).astype(dtype)
        if loss.family == "multilabel":  # 0/1 per class
            return pred, (rng.uniform(size=(N, K)) < 0.3).astype(dtype)
        target = rng.integers(0, K, N)
        return pred, target
    gen = DATA_GENERATORS[loss.family]
    args = gen(rng, N, np.dtype(dtype)).args
    return args[0], args[1]


def to_dask(x, rows_chunk):
    chunks = (rows_chunk,) + tuple(-1 for _ in range(x.ndim - 1))
    return da.from_array(x, chunks=chunks)


def close(a, b, scaled=False):
    """Reduced values: float64 sums of the same float64 partials, added in another order.
    Per-sample results: the same kernel on the same data, bit for bit, except derivatives of
    a mean, which the kernel scales inside its arithmetic and the blocks afterwards (a rounding
    apart)."""
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.shape == b.shape
    assert a.dtype == b.dtype
    if a.ndim == 0:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    elif scaled:
        # Relative to the largest entry: a softmax gradient p - q cancels in some entries, and
        # the focal kernels scale before summing their terms.
        tol = 64 * np.finfo(a.dtype).eps
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * float(np.max(np.abs(b))))
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", SUPPORTED)
def test_matches_in_memory(client, name, dtype, rng):
    """Value, grad, value_and_grad and grad_hess x reduction x weighting, computed on the
    cluster in one graph, against the in-memory loss."""
    loss, dloss = fl.losses[name], fld.losses[name]
    pred, target = inputs(name, dtype, rng)
    w = rng.uniform(0.25, 2.0, N)
    P, T = to_dask(pred, 3_001), to_dask(target, 2_500)  # misaligned chunks on purpose
    W = to_dask(w, 4_000)
    lazy, want, scaled = [], [], []
    for reduction in ("none", "sum", "mean"):
        for weighted in (False, True):
            kw = dict(reduction=reduction, sample_weight=w if weighted else None)
            dkw = dict(reduction=reduction, sample_weight=W if weighted else None)
            mean = reduction == "mean"
            v = dloss(P, T, **dkw)
            g = dloss.grad(P, T, **dkw)
            assert isinstance(v, da.Array) and isinstance(g, da.Array)
            assert g.shape == pred.shape
            vd, gd = dloss.value_and_grad(P, T, **dkw)
            gd2, hd = dloss.grad_hess(P, T, hessian="clip", hess_floor=1e-3, **dkw)
            lazy += [v, g, vd, gd, gd2, hd]
            want += [loss(pred, target, **kw), loss.grad(pred, target, **kw),
                     *loss.value_and_grad(pred, target, **kw),
                     *loss.grad_hess(pred, target, hessian="clip", hess_floor=1e-3, **kw)]
            scaled += [False, mean, False, mean, mean, mean]
    got = client.compute(lazy, sync=True)
    for a, b, sc in zip(got, want, scaled):
        close(a, b, sc)


@pytest.mark.parametrize("omit", [False, True], ids=["propagate", "omit"])
def test_binary_class_weight_balanced(client, rng, omit):
    pred, target = inputs("sigmoid_cross_entropy", np.float32, rng)
    w = rng.uniform(0.5, 2.0, N)
    if omit:
        pred[::97] = np.nan
    kw = dict(reduction="mean", sample_weight=w, class_weight="balanced",
              nan_policy="omit" if omit else "propagate")
    got = fld.sigmoid_cross_entropy(to_dask(pred, 1_000), to_dask(target, 1_000),
                                    **dict(kw, sample_weight=to_dask(w, 1_000))).compute()
    want = fl.sigmoid_cross_entropy(pred, target, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if not omit:
        assert np.isfinite(got)
    # Per-block counts would give other weights: the first pass counts the whole array.
    block = fl.sigmoid_cross_entropy(pred[:1_000], target[:1_000], reduction="sum",
                                     class_weight="balanced")
    assert fld.sigmoid_cross_entropy(to_dask(pred[:1_000], 100), to_dask(target[:1_000], 100),
                                     reduction="sum", class_weight="balanced"
                                     ).compute() == pytest.approx(block, rel=1e-12, nan_ok=True)


@pytest.mark.parametrize("target_kind", ["index", "probability"])
def test_multiclass_weights_ignore_index_smoothing(client, rng, target_kind):
    logits = rng.standard_normal((N, K)) * 3
    y = rng.integers(0, K, N)
    y[::13] = 2  # class 2 is ignored below
    target = y if target_kind == "index" else np.eye(K)[y]
    w = rng.uniform(0.5, 2.0, N)
    for params in (dict(class_weight="balanced", ignore_index=2),
                   dict(class_weight="auto", label_smoothing=0.1),
                   dict(class_weight={0: 2.0, 3: 0.5}, ignore_index=2)):
        kw = dict(reduction="mean", sample_weight=w, **params)
        got_v, got_g = fld.softmax_cross_entropy.value_and_grad(
            to_dask(logits, 1_777), to_dask(target, 1_777),
            **dict(kw, sample_weight=to_dask(w, 999)))
        want_v, want_g = fl.softmax_cross_entropy.value_and_grad(logits, target, **kw)
        got_v, got_g = client.compute([got_v, got_g], sync=True)
        np.testing.assert_allclose(got_v, want_v, rtol=1e-12)
        np.testing.assert_allclose(got_g, want_g, rtol=1e-12,
                                   atol=1e-14 * float(np.max(np.abs(want_g))))


def test_class_axis_split_is_rechunked(client, rng):
    logits = rng.standard_normal((1_000, 9))
    y = rng.integers(0, 9, 1_000)
    X = da.from_array(logits, chunks=(300, 4))
    assert len(X.chunks[1]) > 1
    g = fld.softmax_cross_entropy.grad(X, y)
    assert g.chunks[1] == (9,)
    np.testing.assert_array_equal(g.compute(), fl.softmax_cross_entropy.grad(logits, y))


def test_arrays_by_documented_keyword(client, rng):
    z = rng.normal(size=40)
    t = (rng.random(40) < 0.3).astype(np.float64)
    dz, dt = da.from_array(z, chunks=16), da.from_array(t, chunks=16)
    want = fl.sigmoid_focal.value_and_grad(z, t, reduction="mean")
    got = fld.sigmoid_focal.value_and_grad(logits=dz, target=dt, reduction="mean")
    assert float(got[0].compute()) == pytest.approx(want[0], rel=1e-12)
    np.testing.assert_allclose(got[1].compute(), want[1], rtol=1e-12)
    x = rng.normal(size=(12, 5))
    y = rng.integers(0, 5, 12)
    got = fld.softmax_cross_entropy(logits=da.from_array(x, chunks=(4, 5)),
                                    target=da.from_array(y, chunks=4), reduction="sum")
    assert float(got.compute()) == pytest.approx(
        fl.softmax_cross_entropy(x, y, reduction="sum"), rel=1e-12)
    with pytest.raises(TypeError, match="missing required argument 'logits'"):
        fld.sigmoid_focal(target=dt)


def test_numpy_inputs_and_broadcast_scalars(client, rng):
    pred = rng.standard_normal(5_000)
    assert float(fld.squared_error(pred, 0.5, reduction="sum").compute()) == pytest.approx(
        float(fl.squared_error(pred, 0.5, reduction="sum")), rel=1e-13)
    # A scalar prediction against many targets: its gradient sums over the broadcast.
    got = fld.squared_error.grad(np.float64(0.3), to_dask(pred, 999)).compute()
    want = fl.squared_error.grad(np.float64(0.3), pred)
    assert got.shape == want.shape == ()
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_nan_policies(client, rng):
    pred = rng.standard_normal(3_000)
    target = rng.standard_normal(3_000)
    pred[1234] = np.nan
    P, T = to_dask(pred, 500), to_dask(target, 500)
    assert np.isnan(fld.huber(P, T, reduction="mean").compute())
    np.testing.assert_allclose(fld.huber(P, T, reduction="mean", nan_policy="omit").compute(),
                               fl.huber(pred, target, reduction="mean", nan_policy="omit"),
                               rtol=1e-13)
    lazy = fld.huber(P, T, reduction="mean", nan_policy="raise")
    with pytest.raises(ValueError, match="pred contains NaN"):
        lazy.compute()


def test_bad_arguments_raise_before_compute(rng):
    P = da.zeros(100, chunks=10)
    with pytest.raises(TypeError, match="delta2"):
        fld.huber(P, P, delta2=1.0)
    with pytest.raises(ValueError, match="delta"):
        fld.huber(P, P, delta=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        fld.huber(P, P, reduction="avg")
    with pytest.raises(ValueError, match="hessian"):
        fld.huber.grad_hess(P, P, hessian="fisher")
    with pytest.raises(ValueError, match="broadcast"):
        fld.huber(P, da.zeros(7, chunks=7))
    with pytest.raises(ValueError, match="sample_weight"):
        fld.huber(P, P, sample_weight=da.ones(99, chunks=10))
    with pytest.raises(AttributeError):
        fld.no_such_loss  # noqa: B018


def test_other_kinds_raise_clearly():
    fake = fl.Loss("listwise_fake", family="ranking", kernel_id=0, params={},
                   parse=lambda p: [], has_fisher=False, formula="", kind="listwise")
    with pytest.raises(ValueError, match="supports the kinds.*listwise_fake is of kind"):
        fld.DaskLoss(fake)(da.zeros(4, chunks=2), da.zeros(4, chunks=2))


def test_every_registered_loss_is_exposed():
    assert set(fld.losses) == set(fl.losses)
    for name in fl.losses:
        assert getattr(fld, name) is fld.losses[name]
        assert fl.losses[name].kind in fld.SUPPORTED_KINDS


def test_positional_arguments_are_counted():
    d = da.zeros(6, chunks=3)
    with pytest.raises(TypeError, match="huber takes pred and target"):
        fld.huber(d, d, d)
    with pytest.raises(TypeError, match="pairwise_logistic takes scores and relevance"):
        fld.pairwise_logistic(d, d, d)
    with pytest.raises(TypeError):
        fld.margin_ranking(d, d)



# -- margin_ranking(x1, x2, y) ----------------------------------------------------------------

def _flat(x):
    """Nested pairs of results as a flat list."""
    if isinstance(x, (tuple, list)):
        return [a for item in x for a in _flat(item)]
    return [x]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_margin_ranking_matches_in_memory(client, dtype, rng):
    x1 = rng.standard_normal(N).astype(dtype)
    x2 = rng.standard_normal(N).astype(dtype)
    y = rng.choice([-1.0, 1.0], N).astype(dtype)
    w = rng.uniform(0.25, 2.0, N)
    X1, X2, Y, W = to_dask(x1, 3_001), to_dask(x2, 2_500), to_dask(y, 4_000), to_dask(w, 1_999)
    loss, dloss = fl.margin_ranking, fld.margin_ranking
    lazy, want, scaled = [], [], []
    for reduction in ("none", "sum", "mean"):
        for weighted in (False, True):
            kw = dict(reduction=reduction, sample_weight=w if weighted else None, margin=0.25)
            dkw = dict(kw, sample_weight=W if weighted else None)
            mean = reduction == "mean"
            got = [dloss(X1, X2, Y, **dkw), dloss.grad(X1, X2, Y, **dkw),
                   dloss.value_and_grad(X1, X2, Y, **dkw),
                   dloss.grad_hess(X1, X2, Y, hessian="clip", hess_floor=1e-3, **dkw)]
            ref = [loss(x1, x2, y, **kw), loss.grad(x1, x2, y, **kw),
                   loss.value_and_grad(x1, x2, y, **kw),
                   loss.grad_hess(x1, x2, y, hessian="clip", hess_floor=1e-3, **kw)]
            assert [type(a) for a in _flat(got)] == [da.Array] * len(_flat(got))
            lazy += _flat(got)
            want += _flat(ref)
            scaled += [False, mean, mean, False, mean, mean, mean, mean, mean, mean]
    out = client.compute(lazy, sync=True)
    assert len(out) == len(want) == len(scaled)
    for a, b, sc in zip(out, want, scaled):
        close(a, b, sc)


def test_margin_ranking_broadcast_dtypes_and_nan(client, rng):
    x1 = rng.standard_normal((2_000, 3))
    x2 = rng.standard_normal(3).astype(np.float32)  # broadcast along the rows, its own dtype
    y = rng.choice([-1, 1], (2_000, 1))
    x1[::37, 1] = np.nan
    X1 = da.from_array(x1, chunks=(333, 2))
    for policy in ("propagate", "omit"):
        kw = dict(margin=0.5, nan_policy=policy)
        for reduction in ("none", "mean"):
            (g1, g2), (h1, h2) = fld.margin_ranking.grad_hess(
                X1, x2, y, reduction=reduction, hessian="clip", hess_floor=0.01, **kw)
            (w1, w2), (k1, k2) = fl.margin_ranking.grad_hess(
                x1, x2, y, reduction=reduction, hessian="clip", hess_floor=0.01, **kw)
            for a, b in zip(client.compute([g1, g2, h1, h2], sync=True), [w1, w2, k1, k2]):
                assert a.shape == b.shape and a.dtype == b.dtype
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        got = fld.margin_ranking(X1, x2, y, reduction="mean", **kw).compute()
        np.testing.assert_allclose(got, fl.margin_ranking(x1, x2, y, reduction="mean", **kw),
                                   rtol=1e-12)
        assert np.isfinite(got) == (policy == "omit")


def test_margin_ranking_bad_arguments(rng):
    d = da.zeros(6, chunks=3)
    with pytest.raises(ValueError, match="do not broadcast"):
        fld.margin_ranking(d, da.zeros(4, chunks=2), d)
    with pytest.raises(ValueError, match="sample_weight"):
        fld.margin_ranking(d, d, d, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="margin"):
        fld.margin_ranking(d, d, d, margin=np.nan)
    with pytest.raises(TypeError, match="x2"):
        fld.margin_ranking(d, np.array(["a"] * 6), d)
    with pytest.raises(ValueError, match="reduction"):
        fld.margin_ranking(d, d, d, reduction="avg")


# -- pairwise ranking losses ---------------------------------------------------------------

def ranking_data(rng, dtype, n_groups=700):
    # Sizes from 0 (empty groups) to 60, with one group longer than every block below.
    sizes = rng.integers(0, 60, n_groups)
    sizes[n_groups // 3] = 5_000
    n = int(sizes.sum())
    scores = rng.standard_normal(n).astype(dtype)
    relevance = rng.integers(0, 4, n).astype(dtype)
    return sizes, scores, relevance


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["pairwise_logistic", "pairwise_hinge"])
def test_pairwise_matches_in_memory(client, name, dtype, rng):
    sizes, s, r = ranking_data(rng, dtype)
    w = rng.uniform(0.25, 2.0, sizes.shape[0])
    S, R = to_dask(s, 1_500), to_dask(r, 2_222)
    loss, dloss = fl.losses[name], fld.losses[name]
    lazy, want, scaled = [], [], []
    for reduction in ("none", "sum", "mean"):
        for weighted in (False, True):
            for value_per in ("group", "document"):
                kw = dict(group=sizes, reduction=reduction, sample_weight=w if weighted else None,
                          value_per=value_per, pair_weight="relevance_difference")
                mean = reduction == "mean"
                got = [dloss(S, R, **kw), dloss.grad(S, R, **kw), dloss.value_and_grad(S, R, **kw),
                       dloss.grad_hess(S, R, hessian="clip", hess_floor=1e-3, **kw)]
                ref = [loss(s, r, **kw), loss.grad(s, r, **kw), loss.value_and_grad(s, r, **kw),
                       loss.grad_hess(s, r, hessian="clip", hess_floor=1e-3, **kw)]
                assert [type(a) for a in _flat(got)] == [da.Array] * 6
                lazy += _flat(got)
                want += _flat(ref)
                scaled += [False, mean, False, mean, mean, mean]
    out = client.compute(lazy, sync=True)
    for a, b, sc in zip(out, want, scaled):
        close(a, b, sc)


def test_pairwise_blocks_keep_groups_whole(rng):
    sizes, s, r = ranking_data(rng, np.float64)
    g = fld.pairwise_logistic.grad(to_dask(s, 1_000), r, group=sizes)
    starts = set(np.concatenate([[0], np.cumsum(sizes)]).tolist())
    ends = np.cumsum(g.chunks[0])
    assert set(ends.tolist()) <= starts and len(ends) > 10
    assert max(g.chunks[0]) >= 5_000  # the long group's block holds all of it
    v = fld.pairwise_logistic(to_dask(s, 1_000), r, group=sizes)
    assert v.shape == sizes.shape and v.npartitions == g.npartitions


def test_pairwise_qid_and_one_group(client, rng):
    sizes, s, r = ranking_data(rng, np.float32, n_groups=300)
    qid = np.repeat(np.arange(sizes.shape[0]) * 7 - 50, sizes)  # non-decreasing, not 0..G-1
    S = to_dask(s, 900)
    for q in (qid, to_dask(qid, 1_234)):
        got = client.compute(list(fld.pairwise_hinge.value_and_grad(S, r, qid=q)), sync=True)
        want = fl.pairwise_hinge.value_and_grad(s, r, qid=qid)
        for a, b in zip(got, want):
            close(a, b)
    # Neither group nor qid: one group of every document, in one block.
    m = 3_000
    got = fld.pairwise_logistic.value_and_grad(S[:m], r[:m], reduction="mean")
    want = fl.pairwise_logistic.value_and_grad(s[:m], r[:m], reduction="mean")
    for a, b, sc in zip(client.compute(list(got), sync=True), want, (False, True)):
        close(a, b, sc)


def test_pairwise_nan_policies_and_empty(client, rng):
    sizes, s, r = ranking_data(rng, np.float64, n_groups=200)
    w = rng.uniform(0.5, 2.0, sizes.shape[0])
    w[::17] = np.nan
    s[::101] = np.nan
    S = to_dask(s, 800)
    for policy in ("propagate", "omit"):
        kw = dict(group=sizes, sample_weight=w, nan_policy=policy, reduction="mean")
        got = client.compute(list(fld.pairwise_logistic.value_and_grad(S, r, **kw)), sync=True)
        want = fl.pairwise_logistic.value_and_grad(s, r, **kw)
        for a, b, sc in zip(got, want, (False, True)):
            if policy == "propagate":
                np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            else:
                close(a, b, sc)
    with pytest.raises(ValueError, match="nan_policy='raise'.*dask block"):
        fld.pairwise_logistic(S, r, group=sizes, nan_policy="raise").compute()
    e = np.zeros(0)
    for group in (None, np.zeros(3, dtype=np.int64)):
        got = fld.pairwise_logistic(da.from_array(e), e, group=group).compute()
        np.testing.assert_array_equal(got, fl.pairwise_logistic(e, e, group=group))
        assert fld.pairwise_logistic(da.from_array(e), e, group=group,
                                     reduction="sum").compute() == 0.0


def test_pairwise_bad_arguments(rng):
    sizes, s, r = ranking_data(rng, np.float64, n_groups=50)
    S = to_dask(s, 500)
    with pytest.raises(ValueError, match="group sizes sum to"):
        fld.pairwise_logistic(S, r, group=sizes[:-1] if sizes[-1] else sizes + 1)
    with pytest.raises(ValueError, match="not both"):
        fld.pairwise_logistic(S, r, group=sizes, qid=np.zeros(s.shape[0], dtype=int))
    unsorted = np.repeat(np.arange(sizes.shape[0])[::-1], sizes)
    for q in (unsorted, to_dask(unsorted, 300)):
        with pytest.raises(ValueError, match="qid non-decreasing"):
            fld.pairwise_logistic(S, r, qid=q)
    with pytest.raises(TypeError, match="qid must hold integer"):
        fld.pairwise_logistic(S, r, qid=np.zeros(s.shape[0]))
    with pytest.raises(ValueError, match="qid must hold one query id per document"):
        fld.pairwise_logistic(S, r, qid=np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="one weight per group"):
        fld.pairwise_logistic(S, r, group=sizes, sample_weight=np.ones(s.shape[0] + 1))
    with pytest.raises(ValueError, match="scores must be one-dimensional"):
        fld.pairwise_logistic(da.zeros((4, 2), chunks=2), np.zeros(4))
    with pytest.raises(ValueError, match="relevance must have one entry per document"):
        fld.pairwise_logistic(S, r[:-1], group=sizes)
    with pytest.raises(ValueError, match="sigma"):
        fld.pairwise_logistic(S, r, group=sizes, sigma=-1.0)
    with pytest.raises(ValueError, match="value_per"):
        fld.pairwise_hinge(S, r, group=sizes, value_per="query")
    with pytest.raises(TypeError, match="unexpected keyword argument 'gamma'"):
        fld.pairwise_hinge(S, r, group=sizes, gamma=1.0)
    with pytest.raises(ValueError, match="hessian"):
        fld.pairwise_hinge.grad_hess(S, r, group=sizes, hessian="fisher")


def test_one_element_operands_go_whole_to_every_block(client, rng):
    """A scalar target, weight or x2/y is handed to every block and broadcast there: dask's own
    broadcast_to blocks are stride-0 views that travel between workers as full copies."""
    x = rng.standard_normal((3_000, 4))
    X = da.from_array(x, chunks=(700, 4))
    cases = [
        (fld.huber(X, 0.5, sample_weight=2.0, reduction="mean"),
         fl.huber(x, 0.5, sample_weight=2.0, reduction="mean")),
        (fld.huber.grad(X, da.from_array(np.array([[0.5]])), sample_weight=np.array([2.0])),
         fl.huber.grad(x, np.array([[0.5]]), sample_weight=np.array([2.0]))),
        (fld.softmax_cross_entropy(X, 3, sample_weight=0.5),
         fl.softmax_cross_entropy(x, 3, sample_weight=0.5)),
        (fld.margin_ranking.grad(X, np.float32(0.25), 1.0)[1],
         fl.margin_ranking.grad(x, np.float32(0.25), 1.0)[1]),
    ]
    for lazy, _ in cases:
        layers = lazy.__dask_graph__().layers
        assert not any(name.startswith("broadcast_to") for name in layers), list(layers)
    got = client.compute([c[0] for c in cases], sync=True)
    for a, (_, b) in zip(got, cases):
        assert a.shape == np.shape(b) and a.dtype == np.asarray(b).dtype
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_margin_ranking_broadcast_derivative_summed_wide(client, rng):
    """A float32 x2 broadcast along 200,000 rows of a float64 x1: its derivative is summed in
    float64 and then rounded once to float32, as in memory (a float32 running sum drifts)."""
    n = 200_000
    x1 = rng.standard_normal((n, 2))
    x2 = np.float32([0.5, -0.5])
    y = np.ones((n, 1))
    w = rng.uniform(0.0, 1.0, (n, 1))
    X1 = da.from_array(x1, chunks=(30_000, 2))
    for reduction in ("sum", "mean"):
        kw = dict(reduction=reduction, sample_weight=w, margin=10.0)
        got = fld.margin_ranking.grad(X1, x2, y, **kw)[1].compute()
        want = fl.margin_ranking.grad(x1, x2, y, **kw)[1]
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_mean_derivatives_of_tiny_weight_totals_stay_finite(client, dtype):
    """A weight total whose reciprocal overflows: the in-memory calls rescale the weights; the
    blocks' derivatives are divided by the total in float64."""
    # Totals of 5e-40 / 2e-40 (float32) and 5e-310 / 2e-309 (float64): 1 / total overflows.
    tiny = 1e-42 if dtype == np.float32 else 1e-311
    s = np.array([0.0, 1.0, 2.0, 0.5] * 50, dtype=dtype)
    r = np.array([1.0, 0.0, 2.0, 0.0] * 50, dtype=dtype)
    S = da.from_array(s, chunks=40)
    cases = [
        (fld.pairwise_logistic.grad(S, r, group=[4] * 50, sample_weight=np.full(50, tiny),
                                    reduction="mean"),
         fl.pairwise_logistic.grad(s, r, group=[4] * 50, sample_weight=np.full(50, tiny),
                                   reduction="mean")),
        (fld.margin_ranking.grad(S, r, 1.0, sample_weight=np.full(200, tiny),
                                 reduction="mean")[1],
         fl.margin_ranking.grad(s, r, 1.0, sample_weight=np.full(200, tiny),
                                reduction="mean")[1]),
        (fld.squared_error.grad(S, r, sample_weight=np.full(200, tiny), reduction="mean"),
         fl.squared_error.grad(s, r, sample_weight=np.full(200, tiny), reduction="mean")),
    ]
    got = client.compute([c[0] for c in cases], sync=True)
    for a, (_, b) in zip(got, cases):
        assert np.all(np.isfinite(a)) and a.dtype == b.dtype
        # The weights are subnormal: the kernels' products w * g keep about 9 bits in float32
        # and 41 in float64.
        tol = 4e-3 if dtype == np.float32 else 1e-11
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * float(np.max(np.abs(b))))


def test_unknown_chunk_sizes_and_direct_construction(rng):
    s = da.from_array(np.arange(10.0), chunks=4)
    unknown = s[s > -1]
    with pytest.raises(ValueError, match="relevance has unknown chunk sizes"):
        fld.pairwise_logistic(s, unknown)
    with pytest.raises(ValueError, match="x1 has unknown chunk sizes"):
        fld.margin_ranking(unknown, s, 1.0)
    with pytest.raises(ValueError, match="pred has unknown chunk sizes"):
        fld.huber(unknown, 0.0)
    # DaskLoss(loss) plans the loss's own kind.
    d = fld.DaskLoss(fl.pairwise_logistic)
    np.testing.assert_allclose(d(s, np.arange(10.0) % 3).compute(),
                               fl.pairwise_logistic(np.arange(10.0), np.arange(10.0) % 3))
    assert type(fld.DaskLoss(fl.margin_ranking)) is type(fld.margin_ranking)


@pytest.mark.parametrize("chunks", [(7, 3), (7, 1), (40, 2)], ids=str)
def test_per_label_pos_weight_is_sliced_per_block(client, rng, chunks):
    # pos_weight per label (README: one value per label for multi-label targets), given as a
    # NumPy or a dask array, with the label axis split across blocks too.
    z = rng.normal(size=(40, 3))
    t = (rng.random((40, 3)) < 0.4).astype(np.float64)
    pw = np.array([1.0, 2.0, 3.0])
    for pos_weight in (pw, da.from_array(pw, chunks=1), pw.reshape(1, 3)):
        for reduction in ("none", "sum", "mean"):
            got = fld.sigmoid_cross_entropy.value_and_grad(
                da.from_array(z, chunks=chunks), t, pos_weight=pos_weight, reduction=reduction)
            want = fl.sigmoid_cross_entropy.value_and_grad(z, t, pos_weight=pw,
                                                           reduction=reduction)
            close(got[0].compute(), want[0])
            close(got[1].compute(), want[1], scaled=reduction == "mean")
        g, h = fld.sigmoid_cross_entropy.grad_hess(da.from_array(z, chunks=chunks), t,
                                                   pos_weight=pos_weight)
        wg, wh = fl.sigmoid_cross_entropy.grad_hess(z, t, pos_weight=pw)
        close(g.compute(), wg)
        close(h.compute(), wh)
    with pytest.raises(ValueError, match=r"pos_weight with shape \(4,\) does not broadcast"):
        fld.sigmoid_cross_entropy(da.from_array(z, chunks=chunks), t, pos_weight=np.ones(4))


@pytest.mark.parametrize("tdtype", [np.float64, np.int8, np.bool_], ids=lambda d: d.__name__)
def test_multilabel_row_mask_and_integer_targets(client, rng, tdtype):
    # A mask per row and class is sliced per block (a per-class [K] mask travels whole);
    # 0/1 targets of any dtype are rows, as in memory.
    s = rng.normal(size=(40, 4))
    t = (rng.random((40, 4)) < 0.5).astype(tdtype)
    sw = rng.uniform(0.5, 2.0, 40)
    for mask in (rng.random((40, 4)) < 0.8, np.array([True, False, True, True])):
        for reduction in ("none", "sum", "mean"):
            for policy in ("propagate", "omit"):
                kw = dict(reduction=reduction, sample_weight=sw, nan_policy=policy)
                dmask = da.from_array(mask, chunks=(9, 4)) if mask.ndim == 2 else mask
                got = fld.multilabel_softmax_cross_entropy.value_and_grad(
                    da.from_array(s, chunks=(7, 2)), t, mask=dmask, **kw)
                want = fl.multilabel_softmax_cross_entropy.value_and_grad(s, t, mask=mask, **kw)
                close(got[0].compute(), want[0])
                close(got[1].compute(), want[1], scaled=reduction == "mean")


def test_own_hessian_policies_accepted(client, rng):
    # The loss's own policies, as in memory: hinge's "xgboost"; "fisher" is not hinge's.
    f = rng.normal(size=10)
    t = np.sign(rng.normal(size=10))
    g, h = fld.hinge.grad_hess(da.from_array(f, chunks=3), t, hessian="xgboost")
    wg, wh = fl.hinge.grad_hess(f, t, hessian="xgboost")
    close(g.compute(), wg)
    close(h.compute(), wh)
    with pytest.raises(ValueError, match="hessian must be one of 'exact', 'clip', 'abs', "
                                         "'xgboost'; got 'fisher'"):
        fld.hinge.grad_hess(da.from_array(f, chunks=3), t, hessian="fisher")
