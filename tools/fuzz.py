"""Fuzz the public API of fastloss: every registered loss, entry point and option.

    python tools/fuzz.py                  # atheris, seed 1, 60 seconds
    python tools/fuzz.py --seconds 300 --seed 7
    python tools/fuzz.py --random         # the seeded random-input fuzzer (no atheris)

Each input is decoded into one call: a loss from ``fastloss.losses``, an entry point, arrays
of random shapes, dtypes (including invalid ones), strides and values (NaN, inf, huge,
denormal), keyword options from the parameter table of tests/loss_cases.py or garbage, and
output arrays that may be wrong. A call may raise TypeError or ValueError with a message
naming something; anything else is a failure: another exception, an empty message, a crash,
a result of the wrong shape or dtype, or an input array modified by the call.

With atheris (``pip install atheris``) the fastloss Python code is instrumented for coverage
feedback; without it (or with --random) inputs are random bytes from a seeded generator.
Exit status 0: nothing found.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.uint8, np.int8, np.bool_,
          np.uint64, np.complex128, object, "U3", ">f8", ">i4", np.longdouble]
SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, np.nan, np.inf, -np.inf, 1e4, -1e4, 1e300, -1e300,
           5e-324, 1e-30, 2.0, 3.0, 7.0, -7.0, 100.0]
OPTIONS = {
    "reduction": ["none", "sum", "mean", "bogus", None],
    "nan_policy": ["propagate", "raise", "omit", "skip"],
    "hessian": ["exact", "clip", "abs", "fisher", "xgboost", "lightgbm", "newton"],
    "hess_floor": [1e-6, 0.0, -1.0, np.nan, "x"],
}
METHODS = ["__call__", "grad", "value_and_grad", "grad_hess"]


class Source:
    """Decisions drawn from fuzzer bytes (atheris) or a seeded generator."""

    def __init__(self, fdp=None, rng=None):
        self.fdp, self.rng = fdp, rng

    def int(self, n):
        if n <= 1:
            return 0
        if self.fdp is not None:
            return self.fdp.ConsumeIntInRange(0, n - 1)
        return self.rng.randrange(n)

    def pick(self, seq):
        return seq[self.int(len(seq))]

    def float(self):
        if self.int(3) == 0:
            return self.pick(SPECIAL)
        if self.fdp is not None:
            return self.fdp.ConsumeRegularFloat()
        return self.rng.uniform(-50, 50)

    def shape(self, max_dims=3, max_side=6):
        return tuple(self.int(max_side + 1) for _ in range(self.int(max_dims + 1)))


def make_array(src, shape, kind):
    n = int(np.prod(shape)) if shape else 1
    vals = np.array([src.float() for _ in range(n)], dtype=np.float64).reshape(shape)
    if kind == "labels":
        vals = np.nan_to_num(vals, nan=0, posinf=9, neginf=-9)
        vals = np.clip(np.round(vals), -200, 200) % (src.int(8) + 1) if src.int(4) else vals
        dtype = src.pick([np.int64, np.int32, np.uint8, np.int8, np.uint64, np.float64])
    elif kind == "binary":
        vals = vals if src.int(5) == 0 else (np.abs(vals) > 1).astype(np.float64)
        dtype = src.pick(DTYPES)
    else:
        dtype = src.pick(DTYPES)
    with np.errstate(all="ignore"):
        try:
            a = vals.astype(dtype)
        except (ValueError, OverflowError, TypeError):
            a = vals
    if not isinstance(a, np.ndarray):  # a 0-d object conversion gives the element itself
        a = np.array(a, dtype=object)
    layout = src.int(6)
    if a.ndim and layout == 1:
        buf = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)
        buf[::2] = a
        a = buf[::2]
    elif a.ndim and layout == 2:
        a = a[::-1]
    elif a.ndim > 1 and layout == 3:
        a = np.asfortranarray(a)
    elif layout == 4:
        a = np.array(a)
        a.flags.writeable = False
    elif layout == 5 and src.int(2):
        return a.tolist()
    return a


def build_call(src, fl, lc, names):
    loss = fl.losses[src.pick(names)]
    method = src.pick(METHODS)
    rows = src.shape()
    if loss.kind == "rowwise":
        k = src.int(7) + (0 if src.int(10) == 0 else 1)
        first = make_array(src, rows + (k,), "values")
        target = make_array(src, rows if src.int(5) else src.shape(), "labels")
    else:
        first = make_array(src, rows, "values")
        tshape = rows[src.int(len(rows) + 1):] if src.int(4) else src.shape()
        target = make_array(src, tshape, "binary" if loss.family == "binary" else "values")
    kw = {}
    if src.int(2):
        wshape = rows[src.int(len(rows) + 1):] if src.int(4) else src.shape()
        kw["sample_weight"] = make_array(src, wshape, "values")
    for name, choices in OPTIONS.items():
        if src.int(3) == 0 and (name not in ("hessian", "hess_floor") or method == "grad_hess"):
            kw[name] = src.pick(choices)
    valid = lc.valid_param_values(loss)
    invalid = lc.invalid_param_values(loss)
    for name in loss.params:
        if src.int(3) == 0:
            # The table's valid and invalid values of this parameter for this loss, or junk.
            pool = [lc.param_kw(loss, p, v) for p, v, _ in valid if p == name]
            pool += [{name: lc.resolve(v, loss)} for p, v, _ in invalid if p == name]
            pool += [{name: v} for v in (object(), -1.0, 2.5, "balanced")]
            kw.update(src.pick(pool))
    if src.int(4) == 0:
        out_name = {"__call__": "out", "grad": "out", "value_and_grad": src.pick(["out", "grad_out"]),
                    "grad_hess": src.pick(["grad_out", "hess_out"])}[method]
        shape = np.shape(first) if src.int(2) else src.shape()
        out = np.zeros(shape, src.pick([np.float64, np.float32, np.int64]))
        if src.int(5) == 0:
            out = first if isinstance(first, np.ndarray) else out
        kw[out_name] = out
    return loss, method, first, target, kw


def snapshot(*arrays):
    return [a.copy() if isinstance(a, np.ndarray) else None for a in arrays]


def check_one(src, fl, lc, names):
    loss, method, first, target, kw = build_call(src, fl, lc, names)
    fn = loss if method == "__call__" else getattr(loss, method)
    inputs = (first, target, kw.get("sample_weight"))
    before = snapshot(*inputs)
    try:
        with np.errstate(all="ignore"):
            result = fn(first, target, **kw)
    except (TypeError, ValueError) as exc:
        if not str(exc).strip():
            raise AssertionError(f"{type(exc).__name__} without a message: {loss.name}.{method}")
        result = None
    for b, a in zip(before, inputs):
        if b is not None and not (a is kw.get("out") or a is kw.get("grad_out")
                                  or a is kw.get("hess_out")):
            if b.dtype != object and b.tobytes() != np.ascontiguousarray(a).tobytes():
                raise AssertionError(f"{loss.name}.{method} modified an input")
    if result is None:
        return
    parts = result if isinstance(result, tuple) else (result,)
    for p in parts:
        if isinstance(p, tuple):  # a loss with several differentiated inputs
            continue
        if not isinstance(p, (np.ndarray, np.floating)):
            raise AssertionError(f"{loss.name}.{method} returned {type(p).__name__}")
        if np.asarray(p).dtype not in (np.float32, np.float64):
            raise AssertionError(f"{loss.name}.{method} returned dtype {np.asarray(p).dtype}")
    if method in ("grad", "grad_hess"):
        for p in parts:
            if np.shape(p) != np.shape(np.asarray(first)):
                raise AssertionError(f"{loss.name}.{method}: derivative shape {np.shape(p)} "
                                     f"for input {np.shape(np.asarray(first))}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=0,
                    help="stop after this many inputs (0: no limit); with a seed, the same "
                         "inputs on every machine fast enough to reach the count in time")
    ap.add_argument("--random", action="store_true", help="seeded random inputs, no atheris")
    args, rest = ap.parse_known_args(argv)

    try:
        import atheris
    except ImportError:
        atheris = None
    if atheris is None and not args.random:
        print("fuzz.py: atheris is not installed; using the seeded random-input fuzzer")
        args.random = True

    # A NumPy warning on the way to an error (a complex array cast to float, ...) is a
    # finding too.
    import warnings

    warnings.simplefilter("error")
    if args.random:
        import fastloss as fl
        import loss_cases as lc

        names = sorted(fl.losses)
        rng = random.Random(args.seed)
        deadline = time.monotonic() + args.seconds
        n = 0
        while time.monotonic() < deadline and (args.runs <= 0 or n < args.runs):
            check_one(Source(rng=rng), fl, lc, names)
            n += 1
        print(f"fuzz.py: {n} random calls over {len(names)} losses, seed {args.seed}, "
              f"{args.seconds:.0f} s: nothing found")
        return 0

    import fastloss as fl
    import loss_cases as lc

    atheris.instrument_all()  # coverage feedback from the Python layers (fastloss, NumPy)

    names = sorted(fl.losses)

    def one_input(data):
        check_one(Source(fdp=atheris.FuzzedDataProvider(data)), fl, lc, names)

    workdir = os.environ.get("FUZZ_ARTIFACTS", os.path.join(HERE, "..", "build", "fuzz"))
    os.makedirs(workdir, exist_ok=True)
    flags = [sys.argv[0], f"-seed={args.seed}", f"-max_total_time={int(args.seconds)}",
             "-max_len=2048", "-rss_limit_mb=4096", "-timeout=30",
             f"-artifact_prefix={workdir}{os.sep}", "-print_final_stats=1"]
    if args.runs > 0:
        flags.append(f"-runs={args.runs}")
    flags += rest
    atheris.Setup(flags, one_input)
    atheris.Fuzz()  # exits the process: 0 when the time runs out without a finding
    return 0


if __name__ == "__main__":
    sys.exit(main())
