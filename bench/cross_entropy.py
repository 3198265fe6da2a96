"""Cross-entropy benchmarks: fastloss against its peers, in one process, on the same arrays.

Cases (float32 by default, value_and_grad with reduction="mean"):

* ``sigmoid``   sigmoid_cross_entropy, N = 2e7 logits with 0/1 targets;
* ``softmax``   softmax_cross_entropy, N = 200,000 rows x K = 100, integer labels;
* ``large_k``   softmax_cross_entropy, N = 2,000 rows x K = 131,072 (a language-model
  vocabulary), integer labels.

Peers, where installed: NumPy (plain expressions), Numba (a fused ``prange`` loop, float64
sums), PyTorch CPU (forward + backward), JAX (``jit(value_and_grad)``) and scikit-learn's
loss module (``HalfBinomialLoss`` / ``HalfMultinomialLoss``, ``loss_gradient``). Each peer's
result is checked against fastloss before it is timed. The machine's memory bandwidth is
measured in the same run with ``fastloss._core.stream`` ("triad": 2 reads + 1 write for the
sigmoid case; "copy": 1 read + 1 write for the softmax cases, whose labels are 1/K of the
traffic), and each fastloss time is reported as a fraction of it.

    python bench/cross_entropy.py [--cases sigmoid softmax large_k] [--threads 1 2]
                                  [--dtype float32] [--repeat 5] [--peers numpy numba torch jax sklearn]
                                  [--isa baseline avx2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # they slow NumPy down; see README
    os.environ.pop(_var, None)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# NumPy's OpenBLAS starts worker threads that spin for a while after the import and take CPU
# from the threads being timed (none of the timed code calls BLAS); on the 2-core machine
# in results/ this moved 2-thread times by up to 20%. Set it to something else to keep them.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import fastloss as fl  # noqa: E402

ALL_PEERS = ("numpy", "numba", "torch", "jax", "sklearn")


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up (JIT compilation, first-touch of outputs)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------
def make_inputs(case: str, dtype, rng):
    if case == "sigmoid":
        n = 20_000_000
        t = (rng.random(n) < 0.3).astype(dtype)
        z = (rng.standard_normal(n, dtype=np.float32) * 2 + (2 * t - 1)).astype(dtype)
        return z, t
    rows, k = (200_000, 100) if case == "softmax" else (2_000, 131_072)
    x = rng.standard_normal((rows, k), dtype=np.float32).astype(dtype, copy=False)
    y = rng.integers(0, k, rows)
    return x, y


def fastloss_fn(case, a, b):
    g = np.empty_like(a)
    loss = fl.sigmoid_cross_entropy if case == "sigmoid" else fl.softmax_cross_entropy

    def run():
        return loss.value_and_grad(a, b, reduction="mean", grad_out=g)

    return run


# ---------------------------------------------------------------------------------------
# Peers: each returns a zero-argument callable giving (mean value, gradient), or None
# ---------------------------------------------------------------------------------------
def peer_numpy(case, a, b, threads):
    if case == "sigmoid":
        def run():
            v = np.mean(np.logaddexp(0, a) - b * a, dtype=np.float64)
            g = (1 / (1 + np.exp(-a)) - b) / a.size
            return v, g
        return run

    def run():
        m = a.max(axis=1, keepdims=True)
        e = np.exp(a - m)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(a.shape[0])
        v = np.mean(np.log(s[:, 0]) + m[:, 0] - a[rows, b], dtype=np.float64)
        g = e / s
        g[rows, b] -= 1
        g /= a.shape[0]
        return v, g
    return run


_NUMBA_CACHE: dict = {}


def peer_numba(case, a, b, threads):
    try:
        import numba as nb
    except ImportError:
        return None
    nb.set_num_threads(min(threads, nb.config.NUMBA_NUM_THREADS))
    if "kernels" not in _NUMBA_CACHE:
        @nb.njit(parallel=True, fastmath=False)
        def sigmoid_vg(z, t, g):
            n = z.size
            acc = 0.0
            for i in nb.prange(n):
                zi = z[i]
                e = np.exp(-abs(zi))
                sp = max(zi, 0.0) + np.log1p(e)
                acc += sp - t[i] * zi
                s = 1.0 / (1.0 + e) if zi >= 0 else e / (1.0 + e)
                g[i] = (s - t[i]) / n
            return acc / n

        @nb.njit(parallel=True, fastmath=False)
        def softmax_vg(x, y, g):
            n, k = x.shape
            acc = 0.0
            for i in nb.prange(n):
                m = x[i, 0]
                for j in range(1, k):
                    if x[i, j] > m:
                        m = x[i, j]
                s = 0.0
                for j in range(k):
                    e = np.exp(x[i, j] - m)
                    g[i, j] = e
                    s += e
                acc += np.log(s) + m - x[i, y[i]]
                inv = 1.0 / (s * n)
                for j in range(k):
                    g[i, j] = g[i, j] * inv
                g[i, y[i]] -= 1.0 / n
            return acc / n

        _NUMBA_CACHE["kernels"] = (sigmoid_vg, softmax_vg)
    sigmoid_vg, softmax_vg = _NUMBA_CACHE["kernels"]
    g = np.empty_like(a)
    if case == "sigmoid":
        return lambda: (sigmoid_vg(a, b, g), g)
    return lambda: (softmax_vg(a, b, g), g)


def peer_torch(case, a, b, threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    F = torch.nn.functional
    x = torch.from_numpy(a).requires_grad_(True)
    t = torch.from_numpy(b)

    def run():
        x.grad = None
        if case == "sigmoid":
            loss = F.binary_cross_entropy_with_logits(x, t)
        else:
            loss = F.cross_entropy(x, t)
        loss.backward()
        return float(loss.detach()), x.grad.numpy()
    return run


def peer_jax(case, a, b, threads):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None

    if case == "sigmoid":
        def f(z, t):
            return jnp.mean(jnp.logaddexp(0.0, z) - t * z)
    else:
        def f(x, y):
            lse = jax.nn.logsumexp(x, axis=-1)
            return jnp.mean(lse - jnp.take_along_axis(x, y[:, None], axis=-1)[:, 0])
    vg = jax.jit(jax.value_and_grad(f))
    xa, xb = jnp.asarray(a), jnp.asarray(b)

    def run():
        v, g = vg(xa, xb)
        g.block_until_ready()
        return float(v), np.asarray(g)
    return run


def peer_sklearn(case, a, b, threads):
    try:
        from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss
    except ImportError:
        return None
    if case == "sigmoid":
        loss = HalfBinomialLoss()
        y = b.astype(a.dtype)
        lo = np.empty_like(a)
        go = np.empty_like(a)

        def run():
            loss.loss_gradient(y_true=y, raw_prediction=a, loss_out=lo, gradient_out=go,
                               n_threads=threads)
            return float(np.mean(lo, dtype=np.float64)), go / a.size
        return run
    loss = HalfMultinomialLoss(n_classes=a.shape[1])
    y = b.astype(a.dtype)
    lo = np.empty(a.shape[0], dtype=a.dtype)
    go = np.empty_like(a)

    def run():
        loss.loss_gradient(y_true=y, raw_prediction=a, loss_out=lo, gradient_out=go,
                           n_threads=threads)
        return float(np.mean(lo, dtype=np.float64)), go / a.shape[0]
    return run


PEERS = {"numpy": peer_numpy, "numba": peer_numba, "torch": peer_torch, "jax": peer_jax,
         "sklearn": peer_sklearn}


def bandwidth(kind: str, threads: int, repeat: int) -> float:
    n = 20_000_000
    a = np.ones(n, np.float32)
    b = np.ones(n, np.float32)
    o = np.empty(n, np.float32)
    nbytes = {"copy": 8 * n, "triad": 12 * n}[kind.removesuffix("_nt")]
    with fl.threads(threads):
        t = median_time(lambda: fl._core.stream(kind, a, b if "triad" in kind else None, o), repeat)
    return nbytes / t / 1e9


def best_bandwidth(kind: str, threads: int, repeat: int) -> tuple[float, str]:
    """The larger of the probe with plain stores and with streaming stores (the ones the
    elementwise kernels use for large outputs: fastloss.set_streaming_stores), and a line
    that names both."""
    plain = bandwidth(kind, threads, repeat)
    nt = bandwidth(kind + "_nt", threads, repeat)
    return max(plain, nt), (f"measured {kind} bandwidth {plain:.1f} GB/s with plain stores, "
                            f"{nt:.1f} GB/s with streaming stores (% bw: of the larger)")


def header_line(isas, dtype) -> str:
    stream = fl.streaming_stores()
    return (f"fastloss {fl.__version__} | {platform.processor() or platform.machine()} | "
            f"cpu_count {os.cpu_count()} | ISAs {', '.join(isas)} | {dtype.name} | "
            f"buffer cache {fl.buffer_cache_info()['max_bytes'] >> 20} MiB | streaming stores "
            + ("off" if stream is None else f"from {stream / 2**20:g} MiB of outputs"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["sigmoid", "softmax", "large_k"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, os.cpu_count() or 2])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--peers", nargs="+", default=list(ALL_PEERS))
    ap.add_argument("--isa", nargs="+", default=list(fl._core.supported_isas()))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(7)
    results = []
    print(header_line(args.isa, dtype))
    header = f"{'case':<9}{'thr':>4}  {'impl':<16}{'time ms':>10}{'ns/logit':>10}{'GB/s':>8}{'% bw':>7}{'fastloss x':>12}"
    for case in args.cases:
        a, b = make_inputs(case, dtype, rng)
        nbytes = a.nbytes * (3 if case == "sigmoid" else 2)  # required traffic
        kind = "triad" if case == "sigmoid" else "copy"
        for threads in args.threads:
            bw, bw_line = best_bandwidth(kind, threads, args.repeat)
            print(f"\n{case}: {a.shape} {dtype.name}, {threads} thread(s); {bw_line}")
            print(header)
            fl_times = {}
            ref = None
            for isa in args.isa:
                prev = fl._set_isa(isa)
                try:
                    with fl.threads(threads):
                        fn = fastloss_fn(case, a, b)
                        ref = ref if ref is not None else fn()
                        t = median_time(fn, args.repeat)
                finally:
                    fl._set_isa(prev)
                fl_times[isa] = t
                gbs = nbytes / t / 1e9
                row = dict(case=case, threads=threads, impl=f"fastloss[{isa}]", time=t,
                           ns_per_logit=t / a.size * 1e9, gbs=gbs, pct_bw=100 * gbs / bw,
                           bandwidth_kind=kind, bandwidth_gbs=bw, shape=list(a.shape))
                results.append(row)
                print(f"{case:<9}{threads:>4}  {row['impl']:<16}{t * 1e3:>10.2f}{row['ns_per_logit']:>10.3f}"
                      f"{gbs:>8.1f}{row['pct_bw']:>6.0f}%{'':>12}")
            best_fl = min(fl_times.values())
            best_peer = None
            for name in args.peers:
                if case == "large_k" and name in ("sklearn",):
                    continue  # its multinomial loss allocates per-row temporaries of K: minutes
                fn = PEERS[name](case, a, b, threads)
                if fn is None:
                    continue
                v, g = fn()
                ok = np.isclose(v, ref[0], rtol=1e-3) and np.allclose(
                    np.asarray(g, dtype=np.float64), ref[1], rtol=1e-2, atol=1e-6 / a.shape[0])
                t = median_time(fn, args.repeat)
                best_peer = t if best_peer is None else min(best_peer, t)
                row = dict(case=case, threads=threads, impl=name, time=t,
                           ns_per_logit=t / a.size * 1e9, speedup=t / best_fl, checked=bool(ok))
                results.append(row)
                flag = "" if ok else "  (result differs!)"
                print(f"{case:<9}{threads:>4}  {name:<16}{t * 1e3:>10.2f}{row['ns_per_logit']:>10.3f}"
                      f"{'':>8}{'':>7}{t / best_fl:>11.1f}x{flag}")
            if best_peer is not None:
                print(f"{'':<13}fastest peer {best_peer * 1e3:.2f} ms -> fastloss {best_peer / best_fl:.1f}x")
                results.append(dict(case=case, threads=threads, impl="summary",
                                    fastest_peer=best_peer, fastloss=best_fl,
                                    speedup_vs_fastest=best_peer / best_fl))
        del a, b
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                   "python": sys.version, "config": fl.show_config(mode="dicts")},
                       "results": results}, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
