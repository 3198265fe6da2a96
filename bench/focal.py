"""Class-imbalance loss benchmarks: fastloss against its peers, in one process, same arrays.

Cases (float32 by default, value_and_grad with reduction="mean"):

* ``sigmoid_focal``  N = 2e7 logits, 0/1 targets, gamma = 2, alpha = 0.25;
* ``softmax_focal``  N = 200,000 rows x K = 100, integer labels, gamma = 2;
* ``power``          sigmoid_power_cross_entropy (n = 3, the general path; and n = 2, the
  default, which has closed forms) on the sigmoid case's arrays, with sigmoid_cross_entropy on
  the same arrays for the ratio the issue asks about.

Peers, where installed: NumPy (plain expressions), Numba (a fused ``prange`` loop with
float64 sums), PyTorch CPU (torchvision's formula in torch ops, forward + backward) and JAX
(``jit(value_and_grad)``; optax's ``sigmoid_focal_loss`` for the binary case). Each peer's
result is checked against fastloss before it is timed. Bandwidth is measured in the same run
(``fastloss._core.stream``: "triad" for the elementwise cases, "copy" for the row case).

    python bench/focal.py [--cases sigmoid_focal softmax_focal power] [--threads 1 2]
                          [--repeat 5] [--peers numpy numba torch jax] [--isa avx2 avx512]
                          [--json PATH]

``--isa`` times fastloss under each named ISA (default: the active one); the ratios are to the
fastest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as in cross_entropy.py (spinning BLAS threads)

import numpy as np  # noqa: E402

from cross_entropy import best_bandwidth, header_line, median_time  # noqa: E402  (same directory)

import fastloss as fl

GAMMA, ALPHA, N_POW = 2.0, 0.25, 3.0
ALL_PEERS = ("numpy", "numba", "torch", "jax")


def make_inputs(case, dtype, rng):
    if case in ("sigmoid_focal", "power"):
        n = 20_000_000
        t = (rng.random(n) < 0.1).astype(dtype)
        z = (rng.standard_normal(n, dtype=np.float32) * 2 + 2 * (2 * t - 1)).astype(dtype)
        return z, t
    x = rng.standard_normal((200_000, 100), dtype=np.float32).astype(dtype, copy=False)
    return x, rng.integers(0, 100, 200_000)


def fastloss_fns(case, a, b):
    g = np.empty_like(a)
    if case == "sigmoid_focal":
        return {"fastloss": lambda: fl.sigmoid_focal.value_and_grad(
            a, b, gamma=GAMMA, alpha=ALPHA, reduction="mean", grad_out=g)}
    if case == "softmax_focal":
        return {"fastloss": lambda: fl.softmax_focal.value_and_grad(
            a, b, gamma=GAMMA, reduction="mean", grad_out=g)}
    return {"fastloss": lambda: fl.sigmoid_power_cross_entropy.value_and_grad(
                a, b, n=N_POW, reduction="mean", grad_out=g),
            "fastloss n=2 (default)": lambda: fl.sigmoid_power_cross_entropy.value_and_grad(
                a, b, reduction="mean", grad_out=g),
            "fastloss sigmoid_ce": lambda: fl.sigmoid_cross_entropy.value_and_grad(
                a, b, reduction="mean", grad_out=g)}


# ---------------------------------------------------------------------------------------
# Peers: a zero-argument callable giving (mean value, gradient), or None when not installed
# ---------------------------------------------------------------------------------------
def peer_numpy(case, a, b, threads):
    if case == "softmax_focal":
        def run():
            m = a.max(axis=1, keepdims=True)
            e = np.exp(a - m)
            s = e.sum(axis=1, keepdims=True)
            p = e / s
            rows = np.arange(a.shape[0])
            py = p[rows, b]
            lpy = np.log(py)
            om = 1 - py
            phi = om ** 2 - 2 * py * om * lpy
            v = -np.mean(om ** 2 * lpy, dtype=np.float64)
            g = p * phi[:, None]
            g[rows, b] -= phi
            return v, g / a.shape[0]
        return run
    if case == "power":
        def run():
            lp = -np.logaddexp(0, -a)          # log p
            lpn = N_POW * lp                   # log p^n
            l1 = np.log(-np.expm1(lpn))        # log(1 - p^n)
            v = np.mean(-b * lpn - (1 - b) * l1, dtype=np.float64)
            s1 = np.exp(-np.logaddexp(0, a))   # 1 - p
            rho = np.exp(lpn - l1)
            return v, N_POW * s1 * ((1 - b) * rho - b) / a.size
        return run

    def run():
        p = 1 / (1 + np.exp(-a))
        ce = np.logaddexp(0, a) - a * b
        pt = p * b + (1 - p) * (1 - b)
        at = ALPHA * b + (1 - ALPHA) * (1 - b)
        q = 1 - pt
        v = np.mean(at * ce * q * q, dtype=np.float64)
        dq = (1 - 2 * b) * p * (1 - p)
        return v, at * ((p - b) * q * q + ce * 2 * q * dq) / a.size
    return run


def peer_numba(case, a, b, threads):
    try:
        import numba as nb
    except ImportError:
        return None
    nb.set_num_threads(threads)
    if case == "softmax_focal":
        @nb.njit(parallel=True, fastmath=False)
        def kern(x, y, g):
            n, k = x.shape
            tot = np.zeros(n)
            for i in nb.prange(n):
                m = x[i, 0]
                for j in range(1, k):
                    m = max(m, x[i, j])
                s = 0.0
                for j in range(k):
                    e = np.exp(x[i, j] - m)
                    g[i, j] = e
                    s += e
                py = g[i, y[i]] / s
                lpy = np.log(py)
                om = 1.0 - py
                phi = om * om - 2.0 * py * om * lpy
                tot[i] = -om * om * lpy
                for j in range(k):
                    g[i, j] = g[i, j] / s * phi / n
                g[i, y[i]] -= phi / n
            return tot.sum() / n
    elif case == "power":
        @nb.njit(parallel=True, fastmath=False)
        def kern(z, t, g):
            n = z.shape[0]
            tot = 0.0
            for i in nb.prange(n):
                zi = z[i]
                sp = max(-zi, 0.0) + np.log1p(np.exp(-abs(zi)))  # -log p
                a = N_POW * sp
                l1 = np.log(-np.expm1(-a)) if a <= 0.6931471805599453 else np.log1p(-np.exp(-a))
                tot += t[i] * a - (1 - t[i]) * l1
                s1 = 1.0 / (1.0 + np.exp(zi))
                rho = np.exp(-a - l1)
                g[i] = N_POW * s1 * ((1 - t[i]) * rho - t[i]) / n
            return tot / n
    else:
        @nb.njit(parallel=True, fastmath=False)
        def kern(z, t, g):
            n = z.shape[0]
            tot = 0.0
            for i in nb.prange(n):
                zi, ti = z[i], t[i]
                p = 1.0 / (1.0 + np.exp(-zi))
                ce = max(zi, 0.0) - zi * ti + np.log1p(np.exp(-abs(zi)))
                q = ti * (1 - p) + (1 - ti) * p
                at = ALPHA * ti + (1 - ALPHA) * (1 - ti)
                tot += at * ce * q * q
                dq = (1 - 2 * ti) * p * (1 - p)
                g[i] = at * ((p - ti) * q * q + ce * 2 * q * dq) / n
            return tot / n
    g = np.empty_like(a)

    def run():
        return kern(a, b, g), g
    return run


def peer_torch(case, a, b, threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    F = torch.nn.functional
    bt = torch.from_numpy(b)

    def run():
        x = torch.from_numpy(a).requires_grad_(True)
        if case == "softmax_focal":
            logp = F.log_softmax(x, dim=1).gather(1, bt[:, None])[:, 0]
            loss = (-(1 - logp.exp()) ** 2 * logp).mean()
        elif case == "power":
            lpn = N_POW * F.logsigmoid(x)
            loss = (-bt * lpn - (1 - bt) * torch.log(-torch.expm1(lpn))).mean()
        else:  # torchvision.ops.sigmoid_focal_loss, written out
            p = torch.sigmoid(x)
            ce = F.binary_cross_entropy_with_logits(x, bt, reduction="none")
            pt = p * bt + (1 - p) * (1 - bt)
            loss = ((ALPHA * bt + (1 - ALPHA) * (1 - bt)) * ce * (1 - pt) ** 2).mean()
        loss.backward()
        return float(loss), x.grad.numpy()
    return run


def peer_jax(case, a, b, threads):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if case == "softmax_focal":
        def f(x, y):
            logp = jnp.take_along_axis(jax.nn.log_softmax(x), y[:, None], axis=1)[:, 0]
            return jnp.mean(-(1 - jnp.exp(logp)) ** 2 * logp)
    elif case == "power":
        def f(x, t):
            lpn = N_POW * jax.nn.log_sigmoid(x)
            return jnp.mean(-t * lpn - (1 - t) * jnp.log(-jnp.expm1(lpn)))
    else:
        try:
            import optax
        except ImportError:
            return None

        def f(x, t):
            return jnp.mean(optax.sigmoid_focal_loss(x, t, alpha=ALPHA, gamma=GAMMA))
    vg = jax.jit(jax.value_and_grad(f))
    aj, bj = jnp.asarray(a), jnp.asarray(b)

    def run():
        v, g = vg(aj, bj)
        g.block_until_ready()
        return float(v), np.asarray(g)
    return run


PEERS = {"numpy": peer_numpy, "numba": peer_numba, "torch": peer_torch, "jax": peer_jax}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["sigmoid_focal", "softmax_focal", "power"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, os.cpu_count() or 2])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--peers", nargs="+", default=list(ALL_PEERS))
    ap.add_argument("--isa", nargs="+", default=[fl._core.active_isa()],
                    help="fastloss runs under each (default: the active one)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(11)
    results = []
    cfg = fl.show_config(mode="dicts")
    print(header_line(args.isa, dtype))
    for case in args.cases:
        a, b = make_inputs(case, dtype, rng)
        rowwise = a.ndim == 2
        nbytes = a.nbytes * (2 if rowwise else 3)
        kind = "copy" if rowwise else "triad"
        for threads in args.threads:
            bw, bw_line = best_bandwidth(kind, threads, args.repeat)
            print(f"\n{case}: {a.shape} {dtype.name}, {threads} thread(s); {bw_line}")
            print(f"{'impl':<24}{'time ms':>10}{'ns/elem':>10}{'GB/s':>8}{'% bw':>7}{'peer/fastloss':>15}")
            times, ref = {}, None
            tags = {isa: "" if len(args.isa) == 1 else f" [{isa}]" for isa in args.isa}
            for isa, tag in tags.items():
                prev = fl._set_isa(isa)
                try:
                    with fl.threads(threads):
                        own = fastloss_fns(case, a, b)
                        if ref is None:
                            v0, g0 = own["fastloss"]()
                            ref = (v0, np.array(g0, copy=True))  # the others reuse the buffer
                        times.update({name + tag: median_time(fn, args.repeat)
                                      for name, fn in own.items()})
                finally:
                    fl._set_isa(prev)
            # the ratios are to the fastest ISA's time for the case's own loss
            best = min(times["fastloss" + tag] for tag in tags.values())
            for name, t in times.items():
                gbs = nbytes / t / 1e9
                results.append(dict(case=case, threads=threads, impl=name, time=t, gbs=gbs,
                                    pct_bw=100 * gbs / bw, bandwidth_kind=kind, bandwidth_gbs=bw))
                print(f"{name:<24}{t * 1e3:>10.2f}{t / a.size * 1e9:>10.3f}{gbs:>8.1f}"
                      f"{100 * gbs / bw:>6.0f}%")
            for tag in tags.values():
                if "fastloss sigmoid_ce" + tag in times:
                    ce = times["fastloss sigmoid_ce" + tag]
                    print(f"{'':<4}power / sigmoid_cross_entropy time{tag}: n = {N_POW:g}: "
                          f"{times['fastloss' + tag] / ce:.2f}; n = 2 (default): "
                          f"{times['fastloss n=2 (default)' + tag] / ce:.2f}")
            fastest = None
            for name in args.peers:
                fn = PEERS[name](case, a, b, threads)
                if fn is None:
                    continue
                v, g = fn()
                ok = bool(np.isclose(v, ref[0], rtol=1e-3) and np.allclose(
                    np.asarray(g, dtype=np.float64), ref[1], rtol=2e-2, atol=1e-6 / a.shape[0]))
                t = median_time(fn, args.repeat)
                fastest = t if fastest is None else min(fastest, t)
                results.append(dict(case=case, threads=threads, impl=name, time=t,
                                    ratio=t / best, checked=ok))
                print(f"{name:<24}{t * 1e3:>10.2f}{t / a.size * 1e9:>10.3f}{'':>15}"
                      f"{t / best:>14.1f}x{'' if ok else '  (result differs!)'}")
            if fastest is not None:
                print(f"{'':<4}fastest peer {fastest * 1e3:.2f} ms -> fastloss {fastest / best:.1f}x")
                results.append(dict(case=case, threads=threads, impl="summary",
                                    speedup_vs_fastest=fastest / best))
        del a, b
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                   "python": sys.version, "config": cfg}, "results": results},
                      fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
