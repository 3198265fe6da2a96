"""Streaming (non-temporal) stores (fastloss.set_streaming_stores): elementwise calls whose
outputs reach the bound write them without reading their cache lines first. The results must
be the same bits as with plain stores, for every loss, dtype, output alignment and length
(partial vectors, partial cache lines, the driver's blocks)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastloss as fl
import loss_cases as lc

BLOCK = int(fl._core.block_size)


@pytest.fixture
def streaming():
    """Yields a function that runs a thunk with streaming stores always on, then always off,
    and returns both results."""
    previous = fl.set_streaming_stores(None)

    def both(thunk):
        fl.set_streaming_stores(0)
        on = thunk()
        fl.set_streaming_stores(None)
        off = thunk()
        return on, off

    try:
        yield both
    finally:
        fl.set_streaming_stores(previous)


def misaligned_empty(shape, dtype, offset):
    """An uninitialised C-contiguous array whose data start `offset` elements past a 64-byte
    boundary (NumPy's own large arrays usually start 16 bytes past one)."""
    itemsize = np.dtype(dtype).itemsize
    size = int(np.prod(shape))
    raw = np.empty(size + 64 // itemsize + offset, dtype=dtype)
    skip = (-raw.__array_interface__["data"][0] % 64) // itemsize + offset
    out = raw[skip:skip + size].reshape(shape)
    assert out.__array_interface__["data"][0] % 64 == offset * itemsize
    return out


# ---- the setting -------------------------------------------------------------------------

def test_setting_round_trips_and_validates():
    previous = fl.set_streaming_stores(1 << 20)
    try:
        assert fl.streaming_stores() == 1 << 20
        assert fl.set_streaming_stores(None) == 1 << 20
        assert fl.streaming_stores() is None
        assert fl.set_streaming_stores(0) is None
        assert fl.streaming_stores() == 0
        with pytest.raises(ValueError, match="min_bytes"):
            fl.set_streaming_stores(-1)
        with pytest.raises(TypeError, match="min_bytes"):
            fl.set_streaming_stores(1.5)
        with pytest.raises(TypeError, match="min_bytes"):
            fl.set_streaming_stores(True)
        assert fl.streaming_stores() == 0  # a refused value changes nothing
    finally:
        fl.set_streaming_stores(previous)
    cfg = fl.show_config("dicts")
    assert cfg["streaming_stores"] == fl.streaming_stores()


def test_default_is_sixteen_mib_on_x86_64():
    if not fl._core.streaming_stores_available():
        assert fl._core.stream_min_bytes_default == (1 << 63) - 1
        pytest.skip("this build has no non-temporal stores")
    assert fl._core.stream_min_bytes_default == 16 << 20


@pytest.mark.parametrize("text, want", [("off", "None"), ("0", "0"), ("4M", str(4 << 20)),
                                        ("65536", "65536")])
def test_environment_variable(text, want):
    env = dict(os.environ, FASTLOSS_STREAMING_STORES=text)
    out = subprocess.run([sys.executable, "-c", "import fastloss as fl; print(fl.streaming_stores())"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == want


def test_environment_variable_rejects_garbage():
    env = dict(os.environ, FASTLOSS_STREAMING_STORES="lots")
    out = subprocess.run([sys.executable, "-c", "import fastloss"], env=env,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "FASTLOSS_STREAMING_STORES" in out.stderr


# ---- the same bits ------------------------------------------------------------------------

ELEMENTWISE = lc.loss_names(fl, ("elementwise",))
LENGTHS = [1, 15, 17, 255, 257, BLOCK - 3, BLOCK + 37, 3 * BLOCK + 5]


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_bits_do_not_depend_on_streaming(streaming, name, dtype, rng):
    loss = fl.losses[name]
    for n in LENGTHS:
        first, target, weight = lc.make_inputs(loss, rng, (n,), dtype, weighted=n % 2 == 1)
        kw = {} if weight is None else {"sample_weight": weight}
        on, off = streaming(lambda: lc.call_all(loss, first, target, **kw))
        lc.assert_bit_identical(on, off, f"{name} n={n}")
        for offset in (0, 1, 3):  # into outputs at and off the 64-byte lines
            def into():
                g = misaligned_empty((n,), dtype, offset)
                h = misaligned_empty((n,), dtype, offset + 1)
                v = misaligned_empty((n,), dtype, offset)
                loss.grad_hess(first, target, grad_out=g, hess_out=h, **kw)
                value = loss(first, target, out=v, **kw)
                return [g.copy(), h.copy(), value.copy()]
            on, off = streaming(into)
            lc.assert_bit_identical(on, off, f"{name} n={n} offset={offset}")


def test_elementwise_streaming_values_are_right(streaming, rng):
    """Not only equal to each other: the streamed gradient is the gradient (an independent
    formula), through every partial line at both ends of every block."""
    n = 3 * BLOCK + 11
    z = rng.normal(0.0, 3.0, n).astype(np.float32)
    t = (rng.random(n) < 0.3).astype(np.float32)
    want = (1.0 / (1.0 + np.exp(-z.astype(np.float64))) - t) / n
    for offset in range(0, 16, 5):
        g = misaligned_empty((n,), np.float32, offset)
        fl.set_streaming_stores(0)
        value, _ = fl.sigmoid_cross_entropy.value_and_grad(z, t, reduction="mean", grad_out=g)
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-12)
        assert np.isfinite(value)


ROWWISE = lc.loss_names(fl, ("rowwise",))
STREAMING_ROWS = ("softmax_cross_entropy", "softmax_focal")  # RowOut in the kernels


@pytest.mark.parametrize("name", ROWWISE)
def test_row_losses_bits_do_not_depend_on_streaming(streaming, name, rng):
    """Every row loss, whether its kernel streams or not: the same bits either way."""
    loss = fl.losses[name]
    x = rng.normal(0.0, 2.0, (300, 100)).astype(np.float32)
    t = ((rng.random((300, 100)) < 0.3).astype(np.float32) if loss.family == "multilabel"
         else rng.integers(0, 100, 300))
    on, off = streaming(lambda: lc.call_all(loss, x, t))
    lc.assert_bit_identical(on, off, name)


def _row_rows(K):
    """Rows enough for three of the driver's row blocks (their boundaries fall inside cache
    lines unless K divides evenly), at least 5."""
    return max(5, 3 * BLOCK // K + 3)


# K: shorter than a vector, not a multiple of one, the short path's batches of 1 to 8 rows,
# the stage's size (16 KiB: 4096 float32 or 2048 float64) and one past it (plain stores).
ROW_KS = [1, 3, 17, 100, 1000, 2048, 2049, 4096, 4097]
ROW_OPTIONS = [
    {},
    {"label_smoothing": 0.1, "sample_weight": True},
    {"ignore_index": 0, "class_weight": True},
    {"probabilities": True},
    {"hessian": "fisher"},
]


@pytest.mark.parametrize("name", STREAMING_ROWS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K", ROW_KS)
def test_softmax_rows_bits_do_not_depend_on_streaming(streaming, name, dtype, K, rng):
    """The streamed gradient and Hessian rows (staged per batch of rows, written as whole
    aligned vectors) against plain stores: every path of the kernels (the short rows, the
    chunked rows, ignored rows, a NaN row, probability targets, class weights), into outputs
    at and off the 64-byte lines."""
    loss = fl.losses[name]
    n = _row_rows(K)
    if n * K > 6 * BLOCK:  # keep the large K cases small: one row block each is enough
        n = max(5, 2 * BLOCK // K + 1)
    x = rng.normal(0.0, 3.0, (n, K)).astype(dtype)
    x[n // 2, K // 2] = np.nan  # a row the short path hands to the general one
    if K > 1:
        x[1, 0] = 40.0  # a confident row
    labels = rng.integers(0, K, n)
    for opts in ROW_OPTIONS:
        kw = {k: v for k, v in opts.items() if k not in ("sample_weight", "class_weight",
                                                          "probabilities", "hessian")}
        hess_kw = {"hessian": opts["hessian"]} if "hessian" in opts else {}
        if opts.get("sample_weight"):
            kw["sample_weight"] = rng.uniform(0.5, 2.0, n).astype(dtype)
        if opts.get("class_weight"):
            kw["class_weight"] = rng.uniform(0.5, 2.0, K)
        if "ignore_index" in kw:
            labels = labels.copy()
            labels[::7] = 0
        target = labels
        if opts.get("probabilities"):
            target = rng.dirichlet(np.ones(K), n).astype(dtype)
        for offset in (0, 3):
            def into():
                g = misaligned_empty((n, K), dtype, offset)
                h = misaligned_empty((n, K), dtype, offset + 1)
                g2 = misaligned_empty((n, K), dtype, offset)
                loss.grad_hess(x, target, grad_out=g, hess_out=h, **kw, **hess_kw)
                value, _ = loss.value_and_grad(x, target, grad_out=g2, **kw)
                return [g.copy(), h.copy(), g2.copy(), value]
            on, off = streaming(into)
            lc.assert_bit_identical(on, off, f"{name} K={K} {opts} offset={offset}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_softmax_gradient_is_right(streaming, dtype, rng):
    """Not only equal to each other: the streamed gradient is softmax - onehot (computed here
    in float64), with every row block's boundary inside a cache line."""
    K = 100
    n = 3 * BLOCK // K + 7
    x = rng.normal(0.0, 3.0, (n, K)).astype(dtype)
    y = rng.integers(0, K, n)
    x64 = x.astype(np.float64)
    p = np.exp(x64 - x64.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    want = p.copy()
    want[np.arange(n), y] -= 1.0
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for offset in (0, 1, 5):
        g = misaligned_empty((n, K), dtype, offset)
        h = misaligned_empty((n, K), dtype, offset + 2)
        fl.set_streaming_stores(0)
        fl.softmax_cross_entropy.grad_hess(x, y, grad_out=g, hess_out=h)
        np.testing.assert_allclose(g, want, rtol=tol, atol=tol)
        np.testing.assert_allclose(h, p * (1.0 - p), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_bandwidth_probes_with_streaming_stores(dtype, offset, rng):
    n = 2 * BLOCK + 300 + offset
    a = rng.normal(size=n).astype(dtype)
    b = rng.normal(size=n).astype(dtype)
    for kind, want in (("copy_nt", a), ("triad_nt", a + b), ("copy", a), ("triad", a + b)):
        out = misaligned_empty((n,), dtype, offset)
        fl._core.stream(kind, a, b if "triad" in kind else None, out)
        np.testing.assert_array_equal(out, want, err_msg=kind)


def test_threads_and_streaming_together(streaming, rng):
    n = 8 * BLOCK + 3
    z = rng.normal(0.0, 2.0, n)
    t = (rng.random(n) < 0.5).astype(np.float64)
    results = []
    for threads in (1, 2, 3):
        with fl.threads(threads):
            results.append(streaming(lambda: fl.sigmoid_focal.value_and_grad(z, t)))
    for on, off in results:
        lc.assert_bit_identical(on, results[0][1])
        lc.assert_bit_identical(off, results[0][1])
