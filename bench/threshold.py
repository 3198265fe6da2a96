"""Measures where multi-threading starts to pay off: fastloss's serial threshold.

For sizes from 1e3 to 1e6 elements, times squared_error.value_and_grad (float32 and
float64, reduction="mean") and softmax_cross_entropy.value_and_grad on one thread and on
all cores with the threshold disabled, and prints the ratio. The built-in threshold
(fastloss._core.serial_threshold) should sit where the ratio crosses 1.

    python bench/threshold.py [--threads N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import time

import fastloss as fl
import numpy as np


def best_time(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def compare(label: str, n: int, call, threads: int, repeat: int) -> None:
    """Prints one row: the call on one thread and on `threads` threads."""
    rep = max(5, min(repeat, int(2e7 // max(n, 1))))
    with fl.threads(1):
        t1 = best_time(call, rep)
    with fl.threads(threads):
        tn = best_time(call, rep)
    print(f"{label:<34}{n:>10}{t1 * 1e6:>14.2f}{tn * 1e6:>16.2f}{t1 / tn:>8.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    sizes = [1_000, 4_000, 8_192, 16_384, 32_768, 65_536, 131_072, 262_144, 1_000_000]
    print(f"fastloss {fl.__version__}, ISA {fl._core.active_isa()}, "
          f"built-in serial threshold {fl._core.serial_threshold} elements")
    print(f"{'case':<34}{'N':>10}{'1 thread us':>14}{f'{args.threads} threads us':>16}{'ratio':>8}")
    fl._core._set_serial_threshold(0)
    try:
        for dtype in (np.float32, np.float64):
            for n in sizes:
                f = rng.standard_normal(n).astype(dtype)
                y = rng.standard_normal(n).astype(dtype)
                g = np.empty_like(f)
                compare("squared_error vg " + np.dtype(dtype).name, n,
                        lambda f=f, y=y, g=g: fl.squared_error.value_and_grad(f, y, reduction="mean", grad_out=g),
                        args.threads, args.repeat)
        for n in sizes:
            k = 100
            rows = max(1, n // k)
            x = rng.standard_normal((rows, k)).astype(np.float32)
            lab = rng.integers(0, k, rows)
            g = np.empty_like(x)
            compare("softmax_ce vg float32 K=100", rows * k,
                    lambda x=x, lab=lab, g=g: fl.softmax_cross_entropy.value_and_grad(x, lab, reduction="mean",
                                                                    grad_out=g),
                    args.threads, args.repeat)
    finally:
        fl._core._set_serial_threshold(-1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
