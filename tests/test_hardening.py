"""Concurrency, fork safety, determinism and memory, for every registered loss.

* 8 Python threads calling mixed losses at once give the serial results, bit for bit.
* Concurrent calls share the configured thread count instead of each taking all of it
  (docs/design.md, "Threads"); calls inside a forked child run serially.
* A child started with fork after threaded work does not hang (GNU OpenMP keeps the
  parent's thread pool, which the child does not have).
* Reductions are bit-identical for 1, 2, 3 and 7 threads and from run to run; every ISA path
  agrees with the baseline within the documented accuracy.
* 10^5 calls, also calls that raise, keep the resident set flat; contiguous float32/float64
  inputs are never copied at full size.
"""

from __future__ import annotations

import concurrent.futures
import gc
import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc

import fastloss as fl
import loss_cases as lc
import numpy as np
import pytest

NAMES = lc.loss_names(fl)
HERE = os.path.dirname(os.path.abspath(__file__))
SANITIZED = bool(os.environ.get("FASTLOSS_SANITIZED"))
BLOCK = int(fl._core.block_size)


def openmp_enabled():
    return bool(fl.show_config(mode="dicts")["openmp"]["enabled"])


needs_openmp = pytest.mark.skipif("not openmp_enabled()", reason="built without OpenMP")


@pytest.fixture(autouse=True)
def default_threads():
    fl.set_num_threads(None)
    yield
    fl.set_num_threads(None)


def rows_for(loss, n_elements):
    """Loss shape (rows for row-wise losses) holding about n_elements numbers."""
    return (max(1, n_elements // lc.K_CLASSES),) if loss.kind == "rowwise" else (n_elements,)


def workload(name, seed, n_elements):
    """Every entry point and reduction of one loss, weighted and not, one dtype."""
    loss = fl.losses[name]
    rng = np.random.default_rng(seed)
    dtype = (np.float32, np.float64)[seed % 2]
    first, target, weight = lc.make_inputs(loss, rng, rows_for(loss, n_elements), dtype,
                                           weighted=True)
    out = []
    for sw in (None, weight):
        for reduction in ("none", "sum", "mean"):
            out.append(lc.call(loss, "value_and_grad", first, target, sample_weight=sw,
                               reduction=reduction))
            out.append(lc.call(loss, "grad_hess", first, target, sample_weight=sw,
                               reduction=reduction, hessian="clip"))
    return out


# --------------------------------------------------------------------------
# Many Python threads
# --------------------------------------------------------------------------


@pytest.mark.parametrize("omp_threads", [1, 2, None])
def test_eight_python_threads_mixed_losses_match_serial(omp_threads):
    jobs = [(NAMES[i % len(NAMES)], i, (3 * BLOCK + 17) if i % 3 else 1000) for i in range(24)]
    with fl.threads(omp_threads):
        serial = [workload(*j) for j in jobs]
        barrier = threading.Barrier(8)

        def run(i):
            if i < 8:
                barrier.wait(timeout=60)
            return workload(*jobs[i])

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            parallel = list(pool.map(run, range(len(jobs))))
    for j, a, b in zip(jobs, parallel, serial):
        lc.assert_bit_identical(a, b, repr(j))


@needs_openmp
def test_concurrent_calls_share_the_thread_budget():
    # 8 callers, 4 threads configured: without sharing, 8 teams of 4 would run at once.
    name = NAMES[0]
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, np.random.default_rng(1), rows_for(loss, 40 * BLOCK))
    want = loss.value_and_grad(first, target, reduction="mean")
    barrier = threading.Barrier(8)

    def call(_):
        barrier.wait(timeout=60)
        return [loss.value_and_grad(first, target, reduction="mean") for _ in range(5)]

    with fl.threads(4):
        fl._core._workers_peak(True)
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(call, range(8)))
        # Every caller computes on its own thread; the OpenMP workers added to them all come
        # out of the one budget of 4 threads (without sharing: 8 x 3 workers).
        assert 0 <= fl._core._workers_peak(True) <= 3
        # Alone, a call takes the whole budget.
        loss.value_and_grad(first, target, reduction="mean")
        assert fl._core._workers_peak(True) == 3
    for rs in results:
        for r in rs:
            lc.assert_bit_identical(r, want)


