"""Margin and ranking benchmarks: fastloss against its peers, in one process, on the same
arrays.

Cases (float32 by default, value_and_grad with reduction="mean"):

* ``hinge``        hinge, N = 2e7 scores with 0/1 labels;
* ``mc_hinge``     multiclass_hinge (Crammer-Singer), 200,000 rows x K = 100, integer labels;
* ``mc_hinge_ww``  multiclass_hinge(kind="weston_watkins"), the same arrays: PyTorch's
  multi_margin_loss;
* ``pairwise``     pairwise_logistic, 10,000 groups of 100 documents, relevance 0..4.

Peers, where installed: NumPy (plain vectorised expressions; for ``pairwise`` the n x n
difference matrix of each group, in batches of groups), Numba (a fused ``prange`` loop; over
groups for ``pairwise``), PyTorch CPU (forward + backward: hinge_embedding-style clamp,
multi_margin_loss, and for ``pairwise`` batched n x n matrices) and JAX (``jit(value_and_grad)``,
optax's hinge_loss and multiclass_hinge_loss). Each peer's result is checked against fastloss
before it is timed. Memory bandwidth is measured in the same run with
``fastloss._core.stream``: "triad" (2 reads + 1 write) for ``hinge``, "copy" (1 read + 1
write) for the row cases; ``pairwise`` is compute-bound and reported in ns per pair.

    python bench/margin.py [--cases hinge mc_hinge mc_hinge_ww pairwise] [--threads 1 2]
                           [--dtype float32] [--repeat 5] [--peers numpy numba torch jax]
                           [--isa baseline avx2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # they slow NumPy down; see README
    os.environ.pop(_var, None)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import fastloss as fl
import numpy as np

from cross_entropy import bandwidth, median_time  # same directory

ALL_PEERS = ("numpy", "numba", "torch", "jax")
N_GROUPS, GROUP = 10_000, 100


def make_inputs(case: str, dtype, rng):
    if case == "hinge":
        n = 20_000_000
        t = (rng.random(n) < 0.3).astype(dtype)
        f = (rng.standard_normal(n, dtype=np.float32) * 1.5 + (2 * t - 1)).astype(dtype)
        return f, t
    if case in ("mc_hinge", "mc_hinge_ww"):
        x = rng.standard_normal((200_000, 100), dtype=np.float32).astype(dtype, copy=False)
        return x, rng.integers(0, 100, 200_000)
    s = rng.standard_normal(N_GROUPS * GROUP, dtype=np.float32).astype(dtype, copy=False)
    r = rng.integers(0, 5, N_GROUPS * GROUP).astype(dtype)
    return s, r


def n_pairs(r) -> int:
    """Pairs with different relevance, over all groups."""
    rr = r.reshape(N_GROUPS, GROUP).astype(np.int64)
    counts = np.stack([(rr == k).sum(axis=1) for k in range(5)], axis=1)
    return int(((GROUP * GROUP - (counts ** 2).sum(axis=1)) // 2).sum())


def fastloss_fn(case, a, b):
    g = np.empty_like(a)
    if case == "hinge":
        return lambda: fl.hinge.value_and_grad(a, b, reduction="mean", grad_out=g)
    if case == "mc_hinge":
        return lambda: fl.multiclass_hinge.value_and_grad(a, b, reduction="mean", grad_out=g)
    if case == "mc_hinge_ww":
        return lambda: fl.multiclass_hinge.value_and_grad(a, b, kind="weston_watkins",
                                                          reduction="mean", grad_out=g)
    sizes = np.full(N_GROUPS, GROUP)
    return lambda: fl.pairwise_logistic.value_and_grad(a, b, group=sizes, reduction="sum",
                                                       grad_out=g)


# ---------------------------------------------------------------------------------------
# Peers: each returns a zero-argument callable giving (value, gradient), or None
# ---------------------------------------------------------------------------------------
def peer_numpy(case, a, b, threads):
    if case == "hinge":
        def run():
            y = 2 * b - 1
            z = 1 - y * a
            act = z > 0
            v = np.mean(np.where(act, z, 0), dtype=np.float64)
            g = np.where(act, -y, 0).astype(a.dtype) / a.size
            return v, g
        return run
    if case == "mc_hinge":
        def run():
            rows = np.arange(a.shape[0])
            sy = a[rows, b]
            m = a.copy()
            m[rows, b] = -np.inf
            c = np.argmax(m, axis=1)
            z = 1 + m[rows, c] - sy
            act = z > 0
            v = np.mean(np.maximum(z, 0), dtype=np.float64)
            g = np.zeros_like(a)
            w = act.astype(a.dtype) / a.shape[0]
            g[rows, c] += w
            g[rows, b] -= w
            return v, g
        return run
    if case == "mc_hinge_ww":
        def run():
            rows = np.arange(a.shape[0])
            z = 1 - a[rows, b][:, None] + a
            z[rows, b] = 0
            act = z > 0
            k = a.shape[1]
            v = np.sum(np.maximum(z, 0), dtype=np.float64) / (k * a.shape[0])
            g = act.astype(a.dtype) / (k * a.shape[0])
            g[rows, b] = -act.sum(axis=1) / (k * a.shape[0])
            return v, g
        return run

    def run():  # pairwise: per batch of groups, the n x n matrices
        s = a.reshape(N_GROUPS, GROUP)
        r = b.reshape(N_GROUPS, GROUP)
        g = np.empty_like(s)
        total = 0.0
        for lo in range(0, N_GROUPS, 500):
            ss, rr = s[lo:lo + 500], r[lo:lo + 500]
            d = ss[:, :, None] - ss[:, None, :]
            better = rr[:, :, None] > rr[:, None, :]
            total += float(np.sum(np.where(better, np.logaddexp(0, -d), 0), dtype=np.float64))
            sg = np.where(better, -1 / (1 + np.exp(d)), 0)
            g[lo:lo + 500] = sg.sum(axis=2) - sg.sum(axis=1)
        return total, g.reshape(-1)
    return run


_NUMBA: dict = {}


def peer_numba(case, a, b, threads):
    try:
        import numba as nb
    except ImportError:
        return None
    nb.set_num_threads(min(threads, nb.config.NUMBA_NUM_THREADS))
    if not _NUMBA:
        @nb.njit(parallel=True)
        def hinge_vg(f, t, g):
            n = f.size
            acc = 0.0
            for i in nb.prange(n):
                y = 2.0 * t[i] - 1.0
                z = 1.0 - y * f[i]
                if z > 0:
                    acc += z
                    g[i] = -y / n
                else:
                    g[i] = 0.0
            return acc / n

        @nb.njit(parallel=True)
        def cs_vg(x, y, g):
            n, k = x.shape
            acc = 0.0
            for i in nb.prange(n):
                best = -np.inf
                c = 0
                for j in range(k):
                    g[i, j] = 0.0
                    if j != y[i] and x[i, j] > best:
                        best = x[i, j]
                        c = j
                z = 1.0 + best - x[i, y[i]]
                if z > 0:
                    acc += z
                    g[i, c] = 1.0 / n
                    g[i, y[i]] = -1.0 / n
            return acc / n

        @nb.njit
        def ww_row(x, y, g, i, scale):
            k = x.shape[1]
            sy = x[i, y]
            cnt = 0.0
            row = 0.0
            for j in range(k):
                z = 1.0 - sy + x[i, j]
                if j != y and z > 0:
                    row += z
                    cnt += 1.0
                    g[i, j] = scale
                else:
                    g[i, j] = 0.0
            g[i, y] = -cnt * scale
            return row

        @nb.njit(parallel=True)
        def ww_vg(x, y, g):
            n, k = x.shape
            scale = 1.0 / (n * k)
            rows = np.empty(n)
            for i in nb.prange(n):
                rows[i] = ww_row(x, y[i], g, i, scale)
            return rows.sum() * scale

        @nb.njit
        def pair_group(s, r, g, o, m):
            tot = 0.0
            for i in range(m):
                g[o + i] = 0.0
            for i in range(m):
                for j in range(m):
                    if r[o + i] > r[o + j]:
                        d = s[o + i] - s[o + j]
                        e = np.exp(-abs(d))
                        tot += max(-d, 0.0) + np.log1p(e)
                        sg = e / (1.0 + e) if d >= 0 else 1.0 / (1.0 + e)
                        g[o + i] -= sg
                        g[o + j] += sg
            return tot

        @nb.njit(parallel=True)
        def pair_vg(s, r, g, ng, m):
            acc = np.empty(ng)
            for q in nb.prange(ng):
                acc[q] = pair_group(s, r, g, q * m, m)
            return acc.sum()

        _NUMBA.update(hinge=hinge_vg, cs=cs_vg, ww=ww_vg, pair=pair_vg)
    g = np.empty_like(a)
    if case == "hinge":
        return lambda: (_NUMBA["hinge"](a, b, g), g)
    if case == "mc_hinge":
        return lambda: (_NUMBA["cs"](a, b, g), g)
    if case == "mc_hinge_ww":
        return lambda: (_NUMBA["ww"](a, b, g), g)
    return lambda: (_NUMBA["pair"](a, b, g, N_GROUPS, GROUP), g)


def peer_torch(case, a, b, threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    F = torch.nn.functional
    x = torch.from_numpy(a).requires_grad_(True)
    if case == "hinge":
        y = torch.from_numpy(2 * b - 1)

        def run():
            x.grad = None
            loss = torch.clamp_min(1 - y * x, 0).mean()
            loss.backward()
            return float(loss.detach()), x.grad.numpy()
        return run
    if case == "mc_hinge":
        return None  # no Crammer-Singer loss in PyTorch
    if case == "mc_hinge_ww":
        t = torch.from_numpy(b)

        def run():
            x.grad = None
            loss = F.multi_margin_loss(x, t)
            loss.backward()
            return float(loss.detach()), x.grad.numpy()
        return run
    r = torch.from_numpy(b.reshape(N_GROUPS, GROUP))

    def run():
        x.grad = None
        s = x.view(N_GROUPS, GROUP)
        total = 0
        for lo in range(0, N_GROUPS, 500):
            ss, rr = s[lo:lo + 500], r[lo:lo + 500]
            d = ss[:, :, None] - ss[:, None, :]
            better = (rr[:, :, None] > rr[:, None, :]).to(ss.dtype)
            total = total + (F.softplus(-d) * better).sum()
        total.backward()
        return float(total.detach()), x.grad.numpy()
    return run


def peer_jax(case, a, b, threads):
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError:
        return None
    if case == "hinge":
        def f(z, t):
            return jnp.mean(optax.losses.hinge_loss(z, 2 * t - 1))
    elif case == "mc_hinge":
        def f(x, y):
            return jnp.mean(optax.losses.multiclass_hinge_loss(x, y))
    elif case == "mc_hinge_ww":
        def f(x, y):
            k = x.shape[1]
            sy = jnp.take_along_axis(x, y[:, None], axis=1)
            z = jnp.maximum(1 - sy + x, 0) * (1 - jax.nn.one_hot(y, k, dtype=x.dtype))
            return jnp.sum(z) / (k * x.shape[0])
    else:
        def f(s, r):
            ss = s.reshape(N_GROUPS, GROUP)
            rr = r.reshape(N_GROUPS, GROUP)

            def one(sg, rg):
                d = sg[:, None] - sg[None, :]
                return jnp.sum(jnp.where(rg[:, None] > rg[None, :], jax.nn.softplus(-d), 0.0))
            return jnp.sum(jax.lax.map(lambda q: jax.vmap(one)(*q),
                                       (ss.reshape(-1, 100, GROUP), rr.reshape(-1, 100, GROUP))))
    vg = jax.jit(jax.value_and_grad(f))
    xa, xb = jnp.asarray(a), jnp.asarray(b)

    def run():
        v, g = vg(xa, xb)
        g.block_until_ready()
        return float(v), np.asarray(g)
    return run


PEERS = {"numpy": peer_numpy, "numba": peer_numba, "torch": peer_torch, "jax": peer_jax}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["hinge", "mc_hinge", "mc_hinge_ww", "pairwise"])
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
    print(f"fastloss {fl.__version__} | {platform.processor() or platform.machine()} | "
          f"cpu_count {os.cpu_count()} | ISAs {', '.join(args.isa)} | {dtype.name} | "
          f"load {os.getloadavg()[0]:.2f}")
    unit_name = {"pairwise": "ns/pair"}
    for case in args.cases:
        a, b = make_inputs(case, dtype, rng)
        if case == "pairwise":
            units = n_pairs(b)
            nbytes, kind = None, None
        else:
            units = a.size
            nbytes = a.nbytes * 3 if case == "hinge" else a.nbytes * 2
            kind = "triad" if case == "hinge" else "copy"
        un = unit_name.get(case, "ns/elem")
        header = (f"{'case':<12}{'thr':>4}  {'impl':<16}{'time ms':>10}{un:>10}{'GB/s':>8}"
                  f"{'% bw':>7}{'fastloss x':>12}")
        for threads in args.threads:
            bw = bandwidth(kind, threads, args.repeat) if kind else None
            extra = f"; measured {kind} bandwidth {bw:.1f} GB/s" if kind else f"; {units} pairs"
            print(f"\n{case}: {a.shape} {dtype.name}, {threads} thread(s){extra}")
            print(header)
            fl_times = {}
            ref = None
            for isa in args.isa:
                prev = fl._set_isa(isa)
                try:
                    with fl.threads(threads):
                        fn = fastloss_fn(case, a, b)
                        if ref is None:
                            v0, g0 = fn()
                            ref = (float(v0), np.array(g0, dtype=np.float64))
                        t = median_time(fn, args.repeat)
                finally:
                    fl._set_isa(prev)
                fl_times[isa] = t
                row = {"case": case, "threads": threads, "impl": f"fastloss[{isa}]", "time": t,
                           "ns_per_unit": t / units * 1e9, "unit": un, "shape": list(a.shape)}
                gbs = pct = ""
                if kind:
                    row.update(gbs=nbytes / t / 1e9, pct_bw=100 * nbytes / t / 1e9 / bw,
                               bandwidth_kind=kind, bandwidth_gbs=bw)
                    gbs, pct = f"{row['gbs']:.1f}", f"{row['pct_bw']:.0f}%"
                results.append(row)
                print(f"{case:<12}{threads:>4}  {row['impl']:<16}{t * 1e3:>10.2f}"
                      f"{row['ns_per_unit']:>10.3f}{gbs:>8}{pct:>7}")
            best_fl = min(fl_times.values())
            best_peer = None
            for name in args.peers:
                fn = PEERS[name](case, a, b, threads)
                if fn is None:
                    continue
                v, g = fn()
                scale = 1.0 / (a.shape[0] if case != "hinge" else a.size)
                gg = np.asarray(g, dtype=np.float64).reshape(ref[1].shape)
                keep = slice(None)
                if case == "hinge":
                    # On the kink (y f == 1 exactly) PyTorch's clamp passes the slope and JAX
                    # half of it; fastloss gives 0 (docs/losses.md). Compared elsewhere.
                    keep = (1 - (2 * b.astype(np.float64) - 1) * a) != 0
                ok = bool(np.isclose(v, ref[0], rtol=1e-3) and np.allclose(
                    gg[keep], ref[1][keep], rtol=1e-2,
                    atol=1e-5 * (scale if case != "pairwise" else 1.0)))
                t = median_time(fn, args.repeat)
                best_peer = t if best_peer is None else min(best_peer, t)
                row = {"case": case, "threads": threads, "impl": name, "time": t,
                           "ns_per_unit": t / units * 1e9, "unit": un, "speedup": t / best_fl, "checked": ok}
                results.append(row)
                flag = "" if ok else "  (result differs!)"
                print(f"{case:<12}{threads:>4}  {name:<16}{t * 1e3:>10.2f}{row['ns_per_unit']:>10.3f}"
                      f"{'':>8}{'':>7}{t / best_fl:>11.1f}x{flag}")
            if best_peer is not None:
                print(f"{'':<16}fastest peer {best_peer * 1e3:.2f} ms -> fastloss "
                      f"{best_peer / best_fl:.1f}x")
                results.append({"case": case, "threads": threads, "impl": "summary",
                                    "fastest_peer": best_peer, "fastloss": best_fl,
                                    "speedup_vs_fastest": best_peer / best_fl})
        del a, b
    print(f"\nload {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                   "python": sys.version, "load_end": os.getloadavg()[0],
                                   "config": fl.show_config(mode="dicts")},
                       "results": results}, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
