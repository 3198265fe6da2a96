"""The output-buffer cache (fastloss.set_buffer_cache): outputs of 4 MiB or more reuse the
memory of released results, never of live ones, and the cache keeps to its bound."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastloss as fl
from fastloss._config import _parse_bytes

N = 2_000_000  # float32: 8 MB per output, above the 4 MiB floor


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


@pytest.fixture
def cache():
    """A cache of 64 MiB, emptied before and after the test."""
    previous = fl.set_buffer_cache(0)
    fl.set_buffer_cache(64 << 20)
    try:
        yield
    finally:
        fl.set_buffer_cache(0)
        fl.set_buffer_cache(previous)


def data(rng, n=N, dtype=np.float32):
    return rng.standard_normal(n).astype(dtype), (rng.random(n) < 0.3).astype(dtype)


def test_released_buffers_are_reused_and_live_ones_never(cache, rng):
    z, t = data(rng)
    want = 1.0 / (1.0 + np.exp(-z.astype(np.float64))) - t
    g1 = fl.sigmoid_cross_entropy.grad(z, t)
    a1 = address(g1)
    assert g1.flags.writeable and g1.flags.c_contiguous and a1 % 64 == 0
    g2 = fl.sigmoid_cross_entropy.grad(z, -t + 1)  # g1 alive: another buffer
    assert address(g2) != a1
    np.testing.assert_allclose(g1, want, rtol=1e-5, atol=1e-6)
    del g1
    g3 = fl.sigmoid_cross_entropy.grad(z, t)  # g1's buffer, released, is taken again
    assert address(g3) == a1
    np.testing.assert_allclose(g3, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g2, 1.0 / (1.0 + np.exp(-z.astype(np.float64))) - (1 - t),
                               rtol=1e-5, atol=1e-6)
    info = fl.buffer_cache_info()
    assert info["max_bytes"] == 64 << 20 and info["min_bytes"] == 4 << 20


def test_a_view_keeps_its_buffer(cache, rng):
    z, t = data(rng)
    g = fl.squared_error.grad(z, t)
    view = g[::3]
    kept = view.copy()
    a = address(g)
    del g
    h = fl.squared_error.grad(t, z)  # may not take the buffer `view` still reads
    assert address(h) != a
    np.testing.assert_array_equal(view, kept)
    del view
    assert address(fl.squared_error.grad(t, z)) == a


def test_pairwise_outputs_come_from_the_cache(cache, rng):
    """The pairwise losses allocate their outputs in Python: through the same cache."""
    scores = rng.standard_normal(N).astype(np.float32)
    rel = rng.integers(0, 3, N).astype(np.float32)
    group = np.full(N // 20, 20)
    g1 = fl.pairwise_logistic.grad(scores, rel, group=group)
    a1 = address(g1)
    assert g1.flags.writeable and g1.flags.c_contiguous and g1.dtype == np.float32
    kept = g1.copy()
    del g1
    g, h = fl.pairwise_logistic.grad_hess(scores, rel, group=group)
    assert a1 in (address(g), address(h))  # the released buffer, taken again
    np.testing.assert_array_equal(g, kept)
    per_doc = fl.pairwise_hinge(scores.astype(np.float64), rel, group=group,
                                value_per="document")
    assert per_doc.shape == (N,) and per_doc.dtype == np.float64


def test_sizes_and_dtypes(cache, rng):
    z, t = data(rng, dtype=np.float64)
    g = fl.squared_error.grad(z, t)
    a = address(g)
    del g
    # A request much smaller than the released buffer does not take it (at most 5/4 of it).
    small = fl.squared_error.grad(z[: N // 2], t[: N // 2])
    assert address(small) != a
    # Below 4 MiB outputs come from NumPy as before.
    tiny = fl.squared_error.grad(z[:1000], t[:1000])
    assert tiny.base is None or not isinstance(tiny.base, type(small.base))
    value, grad = fl.softmax_cross_entropy.value_and_grad(
        rng.standard_normal((N // 8, 8)), rng.integers(0, 8, N // 8))
    assert grad.dtype == np.float64 and value.shape == (N // 8,)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)


def test_bound_is_kept(rng):
    previous = fl.set_buffer_cache(0)
    try:
        assert fl.buffer_cache_info()["cached_bytes"] == 0
        fl.set_buffer_cache(20 << 20)  # room for two 8 MB buffers (each rounded to 2 MiB)
        z, t = data(rng)
        outs = [fl.squared_error.grad(z, t) for _ in range(5)]
        del outs
        info = fl.buffer_cache_info()
        assert 0 < info["cached_bytes"] <= 20 << 20 and info["buffers"] == 2
        fl.set_buffer_cache(9 << 20)
        assert fl.buffer_cache_info()["buffers"] == 1
        fl.set_buffer_cache(0)  # off: nothing kept, outputs as before
        assert fl.buffer_cache_info()["cached_bytes"] == 0
        g = fl.squared_error.grad(z, t)
        del g
        assert fl.buffer_cache_info()["buffers"] == 0
    finally:
        fl.set_buffer_cache(previous)


def test_outputs_behave_as_arrays(cache, rng):
    z, t = data(rng)
    g, h = fl.sigmoid_focal.grad_hess(z, t)
    back = pickle.loads(pickle.dumps(g))
    np.testing.assert_array_equal(back, g)
    g += 1.0  # writeable
    assert np.all(np.isfinite(h))
    out = np.empty_like(z)  # a caller's out= buffer is used as given, never cached
    r = fl.sigmoid_focal.grad(z, t, out=out)
    assert r is out


def test_threads_share_the_cache_safely(cache, rng):
    z, t = data(rng)
    want = fl.squared_error.grad(z, t).copy()
    errors = []

    def work():
        try:
            for _ in range(10):
                g = fl.squared_error.grad(z, t)
                if not np.array_equal(g, want):
                    errors.append("mismatch")
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(repr(exc))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert fl.buffer_cache_info()["cached_bytes"] <= 64 << 20


def test_arguments_and_environment():
    with pytest.raises(TypeError, match="max_bytes must be an int"):
        fl.set_buffer_cache(1.5)
    with pytest.raises(TypeError, match="max_bytes must be an int"):
        fl.set_buffer_cache(True)
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        fl.set_buffer_cache(-1)
    assert _parse_bytes("256M") == 256 << 20
    assert _parse_bytes("1g") == 1 << 30
    assert _parse_bytes("4096") == 4096
    assert _parse_bytes("64KB") == 64 << 10
    code = "import fastloss as fl; print(fl.buffer_cache_info()['max_bytes'])"
    env = dict(os.environ, FASTLOSS_BUFFER_CACHE="32M")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == str(32 << 20)
    env["FASTLOSS_BUFFER_CACHE"] = "lots"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "FASTLOSS_BUFFER_CACHE='lots'" in bad.stderr


def test_sizes_just_above_the_floor_are_reused(cache, rng):
    """4.4 MiB outputs: buffers are rounded to 2 MiB (6 MiB here); a request is matched against
    its rounded size, so the same call takes the same buffer again."""
    z, t = data(rng, n=1_150_000)
    first = fl.squared_error.grad(z, t)
    a = address(first)
    del first
    for _ in range(5):
        g = fl.squared_error.grad(z, t)
        assert address(g) == a
        del g
    assert fl.buffer_cache_info()["buffers"] == 1


def test_outputs_larger_than_the_bound_come_from_numpy(rng):
    previous = fl.set_buffer_cache(0)
    try:
        fl.set_buffer_cache(6 << 20)
        z, t = data(rng)  # 8 MB outputs: above the bound
        g = fl.squared_error.grad(z, t)
        assert g.flags.owndata
        del g
        assert fl.buffer_cache_info()["buffers"] == 0
    finally:
        fl.set_buffer_cache(previous)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_uses_its_own_buffers(cache, rng):
    z, t = data(rng)
    want = fl.squared_error.grad(z, t).copy()
    g = fl.squared_error.grad(z, t)
    del g  # one buffer cached in the parent
    assert fl.buffer_cache_info()["buffers"] == 1
    code = (
        "import os, sys, numpy as np, fastloss as fl\n"
        "z, t, want = (np.load(sys.argv[1] + n) for n in ('/z.npy', '/t.npy', '/w.npy'))\n"
        "fl.set_buffer_cache(64 << 20)\n"
        "g = fl.squared_error.grad(z, t); del g\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    ok = fl.buffer_cache_info()['buffers'] == 0\n"
        "    g = fl.squared_error.grad(z, t)\n"
        "    os._exit(0 if ok and np.array_equal(g, want) else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n")
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        np.save(d + "/z.npy", z)
        np.save(d + "/t.npy", t)
        np.save(d + "/w.npy", want)
        run = subprocess.run([sys.executable, "-c", code, d], capture_output=True, text=True,
                             timeout=120)
    assert run.returncode == 0, run.stderr