def run_script(code, timeout=120, **env):
    full_env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "FASTLOSS_ISA"):
        full_env.pop(key, None)
    full_env.update(env)
    full_env["PYTHONPATH"] = HERE + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)


FORK_SCRIPT = """
    import multiprocessing as mp, sys, warnings
    import numpy as np
    import fastloss as fl
    import loss_cases as lc

    warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads alive
    names = lc.loss_names(fl)

    def compute():
        out = []
        for i, name in enumerate(names):
            loss = fl.losses[name]
            rows = (40000,) if loss.kind == "rowwise" else (200000,)
            first, target, w = lc.make_inputs(loss, np.random.default_rng(i), rows, weighted=True)
            v, g = lc.call(loss, "value_and_grad", first, target, sample_weight=w,
                           reduction="mean")
            out.append((name, float(v), [float(np.sum(a)) for a in lc.flatten([g])]))
        return out

    def child(q):
        q.put((fl._core._forked_child_serial(), fl.get_num_threads(), compute()))

    fl.set_num_threads(2)
    parent = compute()          # threaded work: the OpenMP pool exists now
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=child, args=(q,), daemon=True) for _ in range(2)]
    for p in procs:
        p.start()
    got = [q.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0, p.exitcode
    for serial, nthreads, res in got:
        assert serial is True, serial
        assert res == parent, (res, parent)
    print("fork-ok", fl._core._forked_child_serial(), len(parent))
"""


