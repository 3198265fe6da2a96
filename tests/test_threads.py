"""Thread-count controls and calls from many Python threads."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys

import fastloss as fl
import numpy as np
import pytest


def openmp_enabled():
    return bool(fl.show_config(mode="dicts")["openmp"]["enabled"])


needs_openmp = pytest.mark.skipif("not openmp_enabled()", reason="built without OpenMP")


@pytest.fixture(autouse=True)
def default_threads():
    fl.set_num_threads(None)
    yield
    fl.set_num_threads(None)


def test_default_is_positive():
    n = fl.get_num_threads()
    assert isinstance(n, int)
    assert n >= 1
    if not openmp_enabled():
        assert n == 1


@needs_openmp
def test_set_and_get():
    default = fl.get_num_threads()
    for n in (1, 2, 3, 7):
        fl.set_num_threads(n)
        assert fl.get_num_threads() == n
    fl.set_num_threads(None)
    assert fl.get_num_threads() == default


@pytest.mark.parametrize("bad", [0, -1, -8])
def test_set_rejects_non_positive(bad):
    before = fl.get_num_threads()
    with pytest.raises(ValueError, match="n|thread"):
        fl.set_num_threads(bad)
    assert fl.get_num_threads() == before


@pytest.mark.parametrize("bad", [2.5, "2", [2]])
def test_set_rejects_non_integers(bad):
    with pytest.raises(TypeError):
        fl.set_num_threads(bad)


def test_set_accepts_numpy_integers():
    fl.set_num_threads(np.int64(1))
    assert fl.get_num_threads() == 1


@needs_openmp
def test_context_manager_restores():
    fl.set_num_threads(3)
    with fl.threads(2):
        assert fl.get_num_threads() == 2
        with fl.threads(5):
            assert fl.get_num_threads() == 5
        assert fl.get_num_threads() == 2
    assert fl.get_num_threads() == 3


@needs_openmp
def test_context_manager_restores_default_and_after_exception():
    default = fl.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"), fl.threads(2):
        assert fl.get_num_threads() == 2
        raise RuntimeError("inside")
    assert fl.get_num_threads() == default
    # Leaving the block goes back to "default", not to a pinned number.
    with fl.threads(1):
        pass
    fl_default_after = fl.get_num_threads()
    assert fl_default_after == default


def test_context_manager_rejects_bad_count():
    with pytest.raises(ValueError), fl.threads(0):
        pass


def run_python(code, **env):
    full_env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "FASTLOSS_ISA"):
        full_env.pop(key, None)
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_omp_num_threads_is_honoured():
    proc = run_python("import fastloss as fl; print(fl.get_num_threads())", OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1"]


@needs_openmp
def test_omp_num_threads_other_value():
    proc = run_python("import fastloss as fl; print(fl.get_num_threads())", OMP_NUM_THREADS="3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3"]


@needs_openmp
def test_explicit_setting_overrides_environment():
    code = ("import fastloss as fl; fl.set_num_threads(2); print(fl.get_num_threads()); "
            "fl.set_num_threads(None); print(fl.get_num_threads())")
    proc = run_python(code, OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "1"]


def test_threadpoolctl_limits():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = fl.get_num_threads()
    with threadpoolctl.threadpool_limits(1):
        assert fl.get_num_threads() == 1
        pred = np.linspace(-3, 3, 10**5)
        assert fl.squared_error(pred, 0.0, reduction="sum") == pytest.approx(float(np.sum(pred**2)))
    assert fl.get_num_threads() == before


@needs_openmp
def test_threadpoolctl_sees_fastloss_openmp():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    info = threadpoolctl.threadpool_info()
    assert any(lib.get("user_api") == "openmp" for lib in info)


# --------------------------------------------------------------------------
# Calls from many Python threads at once
# --------------------------------------------------------------------------


def workload(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 100_000))
    dtype = (np.float32, np.float64)[seed % 2]
    pred = rng.normal(0, 3, n).astype(dtype)
    target = rng.normal(0, 3, n).astype(dtype)
    weight = rng.uniform(0.5, 2.0, n)
    results = []
    for name in ("squared_error", "absolute_error", "huber", "log_cosh"):
        loss = fl.losses[name]
        results.append(loss(pred, target))
        results.append(loss(pred, target, reduction="mean", sample_weight=weight))
        results.append(loss.value_and_grad(pred, target, reduction="sum"))
        results.append(loss.grad_hess(pred, target, reduction="mean", hessian="clip"))
    return results


def flatten(results):
    flat = []
    for r in results:
        if isinstance(r, tuple):
            flat.extend(flatten(r))
        else:
            flat.append(np.asarray(r))
    return flat


def assert_bit_identical(a, b):
    fa, fb = flatten(a), flatten(b)
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize("omp_threads", [1, 2])
def test_concurrent_python_threads_match_serial(omp_threads):
    seeds = list(range(16))
    with fl.threads(omp_threads):
        serial = {s: workload(s) for s in seeds}
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            parallel = dict(zip(seeds, pool.map(workload, seeds)))
    for s in seeds:
        assert_bit_identical(parallel[s], serial[s])


def test_concurrent_calls_share_out_buffers_safely():
    # Each thread writes into its own out= buffer; none sees another's data.
    rng = np.random.default_rng(7)
    preds = [rng.normal(size=50_000) for _ in range(8)]
    outs = [np.empty(50_000) for _ in range(8)]

    def job(i):
        for _ in range(20):
            fl.log_cosh(preds[i], 0.0, out=outs[i])
        return outs[i]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(job, range(8)))
    for i in range(8):
        assert got[i] is outs[i]
        np.testing.assert_array_equal(got[i], fl.log_cosh(preds[i], 0.0))
