"""fastloss.dask on a local 2-worker cluster against in-memory fastloss, same data size.

    python bench/dask_scale.py                      # N = 2e8 float32, 2 workers
    python bench/dask_scale.py --size 2e7 --repeat 3
    python bench/dask_scale.py --losses margin_ranking pairwise_logistic

margin_ranking is timed as ``margin_ranking(pred, target, 1.0)`` (x2 the second array, y a
broadcast scalar); pairwise_logistic on the first --rank-size documents in query groups of
--group-size, in blocks of a quarter of the documents per worker (moved to the group
boundaries, which costs dask a rechunk).

The in-memory side: one process, fastloss with every core (OpenMP), on NumPy arrays already
in memory. The dask side: a dask.distributed LocalCluster of W worker processes with one
thread each (the nanny sets OMP_NUM_THREADS=1 in workers), on dask arrays of the same size
persisted in the workers' memory (generated there, as data loaded by a cluster would be),
chunked along the samples. Both compute ``reduction="mean"`` (a float64 scalar) of the same
losses; the timed dask call is ``fld.<loss>(...).compute()``: graph construction, scheduling,
the blocks on the workers and the tree reduction. Medians of --repeat runs after one warm-up.
The two results are compared (the data differ: the dask side draws its own random numbers,
so the means agree statistically, not bit for bit).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def median_time(fn, repeat):
    fn()  # warm-up
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=float, default=2e8, help="predictions (default 2e8)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=float, default=2 ** 25,
                    help="elements per dask chunk (default 2^25: 128 MiB of float32, dask's "
                         "default chunk size)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--losses", nargs="+", default=["squared_error", "sigmoid_cross_entropy"])
    ap.add_argument("--rank-size", type=float, default=2e7,
                    help="documents for pairwise losses (default 2e7)")
    ap.add_argument("--group-size", type=int, default=20,
                    help="documents per query group for pairwise losses (default 20)")
    args = ap.parse_args(argv)
    n, chunk = int(args.size), int(args.chunk)

    import dask
    import dask.array as da
    import distributed
    import fastloss as fl
    import fastloss.dask as fld
    import numpy as np

    print(f"# fastloss {fl.__version__}, dask {dask.__version__}, distributed "
          f"{distributed.__version__}, NumPy {np.__version__}, Python {platform.python_version()}")
    print(f"# {cpu_model()}, {os.cpu_count()} CPUs, ISA {fl._core.active_isa()}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print(f"# N = {n:,} float32 predictions, {args.workers} workers x 1 thread, chunks of "
          f"{chunk:,}; in memory: fastloss with {fl.get_num_threads()} threads")

    rng = np.random.default_rng(0)
    pred = rng.standard_normal(n, dtype=np.float32)
    target = (rng.random(n, dtype=np.float32) < 0.1).astype(np.float32)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                           processes=True, dashboard_address=None,
                                           silence_logs=40, memory_limit=0)
        client = distributed.Client(cluster)
    try:
        state = da.random.RandomState(1)
        dpred = state.standard_normal(n, chunks=chunk).astype(np.float32)
        dtarget = (state.random_sample(n, chunks=chunk) < 0.1).astype(np.float32)
        dpred, dtarget = client.persist([dpred, dtarget])
        distributed.wait([dpred, dtarget])

        rows = []
        m = min(n, int(args.rank_size)) // args.group_size * args.group_size
        sizes = np.full(m // args.group_size, args.group_size, dtype=np.int64)
        for name in args.losses:
            loss, dloss = fl.losses[name], fld.losses[name]
            if loss.kind == "margin_ranking":
                inputs = (pred, target, np.float32(1.0))
                dinputs = (dpred, dtarget, np.float32(1.0))
                kw = {}
            elif loss.kind == "pairwise":
                # Blocks of m / (4 workers) documents (the first m of the arrays would be one
                # block of the default chunk), persisted like the others.
                rchunk = -(-m // (4 * args.workers))
                inputs = (pred[:m], np.floor(target[:m] * 4))
                dinputs = client.persist([dpred[:m].rechunk(rchunk),
                                          da.floor(dtarget[:m] * 4).rechunk(rchunk)])
                distributed.wait(dinputs)
                kw = {"group": sizes}
                name = f"{name} ({m:,} documents, groups of {args.group_size})"
            else:
                inputs, dinputs, kw = (pred, target), (dpred, dtarget), {}
            t_mem, t_mem_min, v_mem = median_time(
                lambda: loss(*inputs, reduction="mean", **kw), args.repeat)
            t_dask, t_dask_min, v_dask = median_time(
                lambda: dloss(*dinputs, reduction="mean", **kw).compute(), args.repeat)
            rows.append((name, t_mem, t_dask, float(v_mem), float(v_dask), t_mem_min,
                         t_dask_min))
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client.close()
            cluster.close()

    print()
    print("| loss (mean) | in memory s | dask s | dask / in memory | in-memory value "
          "| dask value |")
    print("|---|---|---|---|---|---|")
    for name, t_mem, t_dask, v_mem, v_dask, t_mem_min, t_dask_min in rows:
        print(f"| {name} | {t_mem:.3f} (min {t_mem_min:.3f}) | {t_dask:.3f} "
              f"(min {t_dask_min:.3f}) | {t_dask / t_mem:.2f}x | {v_mem:.6f} | {v_dask:.6f} |")
    print(f"\n# load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