@needs_openmp
def test_fork_after_threaded_work_does_not_hang():
    proc = run_script(FORK_SCRIPT, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["fork-ok", "False", str(len(NAMES))]


def test_fork_before_any_threaded_work_keeps_threads():
    code = """
        import multiprocessing as mp
        import fastloss as fl
        def child(q):
            q.put(fl._core._forked_child_serial())
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        print(q.get(timeout=60))
        p.join(timeout=30)
    """
    proc = run_script(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False"]


# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------


def reductions(name, dtype, n_elements=5 * BLOCK + 123, seed=11):
    loss = fl.losses[name]
    rng = np.random.default_rng(seed)
    first, target, weight = lc.make_inputs(loss, rng, rows_for(loss, n_elements), dtype,
                                           weighted=True)
    out = []
    for sw in (None, weight):
        for reduction in ("sum", "mean"):
            kw = {"sample_weight": sw, "reduction": reduction}
            out.append(lc.call(loss, "__call__", first, target, **kw))
            out.append(lc.call(loss, "value_and_grad", first, target, **kw))
            out.append(lc.call(loss, "grad_hess", first, target, **kw))
    return out


@needs_openmp
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_reductions_bit_identical_across_threads_and_runs(name, dtype):
    with fl.threads(1):
        want = reductions(name, dtype)
        lc.assert_bit_identical(reductions(name, dtype), want, "second run")
    for n in (2, 3, 7):
        with fl.threads(n):
            lc.assert_bit_identical(reductions(name, dtype), want, f"{n} threads")


def test_reductions_identical_in_a_new_process():
    # Python's hash of bytes is salted per process: compare SHA-256 digests.
    code = """
        import hashlib
        import numpy as np, fastloss as fl, test_hardening as th
        for name in th.NAMES:
            for dtype in (np.float32, np.float64):
                flat = th.lc.flatten(th.reductions(name, dtype))
                digest = hashlib.sha256(b"".join(a.tobytes() for a in flat)).hexdigest()
                print(name, np.dtype(dtype).name, digest)
    """
    env = {"OMP_NUM_THREADS": "3"}
    proc = run_script(code, **env)
    assert proc.returncode == 0, proc.stderr
    import hashlib

    here = []
    for name in NAMES:
        for dtype in (np.float32, np.float64):
            flat = lc.flatten(reductions(name, dtype))
            here.append(f"{name} {np.dtype(dtype).name} "
                        + hashlib.sha256(b"".join(a.tobytes() for a in flat)).hexdigest())
    assert proc.stdout.strip().splitlines() == here


# Accuracy of every ISA path relative to the baseline, per element: |x - x_baseline| <=
# ISA_ULPS * eps(dtype) * (|x_baseline| + 1) (docs/design.md, "Determinism").
ISA_ULPS = 64


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_isa_paths_agree_with_baseline(name, dtype):
    isas = list(fl._core.supported_isas())
    loss = fl.losses[name]
    first, target, weight = lc.make_inputs(loss, np.random.default_rng(5),
                                           rows_for(loss, 3 * BLOCK + 5), dtype, weighted=True)
    previous = fl._set_isa("baseline")
    try:
        want = lc.flatten([lc.call(loss, m, first, target, sample_weight=weight)
                           for m in ("value_and_grad", "grad_hess")]
                          + [lc.call(loss, "__call__", first, target, sample_weight=weight,
                                     reduction="mean")])
        for isa in isas[1:]:
            fl._set_isa(isa)
            got = lc.flatten([lc.call(loss, m, first, target, sample_weight=weight)
                              for m in ("value_and_grad", "grad_hess")]
                             + [lc.call(loss, "__call__", first, target, sample_weight=weight,
                                        reduction="mean")])
            for g, w in zip(got, want):
                eps = np.finfo(g.dtype if g.dtype.kind == "f" else np.float64).eps
                eps = max(eps, np.finfo(dtype).eps)
                bound = ISA_ULPS * eps * (np.abs(w.astype(np.float64)) + 1.0)
                err = np.abs(g.astype(np.float64) - w.astype(np.float64))
                assert np.all(err <= bound), (isa, float(np.max(err / bound)))
    finally:
        fl._set_isa(previous)


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
no_sanitizer = pytest.mark.skipif(SANITIZED, reason="ASan's allocator keeps freed memory")


def small_calls():
    """A cycle of small calls over every loss and entry point."""
    calls = []
    for i, name in enumerate(NAMES):
        loss = fl.losses[name]
        first, target, weight = lc.make_inputs(loss, np.random.default_rng(i), (16,),
                                               weighted=True)
        g = lc.like_grad(loss, first)
        calls += [
            lambda loss=loss, f=first, t=target: lc.call(loss, "__call__", f, t),
            lambda loss=loss, f=first, t=target, w=weight: lc.call(
                loss, "value_and_grad", f, t, sample_weight=w, reduction="mean"),
            lambda loss=loss, f=first, t=target, g=g: lc.call(loss, "grad_hess", f, t,
                                                              grad_out=g),
        ]
    return calls


def failing_calls():
    """A cycle of calls that raise, over every loss: each error path of the bindings."""
    calls = []
    # The bad operands below are written for (first, target) of one value per sample.
    for i, name in enumerate(lc.loss_names(fl, lc.SAMPLE_KINDS)):
        loss = fl.losses[name]
        first, target, weight = lc.make_inputs(loss, np.random.default_rng(i), (16,),
                                               weighted=True)
        bad_nan = first.copy()
        bad_nan[(3, 0) if loss.kind == "rowwise" else 3] = np.nan
        ro = np.empty(first.shape)
        ro.flags.writeable = False
        calls += [
            (lambda loss=loss, f=first, t=target: loss(f, t[:5]), ValueError),
            (lambda loss=loss, f=first, t=target: loss(f.astype(complex), t), TypeError),
            (lambda loss=loss, f=bad_nan, t=target: loss(f, t, nan_policy="raise"), ValueError),
            (lambda loss=loss, f=first, t=target, o=ro: loss.grad(f, t, out=o), ValueError),
            (lambda loss=loss, f=first, t=target: loss(f, t, reduction="bogus"), ValueError),
            (lambda loss=loss, f=first, t=target: loss(f, t, no_such=1), TypeError),
        ]
        if lc.index_targets(loss):
            bad_label = target.copy()
            bad_label[7] = 99
            calls.append((lambda loss=loss, f=first, t=bad_label: loss(f, t), ValueError))
    return calls


def rss_growth(step, n_calls):
    for _ in range(n_calls // 10):
        step()
    gc.collect()
    before = rss_bytes()
    for _ in range(n_calls):
        step()
    gc.collect()
    return rss_bytes() - before


@needs_proc
@no_sanitizer
def test_rss_flat_over_1e5_calls():
    calls = small_calls()
    counter = iter(range(10**9))

    def step():
        calls[next(counter) % len(calls)]()

    growth = rss_growth(step, 10**5)
    # A leak of 16 bytes per call would be 1.6 MB.
    assert growth < 1 << 20, f"RSS grew by {growth / 2**20:.2f} MiB over 1e5 calls"


@needs_proc
@no_sanitizer
def test_rss_flat_over_1e5_failing_calls():
    calls = failing_calls()
    counter = iter(range(10**9))

    def step():
        fn, exc = calls[next(counter) % len(calls)]
        try:
            fn()
        except exc:
            return
        raise AssertionError("the call did not raise")

    growth = rss_growth(step, 10**5)
    assert growth < 1 << 20, f"RSS grew by {growth / 2**20:.2f} MiB over 1e5 raising calls"


def traced_peak(fn):
    # tracemalloc counts only what is allocated while it runs, so garbage from before does not
    # enter the peak; the collector is kept from running inside fn instead of being run first
    # (a full collection of the test session's heap took most of this test's time).
    enabled = gc.isenabled()
    gc.disable()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
        if enabled:
            gc.enable()
    return result, peak


# Pairwise losses hold one group offset (int64) per group, more than 1/16 of the scores for
# the generated groups of a few documents: not a full-size temporary, but over the slack.
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", [n for n in NAMES if fl.losses[n].kind != "pairwise"])
def test_no_full_size_temporary(name, dtype):
    loss = fl.losses[name]
    first, target, weight = lc.make_inputs(loss, np.random.default_rng(3),
                                           rows_for(loss, 1 << 18), dtype, weighted=True)
    size = lc.nbytes(first)
    slack = size // 16

    def run(method, **kw):
        return lc.call(loss, method, first, target, **kw)

    for sw in (None, weight):
        _, peak = traced_peak(lambda: run("__call__", sample_weight=sw, reduction="mean"))
        assert peak < slack, (sw is None, peak, size)
        value, peak = traced_peak(lambda: run("__call__", sample_weight=sw))
        assert peak < value.nbytes + slack, (peak, size)
        (_, grad), peak = traced_peak(
            lambda: run("value_and_grad", sample_weight=sw, reduction="sum"))
        assert peak < lc.nbytes(grad) + slack, (peak, size)
        g, h = lc.like_grad(loss, first), lc.like_grad(loss, first)
        _, peak = traced_peak(lambda: run("grad_hess", sample_weight=sw, grad_out=g,
                                          hess_out=h))
        assert peak < slack, (peak, size)


@needs_proc
@no_sanitizer
def test_peak_rss_of_a_reduction_stays_small():
    # Native allocations (the driver's per-thread blocks) are not seen by tracemalloc: the
    # process's peak resident set is, in a fresh process.
    code = """
        import resource, numpy as np, fastloss as fl, loss_cases as lc
        out = []
        for i, name in enumerate(lc.loss_names(fl)):
            loss = fl.losses[name]
            rows = (1 << 22,) if loss.kind == "elementwise" else ((1 << 22) // lc.K_CLASSES,)
            f, t, w = lc.make_inputs(loss, np.random.default_rng(i), rows, weighted=True)
            lc.call(loss, "__call__", f, t, sample_weight=w, reduction="mean")     # warm-up
            g, h = lc.like_grad(loss, f), lc.like_grad(loss, f)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            lc.call(loss, "__call__", f, t, sample_weight=w, reduction="mean")
            lc.call(loss, "grad_hess", f, t, sample_weight=w, reduction="mean",
                    grad_out=g, hess_out=h)
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(name, (after - before) * 1024, lc.nbytes(f))
    """
    proc = run_script(code, timeout=180)
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.strip().splitlines():
        name, grown, size = line.split()
        assert int(grown) < int(size) // 8, line


@needs_proc
@no_sanitizer
def test_peak_rss_of_a_broadcast_pred_gradient_stays_small():
    # The gradient w.r.t. a scalar (or a row) broadcast over 2^24 targets is summed slab by
    # slab: a few MB, not the 64 or 128 MB of a full-size gradient.
    code = """
        import resource, numpy as np, fastloss as fl
        for dt in (np.float32, np.float64):
            t = np.broadcast_to(np.asarray(1.0, dt), (1 << 24,))
            t2 = np.broadcast_to(np.asarray(1.0, dt), (1 << 14, 1 << 10))
            p2 = np.zeros((1, 1 << 10), dt)
            fl.squared_error.grad_hess(dt(0.3), t[:10])  # warm-up
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            g, h = fl.squared_error.grad_hess(dt(0.3), t, reduction="sum")
            g2 = fl.sigmoid_focal.grad(p2, t2, reduction="mean")
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            assert abs(g / (2 * (dt(0.3) - 1.0) * (1 << 24)) - 1) < 1e-6, g
            assert h == 2 * (1 << 24) and g2.shape == p2.shape, (h, g2.shape)
            print(np.dtype(dt).name, (after - before) * 1024, t.size * np.dtype(dt).itemsize)
    """
    proc = run_script(code, timeout=180)
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.strip().splitlines():
        name, grown, size = line.split()
        assert int(grown) < int(size) // 4, line


# --------------------------------------------------------------------------
# reduction="mean" with weights whose total is subnormal
# --------------------------------------------------------------------------
# The mean is unchanged when every weight is scaled alike, so weights summing to 1e-311 (whose
# reciprocal overflows float64) must give the numbers of the same weights scaled up.


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_mean_with_subnormal_total_weight(name, dtype):
    loss = fl.losses[name]
    rng = np.random.default_rng(5)
    first, target, weight = lc.make_inputs(loss, rng, rows_for(loss, 37), dtype, weighted=True)
    weight = np.abs(np.asarray(weight, dtype=np.float64)) + 0.5
    tiny_exp = -140 if dtype == np.float32 else -1060
    tiny = np.ldexp(weight, tiny_exp).astype(dtype)
    assert 0 < float(np.sum(tiny, dtype=np.float64)) < 2.0 ** (tiny_exp + 10)
    plain = np.ldexp(tiny.astype(np.float64), -tiny_exp).astype(dtype)  # the same bits, scaled
    with np.errstate(all="ignore"):
        got = lc.call(loss, "grad_hess", first, target, sample_weight=tiny, reduction="mean")
        got_v = lc.call(loss, "__call__", first, target, sample_weight=tiny, reduction="mean")
        want = lc.call(loss, "grad_hess", first, target, sample_weight=plain, reduction="mean")
        want_v = lc.call(loss, "__call__", first, target, sample_weight=plain, reduction="mean")
    for g, w in zip(lc.flatten(got), lc.flatten(want)):
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, w, rtol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_pairwise_mean_with_subnormal_total_weight():
    rng = np.random.default_rng(6)
    scores = rng.normal(size=9)
    rel = rng.integers(0, 3, size=9).astype(np.float64)
    w = np.array([1.0, 3.0, 2.0])
    for loss in (fl.pairwise_logistic, fl.pairwise_hinge):
        want = loss.grad_hess(scores, rel, group=[3, 3, 3], sample_weight=w, reduction="mean")
        got = loss.grad_hess(scores, rel, group=[3, 3, 3], sample_weight=np.ldexp(w, -1070),
                             reduction="mean")
        for g, e in zip(got, want):
            np.testing.assert_allclose(g, e, rtol=1e-12)
