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


SUPPORTED = [name for name, loss in fl.losses.items() if loss.kind in fld.SUPPORTED_KINDS]


def inputs(name, dtype, rng):
    """In-memory (pred, target) for the loss, from the demo's per-family generators."""
    loss = fl.losses[name]
    gen = DATA_GENERATORS.get(loss.family)
    if gen is None:
        pytest.skip(f"no data generator for family {loss.family!r}")
    if loss.kind == "rowwise":
        pred = (rng.standard_normal((N, K)) * 2).astype(dtype)
        if loss.family == "multilabel":  # 0/1 per class
            return pred, (rng.uniform(size=(N, K)) < 0.3).astype(dtype)
        target = rng.integers(0, K, N)
        return pred, target
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
    fake = fl.Loss("pairwise_fake", family="ranking", kernel_id=0, params={},
                   parse=lambda p: [], has_fisher=False, formula="", kind="pairwise")
    with pytest.raises(ValueError, match="elementwise and row-wise"):
        fld.DaskLoss(fake)(da.zeros(4, chunks=2), da.zeros(4, chunks=2))


def test_every_registered_loss_is_exposed():
    assert set(fld.losses) == set(fl.losses)
    for name in fl.losses:
        assert getattr(fld, name) is fld.losses[name]


def test_unsupported_registered_losses_say_why():
    d = da.zeros(6, chunks=3)
    with pytest.raises(ValueError, match="margin_ranking.*two differentiated inputs"):
        fld.margin_ranking(d, d, d)
    with pytest.raises(ValueError, match="couple the documents of a group"):
        fld.pairwise_logistic.grad(d, d)
    with pytest.raises(TypeError, match="huber takes pred and target"):
        fld.huber(d, d, d)
