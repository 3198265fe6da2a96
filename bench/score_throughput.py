"""`fastloss score` on a pair of .npy files against the in-memory call, same data.

    python bench/score_throughput.py                  # 1 GB pair: 2 x 2^27 float32
    python bench/score_throughput.py --elements 2e7 --loss squared_error

Writes pred.npy (float32 logits) and target.npy (float32 0/1 labels, 10% positives) to a
temporary directory (the files stay in the page cache: this measures the streaming, not the
disk), then times

* in memory: ``loss(pred, target, reduction="mean")`` on the arrays loaded with np.load,
  median of --repeat calls;
* ``fastloss score --loss LOSS --pred pred.npy --target target.npy --json`` in a subprocess,
  with the progress bar on (tqdm), median of --repeat runs: the scoring time it reports
  (``seconds``: both passes over the memory-mapped files, per-class breakdown included) and
  the wall time of the whole process (interpreter start and imports included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--elements", type=float, default=2**27)
    ap.add_argument("--loss", default="sigmoid_cross_entropy")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--chunk-rows", type=int, default=None)
    args = ap.parse_args(argv)
    n = int(args.elements)

    import fastloss as fl
    import numpy as np

    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        pred = rng.standard_normal(n, dtype=np.float32)
        target = (rng.random(n, dtype=np.float32) < 0.1).astype(np.float32)
        np.save(os.path.join(d, "pred.npy"), pred)
        np.save(os.path.join(d, "target.npy"), target)
        del pred, target
        size_gb = 2 * 4 * n / 1e9
        loss = fl.losses[args.loss]
        pred = np.load(os.path.join(d, "pred.npy"))
        target = np.load(os.path.join(d, "target.npy"))
        loss(pred, target, reduction="mean")
        mem = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            v_mem = loss(pred, target, reduction="mean")
            mem.append(time.perf_counter() - t0)
        del pred, target
        cmd = [sys.executable, "-m", "fastloss", "score", "--loss", args.loss, "--pred",
               os.path.join(d, "pred.npy"), "--target", os.path.join(d, "target.npy"), "--json"]
        if args.chunk_rows:
            cmd += ["--chunk-rows", str(args.chunk_rows)]
        runs = {}
        for label, extra in (("with per-class breakdown", []),
                             ("--no-per-class", ["--no-per-class"])):
            scoring, wall = [], []
            for _ in range(args.repeat + 1):
                t0 = time.perf_counter()
                proc = subprocess.run(cmd + extra, capture_output=True, text=True, check=True)
                wall.append(time.perf_counter() - t0)
                res = json.loads(proc.stdout)
                scoring.append(res["seconds"])
            # The first run warms the page cache.
            runs[label] = (statistics.median(scoring[1:]), statistics.median(wall[1:]),
                           res["mean"])
    t_mem = statistics.median(mem)
    print(f"# fastloss {fl.__version__}, {fl.get_num_threads()} threads, ISA "
          f"{fl._core.active_isa()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"# {args.loss}, {n:,} float32 predictions + float32 targets = {size_gb:.2f} GB, "
          f"chunks of {args.chunk_rows or 'default'} rows; medians of {args.repeat}")
    print(f"in memory        {t_mem:.3f} s  {n / t_mem / 1e6:8.1f} M values/s  mean {v_mem:.9f}")
    for label, (t_score, t_wall, mean) in runs.items():
        print(f"fastloss score, {label}")
        print(f"  scoring        {t_score:.3f} s  {n / t_score / 1e6:8.1f} M values/s  "
              f"mean {mean:.9f}  ({t_mem / t_score:.0%} of in-memory throughput)")
        print(f"  whole process  {t_wall:.3f} s  {n / t_wall / 1e6:8.1f} M values/s  "
              f"({t_mem / t_wall:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
