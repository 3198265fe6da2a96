#!/usr/bin/env python3
"""Benchmark fastloss against NumPy, Numba, PyTorch, JAX and scikit-learn.

    python bench/run.py                 # default matrix (see README.md)
    python bench/run.py --quick         # small sizes, few repeats: a smoke run
    python bench/run.py --losses huber --sizes 1e6 --threads 1 --peers numba

Everything runs in one process on the same input arrays:

1. the machine's memory bandwidth (fastloss._core.stream read, read2, copy,
   triad on float32 and float64 arrays, NumPy equivalents as a cross-check)
   for every thread count under test;
2. every loss x dtype x size x threads x operation, fastloss under each ISA
   and every installed peer, each result checked against fastloss;
3. fastloss's per-call overhead at 1,000 elements;
4. the memory value_and_grad allocates (tracemalloc, and the process's peak
   resident set).

The table goes to stdout, progress to stderr; --json writes everything with
the machine's description.  README.md explains every column.
"""

from __future__ import annotations

import os
import sys

# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set on shared machines to tune
# OpenBLAS for another CPU; they make NumPy slower here.  OpenBLAS reads them
# when NumPy is first imported, so they are removed before that, and the
# process re-executes itself if something imported NumPy earlier.
_SLOW_BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_UNSET_MARK = "FASTLOSS_BENCH_UNSET_ENV"


def _unset_slow_blas_env() -> list[str]:
    found = [k for k in _SLOW_BLAS_ENV if k in os.environ]
    for k in found:
        del os.environ[k]
    if found and "numpy" in sys.modules:
        os.environ[_UNSET_MARK] = ",".join(found)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    earlier = [k for k in os.environ.pop(_UNSET_MARK, "").split(",") if k]
    return sorted(set(found) | set(earlier))


UNSET_ENV = _unset_slow_blas_env()
# JAX: CPU only, and no probing for accelerators at import.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from typing import Any, Callable  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from cases import CASES, OPS, LossCase, bandwidth_reference, required_bytes  # noqa: E402
from peers import (  # noqa: E402
    PEER_CLASSES,
    RESULT_OF_OP,
    Peer,
    Runner,
)

try:
    import fastloss as fl
except ImportError as exc:  # pragma: no cover - only without a build
    sys.exit(f"fastloss is not importable ({exc}); build it first: pip install .")


STREAM_KINDS = ("read", "read2", "copy", "triad")
# Bytes each stream kernel must move per element of one array, in units of
# the element size: "copy" and "triad" count the written array once.  With
# ordinary (not non-temporal) stores the CPU also reads every written line
# before writing it (read-for-ownership), so the bus moves one more array
# than counted; the plain count is what is reported.
STREAM_ARRAYS = {"read": 1, "read2": 2, "copy": 2, "triad": 3}

DEFAULT_SIZES = (1_000, 20_000_000)
QUICK_SIZES = (1_000, 100_000)
DEFAULT_REPEAT = 7
QUICK_REPEAT = 3
DEFAULT_BW_SIZE = 20_000_000
QUICK_BW_SIZE = 10_000_000
# One timing sample lasts at least this long (small sizes loop inside it).
MIN_SAMPLE_S = 0.002
# A single call slower than this is "huge": fewer repeats.
HUGE_CALL_S = 0.25
HUGE_REPEAT = 3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------- options

def _split(values, convert=str):
    if values is None:
        return None
    out = []
    for v in values:
        out.extend(convert(x) for x in str(v).split(",") if x.strip())
    return out


def _size(text: str) -> int:
    n = float(text)
    if n < 0 or n != int(n):
        raise argparse.ArgumentTypeError(f"bad size {text!r}")
    return int(n)


def all_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _threads(text: str) -> int:
    return all_cores() if text == "all" else int(text)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="fastloss vs NumPy / Numba / PyTorch / JAX / scikit-learn, "
                    "with the machine's measured memory bandwidth.")
    ap.add_argument("--losses", nargs="+", metavar="NAME",
                    help=f"losses (space or comma separated); default: {' '.join(CASES)}")
    ap.add_argument("--ops", nargs="+", metavar="OP",
                    help=f"operations; default: {' '.join(OPS)}")
    ap.add_argument("--sizes", nargs="+", metavar="N",
                    help="element counts, e.g. 1e3 2e7; default: 1e3 2e7 (--quick: 1e3 1e5)")
    ap.add_argument("--dtypes", nargs="+", metavar="DTYPE",
                    help="float32 and/or float64; default: both")
    ap.add_argument("--threads", nargs="+", metavar="T",
                    help="thread counts ('all' = every core); default: 1 all")
    ap.add_argument("--peers", nargs="+", metavar="PEER",
                    help=f"peers to compare ({' '.join(PEER_CLASSES)}), 'none' for "
                         "fastloss alone; default: every installed one")
    ap.add_argument("--isa", nargs="+", metavar="ISA",
                    help="run fastloss under each ISA (fastloss._set_isa); "
                         "default: every one in fastloss._core.supported_isas()")
    ap.add_argument("--repeat", type=int,
                    help=f"timing samples per case, median reported; default {DEFAULT_REPEAT} "
                         f"(--quick {QUICK_REPEAT}); calls over {HUGE_CALL_S}s get "
                         f"{HUGE_REPEAT}")
    ap.add_argument("--bandwidth-size", type=_size, metavar="N",
                    help=f"float32 elements per stream array; default {DEFAULT_BW_SIZE:.0e}")
    ap.add_argument("--seed", type=int, default=2024, help="input data seed")
    ap.add_argument("--json", metavar="PATH", help="write all results and machine info here")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and few repeats, for a smoke run")
    args = ap.parse_args(argv)

    args.losses = _split(args.losses) or list(CASES)
    unknown = [x for x in args.losses if x not in CASES]
    if unknown:
        ap.error(f"unknown loss(es) {unknown}; the case table has {list(CASES)}")
    args.ops = _split(args.ops) or list(OPS)
    if bad := [x for x in args.ops if x not in OPS]:
        ap.error(f"unknown op(s) {bad}; choose from {list(OPS)}")
    args.sizes = _split(args.sizes, _size) or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    args.dtypes = _split(args.dtypes) or ["float32", "float64"]
    if bad := [x for x in args.dtypes if x not in ("float32", "float64")]:
        ap.error(f"unsupported dtype(s) {bad}")
    args.threads = list(dict.fromkeys(_split(args.threads, _threads) or [1, all_cores()]))
    if any(t < 1 for t in args.threads):
        ap.error("thread counts must be >= 1")
    peers = _split(args.peers)
    if peers is None:
        peers = list(PEER_CLASSES)
    elif peers == ["none"]:
        peers = []
    if bad := [x for x in peers if x not in PEER_CLASSES]:
        ap.error(f"unknown peer(s) {bad}; choose from {list(PEER_CLASSES)}")
    args.peers = peers
    args.isa = _split(args.isa)
    if args.repeat is None:
        args.repeat = QUICK_REPEAT if args.quick else DEFAULT_REPEAT
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.bandwidth_size is None:
        args.bandwidth_size = QUICK_BW_SIZE if args.quick else DEFAULT_BW_SIZE
    return args


# ------------------------------------------------------------------ timing

@dataclass
class Timing:
    median: float          # seconds per call
    samples: list          # seconds per call, one per sample
    number: int            # calls per sample


def measure(fn: Callable[[], Any], repeat: int) -> Timing:
    """Median seconds per call of fn(), which has been warmed up already.

    Small calls are looped inside each sample so that a sample lasts at
    least MIN_SAMPLE_S (timer resolution and jitter); huge calls get fewer
    samples.  The garbage collector is off while timing, as in timeit.
    """
    gc.collect()
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        number = 1 if once >= MIN_SAMPLE_S else min(1_000_000, math.ceil(MIN_SAMPLE_S / max(once, 1e-8)))
        if once > HUGE_CALL_S:
            repeat = min(repeat, HUGE_REPEAT)
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - t0) / number)
    finally:
        if gc_was_on:
            gc.enable()
    return Timing(statistics.median(samples), samples, number)


def settle() -> None:
    # Another library's OpenMP workers may still be spinning after its last
    # parallel region; give them time to go to sleep before the next timing.
    time.sleep(0.02)


# --------------------------------------------------------------- fastloss

def set_isa(name: str) -> str:
    setter = getattr(fl, "_set_isa", None) or fl._core.set_isa
    return setter(name)


@contextlib.contextmanager
def isa_active(name: str | None):
    if name is None:
        yield
        return
    previous = set_isa(name)
    try:
        yield
    finally:
        set_isa(previous)


def fastloss_runner(case: LossCase, op: str, inputs, preallocated: bool) -> Runner | None:
    loss = fl.losses[case.name]
    p, t = inputs[0], inputs[1]
    params = case.params
    if op == "value":
        if preallocated:
            return None
        return Runner(lambda: loss(p, t, reduction="mean", **params), RESULT_OF_OP[op])
    if op == "value_and_grad":
        if preallocated:
            g = np.empty_like(p)
            return Runner(lambda: loss.value_and_grad(p, t, reduction="mean", grad_out=g, **params),
                          RESULT_OF_OP[op])
        return Runner(lambda: loss.value_and_grad(p, t, reduction="mean", **params),
                      RESULT_OF_OP[op])
    if preallocated:
        g, h = np.empty_like(p), np.empty_like(p)
        return Runner(lambda: loss.grad_hess(p, t, grad_out=g, hess_out=h, **params),
                      RESULT_OF_OP[op])
    return Runner(lambda: loss.grad_hess(p, t, **params), RESULT_OF_OP[op])


# ---------------------------------------------------------------- bandwidth

def _limit_blas(threads: int):
    """Cap BLAS threads (np.dot in the NumPy probe) at the count under test."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=threads, user_api="blas")
    except Exception:  # threadpoolctl missing: the probe runs as it is
        return contextlib.nullcontext()


def _median_time(fn, repeat: int) -> tuple[float, list]:
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples


def measure_bandwidth(threads_list, n: int, repeat: int, llc_bytes: int | None) -> dict:
    """GB/s of each access pattern for each thread count.

    Probes: fastloss._core.stream on float32 arrays of n elements and on
    float64 arrays of n/2 elements (the same bytes), and the NumPy
    equivalents on the float32 arrays (a.sum(), np.dot(a, b), np.copyto,
    np.add(out=); single-threaded except np.dot, whose BLAS is capped at the
    thread count).  The machine's bandwidth for a pattern, the reference for
    the "% of bandwidth" column, is the best median among the probes: a
    probe that is itself compute-bound under-states it.

    Returns {threads: {kind: {"gbps": best, "probe": name, "probes": {...}}}}.
    """
    rng = np.random.default_rng(1)
    arrays = {}
    for dtype, m in ((np.float32, n), (np.float64, n // 2)):
        a = rng.random(m, dtype=dtype)
        b = rng.random(m, dtype=dtype)
        out = np.zeros(m, dtype=dtype)      # pages touched now, not inside the timing
        arrays[np.dtype(dtype).name] = (a, b, out)
    nbytes1 = arrays["float32"][0].nbytes
    if llc_bytes and nbytes1 < 2 * llc_bytes:
        log(f"warning: stream arrays of {nbytes1 / 1e6:.0f} MB are not far larger "
            f"than the last-level cache ({llc_bytes / 1e6:.0f} MB); use --bandwidth-size")
    stream = fl._core.stream

    def operands(kind, a, b, out):
        return {"read": (a, None, None), "read2": (a, b, None),
                "copy": (a, None, out), "triad": (a, b, out)}[kind]

    # One correctness look at each kernel so a broken one cannot pass as fast.
    ok = {}
    with fl.threads(threads_list[0]):
        for name, (a, b, out) in arrays.items():
            s_a, s_b = float(a.sum(dtype=np.float64)), float(b.sum(dtype=np.float64))
            ok[(name, "read")] = math.isclose(stream("read", a, None, None), s_a, rel_tol=1e-4)
            ok[(name, "read2")] = math.isclose(stream("read2", a, b, None), s_a + s_b,
                                               rel_tol=1e-4)
            stream("copy", a, None, out)
            ok[(name, "copy")] = bool(np.array_equal(out, a))
            stream("triad", a, b, out)
            ok[(name, "triad")] = bool(np.array_equal(out, a + b))
    for (name, kind), good in ok.items():
        if not good:
            log(f"WARNING: fastloss._core.stream({kind!r}) on {name} returned a wrong result")

    a32, b32, o32 = arrays["float32"]
    numpy_probe = {"read": lambda: a32.sum(), "read2": lambda: np.dot(a32, b32),
                   "copy": lambda: np.copyto(o32, a32), "triad": lambda: np.add(a32, b32, out=o32)}
    reps = max(repeat, 9)
    result: dict = {}
    for t in threads_list:
        result[t] = {}
        for kind in STREAM_KINDS:
            probes = {}
            with fl.threads(t):
                for name, (a, b, out) in arrays.items():
                    args = operands(kind, a, b, out)
                    med, samples = _median_time(lambda k=kind, x=args: stream(k, *x), reps)
                    nbytes = STREAM_ARRAYS[kind] * a.nbytes
                    probes[f"stream {name}"] = {"gbps": nbytes / med / 1e9, "median_s": med,
                                                "bytes": nbytes, "samples_s": samples,
                                                "checked": ok[(name, kind)]}
            settle()
            with _limit_blas(t):
                med, samples = _median_time(numpy_probe[kind], reps)
            nbytes = STREAM_ARRAYS[kind] * a32.nbytes
            probes["numpy float32"] = {"gbps": nbytes / med / 1e9, "median_s": med,
                                       "bytes": nbytes, "samples_s": samples}
            usable = {k: v for k, v in probes.items() if v.get("checked", True)}
            best = max(usable, key=lambda k: usable[k]["gbps"])
            result[t][kind] = {"gbps": usable[best]["gbps"], "probe": best, "probes": probes}
        log("bandwidth, %d thread(s): %s" % (t, ", ".join(
            f"{k} {v['gbps']:.1f} GB/s ({v['probe']})" for k, v in result[t].items())))
    return result


def bandwidth_reference_table(runs: dict, threads_list) -> dict:
    """{threads: {kind: {"gbps", "from"}}}: the reference for "% of bandwidth".

    The best median of any probe, in any of the runs (start and end of the
    benchmark), at any measured thread count <= threads: the machine can
    always reach what fewer threads reached, and on a shared machine a probe
    that another process interrupted under-states the bandwidth.
    """
    ref: dict = {}
    for t in threads_list:
        ref[t] = {}
        for kind in STREAM_KINDS:
            best = None
            for when, table in runs.items():
                for t2, kinds in table.items():
                    if t2 > t or kind not in kinds:
                        continue
                    e = kinds[kind]
                    if best is None or e["gbps"] > best["gbps"]:
                        best = {"gbps": e["gbps"],
                                "from": f"{e['probe']}, {t2} thread(s), {when} of run"}
            if best is not None:
                ref[t][kind] = best
    return ref


def set_pct_bandwidth(row: dict, reference: dict) -> None:
    bw = reference.get(row["threads"], {}).get(row["bw_ref"], {}).get("gbps")
    row["pct_bandwidth"] = (100.0 * row["gbps"] / bw) if (bw and row["in_memory"]) else None


# ------------------------------------------------------------------- checks

# Elements allowed to differ, as a fraction of N, before a result counts as a
# mismatch: a kink hit exactly (|f - y| == delta, f == y) is where libraries'
# conventions differ (PyTorch's Huber Hessian is 0 at |r| == delta; scikit-learn
# forms f - y in float64 for float32 inputs, so its residual is not exactly
# delta there), and float32 random data hits one every few million elements.
KINK_FRACTION = 1e-6


def compare(res: dict, ref: dict, dtype, skip=frozenset()) -> tuple[str, str]:
    """("ok" | "kink" | "MISMATCH", detail): res against ref, rtol 1e-3 (float32), 1e-6 (float64).

    Arrays are compared relative to their largest magnitude, so elements
    near zero (a gradient crossing zero) do not fail on rounding alone.
    "kink": at most KINK_FRACTION of the elements (and at least one) differ.
    """
    rtol = 1e-3 if np.dtype(dtype) == np.float32 else 1e-6
    details = []
    status = "ok"
    for key in ("value", "grad", "hess"):
        if key not in res or key not in ref or key in skip:
            continue
        a = np.asarray(res[key], dtype=np.float64)
        b = np.asarray(ref[key], dtype=np.float64)
        if a.shape != b.shape:
            return "MISMATCH", f"{key} shape {a.shape} != {b.shape}"
        if a.size == 0:
            continue
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if not np.array_equal(nan_a, nan_b):
            return "MISMATCH", f"{key}: NaN in different places"
        a, b = a[~nan_a], b[~nan_b]
        if a.size == 0:
            continue
        scale = max(float(np.max(np.abs(b))), np.finfo(np.float64).tiny)
        diff = np.abs(a - b) / scale
        err = float(np.max(diff))
        if err <= rtol:
            details.append(f"{key} {err:.1e}")
            continue
        bad = int(np.count_nonzero(diff > rtol))
        if a.ndim and bad <= KINK_FRACTION * a.size:
            status = "kink" if status == "ok" else status
            details.append(f"{key}: {bad} of {a.size} elements differ (kink ties)")
        else:
            return "MISMATCH", f"{key} max rel err {err:.2e} > {rtol:g} ({bad} elements)"
    return status, ", ".join(details)


# -------------------------------------------------------------- the matrix

@dataclass
class Impl:
    name: str
    runner: Runner
    library: str
    isa: str | None = None
    out: bool = False            # outputs preallocated (grad_out= / hess_out=)
    threads: str = ""


@dataclass
class Context:
    args: argparse.Namespace
    peers: list[Peer]
    isas: list[str]
    ref_isa: str
    bandwidth: dict
    llc_bytes: int | None
    rows: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def fastloss_impls(ctx: Context, case, op, inputs, threads) -> list[Impl]:
    impls = []
    for isa in [ctx.ref_isa] + [i for i in ctx.isas if i != ctx.ref_isa]:
        # The reference ISA is timed as users call it (outputs allocated) and
        # with preallocated outputs; the other ISAs with preallocated outputs
        # where there are outputs, so page faults do not blur the comparison.
        modes = (False, True) if isa == ctx.ref_isa else (op != "value",)
        for pre in modes:
            r = fastloss_runner(case, op, inputs, pre)
            if r is not None:
                impls.append(Impl(f"fastloss[{isa}]" + ("+out" if pre else ""), r,
                                  "fastloss", isa, pre, str(threads)))
    return impls


def peer_impls(ctx: Context, case, op, inputs, threads) -> list[Impl]:
    impls = []
    for peer in ctx.peers:
        for pre in (False, True):
            try:
                r = peer.build(case, op, inputs, threads, preallocated=pre)
            except Exception as exc:
                msg = f"{peer.name} {case.name} {op}: cannot build ({type(exc).__name__}: {exc})"
                log("WARNING: " + msg)
                ctx.warnings.append(msg)
                r = None
            if r is not None:
                impls.append(Impl(peer.name + ("+out" if pre else ""), r, peer.name,
                                  None, pre, peer.effective_threads(threads)))
    return impls


def run_case(ctx: Context, case: LossCase, op: str, inputs, threads: int) -> None:
    dtype = inputs[0].dtype
    n = inputs[0].size
    read, written = required_bytes(op, inputs)
    bw_kind = bandwidth_reference(op, inputs)
    in_memory = ctx.llc_bytes is None or read + written > 2 * ctx.llc_bytes
    reference: dict | None = None
    case_rows = []
    for impl in fastloss_impls(ctx, case, op, inputs, threads) + \
            peer_impls(ctx, case, op, inputs, threads):
        row = {"loss": case.name, "op": op, "dtype": dtype.name, "n": n, "threads": threads,
               "impl": impl.name, "library": impl.library, "isa": impl.isa,
               "preallocated": impl.out, "impl_threads": impl.threads,
               "bytes_read": read, "bytes_written": written, "bw_ref": bw_kind,
               "note": impl.runner.note}
        try:
            with isa_active(impl.isa):
                settle()
                out = impl.runner.call()        # warm-up: JIT compilation, first touch
                out = impl.runner.call()
                result = impl.runner.to_result(out)
                del out
                timing = measure(impl.runner.call, ctx.args.repeat)
        except Exception as exc:
            msg = (f"{impl.name} {case.name} {op} {dtype.name} N={n} threads={threads}: "
                   f"{type(exc).__name__}: {exc}")
            log("ERROR: " + msg)
            ctx.warnings.append(msg)
            row.update(error=f"{type(exc).__name__}: {exc}")
            case_rows.append(row)
            continue
        if reference is None:
            reference, ref_name = result, impl.name
            row["check"] = "reference"
        else:
            status, detail = compare(result, reference, dtype, impl.runner.skip_compare)
            skipped = sorted(impl.runner.skip_compare & result.keys())
            row["check"] = status + (f" ({detail})" if detail else "") + \
                (f"; not compared: {', '.join(skipped)}" if skipped else "")
            if status != "ok":
                msg = (f"{impl.name} differs from {ref_name}: {case.name} {op} "
                       f"{dtype.name} N={n} threads={threads}: {detail}")
                log(("WARNING: " if status == "MISMATCH" else "note: ") + msg)
                ctx.warnings.append(("" if status == "MISMATCH" else "(kink) ") + msg)
        del result
        t = timing.median
        gbps = (read + written) / t / 1e9
        row.update(time_s=t, samples_s=timing.samples, calls_per_sample=timing.number,
                   ns_per_element=t / n * 1e9 if n else float("nan"), gbps=gbps,
                   in_memory=in_memory)
        set_pct_bandwidth(row, ctx.bandwidth)   # provisional: the start-of-run reference
        case_rows.append(row)
    # Speed-up of fastloss (reference ISA) over each row: t_row / t_fastloss,
    # against fastloss with outputs allocated or preallocated like the row.
    base = {}
    for row in case_rows:
        if row["library"] == "fastloss" and row["isa"] == ctx.ref_isa and "time_s" in row:
            base[row["preallocated"]] = row["time_s"]
    for row in case_rows:
        b = base.get(row["preallocated"])
        row["fastloss_speedup"] = row["time_s"] / b if (b and "time_s" in row) else None
        log(format_row(row))
    ctx.rows.extend(case_rows)


def run_matrix(ctx: Context) -> None:
    args = ctx.args
    for n in args.sizes:
        for dtype_name in args.dtypes:
            dtype = np.dtype(dtype_name)
            for peer in ctx.peers:
                peer.reset_inputs()
            arrays: dict = {}
            for loss in args.losses:
                case = CASES[loss]
                key = case.make_inputs
                if key not in arrays:
                    # The same arrays for every implementation (and for every
                    # loss with the same kind of inputs).
                    rng = np.random.default_rng([args.seed, n, dtype.itemsize])
                    arrays[key] = case.make_inputs(rng, n, dtype)
                inputs = arrays[key]
                for threads in args.threads:
                    fl.set_num_threads(threads)
                    for peer in ctx.peers:
                        peer.set_threads(threads)
                    for op in case.ops:
                        if op in args.ops:
                            run_case(ctx, case, op, inputs, threads)
            del arrays
            gc.collect()
    fl.set_num_threads(None)


# ------------------------------------------------------------ per-call cost

def per_call_overhead(ctx: Context) -> list[dict]:
    """fastloss's fixed cost per call, measured at 1,000 elements.

    overhead = t(1e3) - kernel(1e3), the kernel time estimated two ways:
      * in cache: the slope of t(N) between N=1e3 and N=16e3 (both fit in
        L2), times 1e3 -- the better estimate;
      * from the large-N rows: 1e3 x ns/element at the largest N (memory
        bound, so this over-estimates the kernel and under-estimates the
        overhead).
    t(N=1) is shown as a direct look at the fixed cost.  All at 1 thread;
    t(1e3) at every core shows whether small inputs wrongly go parallel.
    Times here are the fastest of the samples, not the median.
    """
    out = []
    big_n = max(ctx.args.sizes)
    big = {(r["loss"], r["op"], r["dtype"]): r["ns_per_element"] for r in ctx.rows
           if r["library"] == "fastloss" and r["isa"] == ctx.ref_isa and not r["preallocated"]
           and r["threads"] == 1 and r["n"] == big_n and "ns_per_element" in r}
    max_threads = max(ctx.args.threads)
    for loss in ctx.args.losses:
        case = CASES[loss]
        for dtype_name in ctx.args.dtypes:
            dtype = np.dtype(dtype_name)
            for op in case.ops:
                if op not in ctx.args.ops:
                    continue
                times = {}
                try:
                    for n, threads in ((1, 1), (1_000, 1), (16_000, 1), (1_000, max_threads)):
                        rng = np.random.default_rng([ctx.args.seed, n])
                        inputs = case.make_inputs(rng, n, dtype)
                        r = fastloss_runner(case, op, inputs, False)
                        with fl.threads(threads):
                            r.call()
                            # The fastest sample: the fixed cost is what is
                            # sought, and a shared machine only adds to it.
                            times[(n, threads)] = min(measure(r.call, max(ctx.args.repeat, 7)).samples)
                except Exception as exc:
                    log(f"ERROR: overhead {loss} {op} {dtype_name}: {exc}")
                    continue
                t1k = times[(1_000, 1)]
                slope = (times[(16_000, 1)] - t1k) / 15_000
                row = {"loss": loss, "op": op, "dtype": dtype_name,
                       "t_n1_s": times[(1, 1)], "t_1e3_s": t1k,
                       "t_1e3_all_threads_s": times[(1_000, max_threads)],
                       "all_threads": max_threads,
                       "kernel_1e3_in_cache_s": 1_000 * slope,
                       "overhead_s": t1k - 1_000 * slope}
                if (loss, op, dtype_name) in big and big_n >= 1_000_000:
                    k = 1_000 * big[(loss, op, dtype_name)] * 1e-9
                    row["kernel_1e3_large_n_s"] = k
                    row["overhead_large_n_s"] = t1k - k
                out.append(row)
    return out


# ------------------------------------------------------------------- memory

def _proc_status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0).
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory(ctx: Context, n: int = 10_000_000) -> list[dict]:
    """Extra memory of one call, in units of one array of pred's size.

    value_and_grad should allocate the gradient and nothing else (ratio 1),
    with grad_out= nothing (ratio 0), grad_hess two arrays, value nothing.
    tracemalloc sees NumPy's allocations (NumPy reports them to it), not
    C++ heap buffers; the peak resident set (VmHWM, reset through
    /proc/self/clear_refs) sees both.  n is large enough (>= 32 MiB per
    array) that every allocation is a fresh mapping, so it shows in VmHWM.
    """
    out = []
    fl.set_num_threads(max(ctx.args.threads))
    for loss in ctx.args.losses:
        case = CASES[loss]
        for dtype_name in ctx.args.dtypes:
            dtype = np.dtype(dtype_name)
            rng = np.random.default_rng([ctx.args.seed, n])
            p, t = case.make_inputs(rng, n, dtype)
            g_buf = np.zeros_like(p)
            lo = fl.losses[loss]
            params = case.params
            calls = {
                "value_and_grad": (lambda: lo.value_and_grad(p, t, reduction="mean", **params), 1),
                "value_and_grad(grad_out=)": (lambda: lo.value_and_grad(
                    p, t, reduction="mean", grad_out=g_buf, **params), 0),
                "grad_hess": (lambda: lo.grad_hess(p, t, **params), 2),
                "value": (lambda: lo(p, t, reduction="mean", **params), 0),
            }
            for name, (fn, expected) in calls.items():
                try:
                    fn()
                    gc.collect()
                    tracemalloc.start()
                    base = tracemalloc.get_traced_memory()[0]
                    res = fn()
                    peak = tracemalloc.get_traced_memory()[1]
                    tracemalloc.stop()
                    del res
                    gc.collect()
                    rss_ok = _reset_peak_rss()
                    rss0 = _proc_status_kb("VmRSS")
                    res = fn()
                    hwm = _proc_status_kb("VmHWM")
                    del res
                except Exception as exc:
                    tracemalloc.stop()
                    log(f"ERROR: memory {loss} {name} {dtype_name}: {exc}")
                    continue
                row = {"loss": loss, "call": name, "dtype": dtype_name, "n": n,
                       "array_bytes": p.nbytes, "expected_arrays": expected,
                       "traced_peak_bytes": peak - base,
                       "traced_ratio": (peak - base) / p.nbytes}
                if rss_ok and rss0 is not None and hwm is not None:
                    row["rss_peak_growth_bytes"] = (hwm - rss0) * 1024
                    row["rss_ratio"] = (hwm - rss0) * 1024 / p.nbytes
                out.append(row)
            del p, t, g_buf
    fl.set_num_threads(None)
    return out


# ------------------------------------------------------------ machine info

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(flags & {"avx", "avx2", "fma", "avx512f", "avx512bw",
                                           "avx512dq", "avx512vl", "sse4_2"})
    except OSError:
        pass
    return []


def last_level_cache_bytes() -> int | None:
    base = "/sys/devices/system/cpu/cpu0/cache"
    best = (0, None)
    try:
        for entry in os.listdir(base):
            if not entry.startswith("index"):
                continue
            with open(f"{base}/{entry}/level") as f:
                level = int(f.read())
            with open(f"{base}/{entry}/size") as f:
                text = f.read().strip()
            mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1], 1)
            size = int(text.rstrip("KMG")) * mult
            if level > best[0]:
                best = (level, size)
    except (OSError, ValueError):
        return None
    return best[1]


def load_average() -> list[float] | None:
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except (OSError, ValueError):
        return None


def versions() -> dict:
    """Versions of Python, NumPy, fastloss and every peer library (None: not installed)."""
    v = {"python": platform.python_version(), "numpy": np.__version__,
         "fastloss": getattr(fl, "__version__", None)}
    for name in PEER_CLASSES:
        if name == "numpy":
            continue
        try:
            v[name] = __import__(name).__version__
        except Exception:
            v[name] = None
    try:
        import jaxlib
        v["jaxlib"] = jaxlib.__version__
    except Exception:
        pass
    try:
        import threadpoolctl
        v["threadpoolctl"] = threadpoolctl.__version__
    except Exception:
        pass
    return v


def machine_info(ctx: Context) -> dict:
    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores_available": all_cores(),
        "cpu_count": os.cpu_count(),
        "last_level_cache_bytes": ctx.llc_bytes,
        "platform": platform.platform(),
        "fastloss_config": fl.show_config(mode="dicts"),
        "versions": versions(),
        "unset_environment": UNSET_ENV,
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "thread_control": {p.name: p.threads_note for p in ctx.peers},
    }
    for p in ctx.peers:
        if p.name == "numba":
            info["numba_threading_layer"] = p.threading_layer()
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{k: d.get(k) for k in ("user_api", "internal_api", "prefix",
                                                       "version", "num_threads")}
                               for d in threadpool_info()]
    except Exception:
        pass
    return info


# ---------------------------------------------------------------- printing

def fmt_n(n: int) -> str:
    if n >= 1000:
        exp = int(math.floor(math.log10(n)))
        mant = n / 10 ** exp
        if mant == int(mant):
            return f"{int(mant)}e{exp}"
    return str(n)


def fmt_time(t: float | None) -> str:
    if t is None or not math.isfinite(t):
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.2f} us"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.3f} s"


def format_row(r: dict) -> str:
    if "error" in r:
        return (f"{r['loss']:<15} {r['op']:<15} {r['dtype']:<8} {fmt_n(r['n']):>5} "
                f"{r['threads']:>3} {r['impl']:<24} ERROR {r['error']}")
    pct = "cache" if r["pct_bandwidth"] is None else f"{r['pct_bandwidth']:.0f}% {r['bw_ref']}"
    sp = "-" if r["fastloss_speedup"] is None else f"{r['fastloss_speedup']:.2f}x"
    return (f"{r['loss']:<15} {r['op']:<15} {r['dtype']:<8} {fmt_n(r['n']):>5} "
            f"{r['threads']:>3} {r['impl']:<24} {fmt_time(r['time_s']):>10} "
            f"{r['ns_per_element']:>9.3f} {r['gbps']:>7.2f} {pct:>11} {sp:>8}  {r['check']}")


TABLE_HEADER = (f"{'loss':<15} {'op':<15} {'dtype':<8} {'N':>5} {'thr':>3} {'impl':<24} "
                f"{'median':>10} {'ns/elem':>9} {'GB/s':>7} {'%bw':>11} {'fl x':>8}  check")


def print_bandwidth(runs: dict, reference: dict) -> None:
    print("\n== Memory bandwidth, GB/s (median of each probe) ==")
    print("   bytes counted: read N*s, read2 2N*s, copy 2N*s, triad 3N*s; the read-for-"
          "ownership of written lines is not counted")
    first = next(iter(runs.values()))
    probes = list(next(iter(first.values()))["read"]["probes"])
    print(f"{'when':<6} {'threads':>7} {'kind':<6} " + " ".join(f"{p:>15}" for p in probes))
    for when, table in runs.items():
        for t, kinds in table.items():
            for kind in STREAM_KINDS:
                e = kinds[kind]
                cells = [f"{e['probes'][p]['gbps']:.2f}" if p in e["probes"] else "-"
                         for p in probes]
                print(f"{when:<6} {t:>7} {kind:<6} " + " ".join(f"{c:>15}" for c in cells))
    print("reference for '% of bandwidth' (best probe at <= that many threads, start or end):")
    for t, kinds in reference.items():
        print(f"  {t} thread(s): " + ", ".join(f"{k} {v['gbps']:.2f}" for k, v in kinds.items()))


def print_table(rows: list[dict]) -> None:
    print("\n== Results (fl x = t_impl / t_fastloss: how many times faster fastloss is) ==")
    print(TABLE_HEADER)
    last = None
    for r in rows:
        key = (r["loss"], r["op"], r["dtype"], r["n"], r["threads"])
        if last is not None and key != last:
            print()
        last = key
        print(format_row(r))


def print_summary(ctx: Context) -> None:
    big_n = max(ctx.args.sizes)
    rows = [r for r in ctx.rows if r["n"] == big_n and "time_s" in r]
    libs = [p.name for p in ctx.peers]
    peer_cols = []
    for lib in libs:
        peer_cols.append(lib)
        if lib == "numba":
            peer_cols.append("numba+out")
    ref = f"fastloss[{ctx.ref_isa}]"
    print(f"\n== Summary at N={fmt_n(big_n)}: fastloss[{ctx.ref_isa}] "
          "% of bandwidth and speed-up over each peer ==")
    print("   %bw: allocating call / with grad_out=, hess_out=; peer columns: "
          "t_peer / t_fastloss (+out rows against fastloss+out)")
    head = (f"{'loss':<15} {'op':<15} {'dtype':<8} {'thr':>3} {'ns/elem':>8} "
            f"{'%bw':>12} {'%bw+out':>8} " + " ".join(f"{c:>9}" for c in peer_cols))
    print(head)
    keys = list(dict.fromkeys((r["loss"], r["op"], r["dtype"], r["threads"]) for r in rows))
    for key in keys:
        group = {r["impl"]: r for r in rows
                 if (r["loss"], r["op"], r["dtype"], r["threads"]) == key}
        base = group.get(ref)
        if base is None:
            continue
        out = group.get(ref + "+out")
        pct = "-" if base["pct_bandwidth"] is None else \
            f"{base['pct_bandwidth']:.0f}% {base['bw_ref']}"
        pct_out = "-" if (out is None or out["pct_bandwidth"] is None) else \
            f"{out['pct_bandwidth']:.0f}%"
        cells = []
        for c in peer_cols:
            r = group.get(c)
            cells.append(f"{r['fastloss_speedup']:.2f}x" if r and r["fastloss_speedup"] else "-")
        print(f"{key[0]:<15} {key[1]:<15} {key[2]:<8} {key[3]:>3} "
              f"{base['ns_per_element']:>8.3f} {pct:>12} {pct_out:>8} "
              + " ".join(f"{c:>9}" for c in cells))


def isa_table(ctx: Context) -> list[dict]:
    """ns/element of each ISA side by side (preallocated outputs where there are outputs)."""
    out = []
    groups: dict = {}
    for r in ctx.rows:
        if r["library"] != "fastloss" or "time_s" not in r:
            continue
        if r["op"] != "value" and not r["preallocated"]:
            continue
        key = (r["loss"], r["op"], r["dtype"], r["n"], r["threads"])
        groups.setdefault(key, {})[r["isa"]] = r["ns_per_element"]
    for key, by_isa in groups.items():
        entry = dict(zip(("loss", "op", "dtype", "n", "threads"), key))
        entry["ns_per_element"] = by_isa
        if "baseline" in by_isa:
            entry["speedup_over_baseline"] = {i: by_isa["baseline"] / v for i, v in by_isa.items()}
        out.append(entry)
    return out


def print_isa_table(ctx: Context, table: list[dict]) -> None:
    print("\n== fastloss under each ISA: ns/element (x = speed-up over baseline); "
          "outputs preallocated ==")
    cfg = fl.show_config(mode="dicts").get("isa", {})
    compiled = cfg.get("compiled", fl._core.compiled_isas())
    supported = cfg.get("supported", fl._core.supported_isas())
    missing = [i for i in compiled if i not in supported]
    if missing:
        print(f"   compiled but not supported by this CPU (not measured): {', '.join(missing)}")
    print(f"{'loss':<15} {'op':<15} {'dtype':<8} {'N':>5} {'thr':>3} "
          + " ".join(f"{i:>18}" for i in ctx.isas))
    for e in table:
        cells = []
        for isa in ctx.isas:
            v = e["ns_per_element"].get(isa)
            x = e.get("speedup_over_baseline", {}).get(isa)
            cells.append("-" if v is None else (f"{v:.3f} ({x:.2f}x)" if x else f"{v:.3f}"))
        print(f"{e['loss']:<15} {e['op']:<15} {e['dtype']:<8} {fmt_n(e['n']):>5} "
              f"{e['threads']:>3} " + " ".join(f"{c:>18}" for c in cells))


def print_overhead(rows: list[dict]) -> None:
    print("\n== fastloss per-call overhead (1 thread, fastest sample; target <= 5 us) ==")
    print("   overhead = t(1e3) - kernel(1e3); kernel from the in-cache slope t(16e3)-t(1e3), "
          "or from the largest-N ns/element")
    print(f"{'loss':<15} {'op':<15} {'dtype':<8} {'t(N=1)':>9} {'t(1e3)':>9} "
          f"{'t(1e3) all':>10} {'kernel':>9} {'overhead':>9} {'ovh(bigN)':>9}")
    for r in rows:
        ov = r["overhead_s"]
        flag = "" if ov <= 5e-6 else "  > 5 us"
        print(f"{r['loss']:<15} {r['op']:<15} {r['dtype']:<8} {r['t_n1_s'] * 1e6:>7.2f}us "
              f"{r['t_1e3_s'] * 1e6:>7.2f}us {r['t_1e3_all_threads_s'] * 1e6:>8.2f}us "
              f"{r['kernel_1e3_in_cache_s'] * 1e6:>7.2f}us {ov * 1e6:>7.2f}us "
              + (f"{r['overhead_large_n_s'] * 1e6:>7.2f}us" if "overhead_large_n_s" in r
                 else f"{'-':>9}") + flag)


def print_memory(rows: list[dict]) -> None:
    print("\n== Extra memory of one call, in arrays of pred's size (N=%s) ==" %
          (fmt_n(rows[0]["n"]) if rows else "-"))
    print("   traced: tracemalloc peak (NumPy allocations); rss: peak resident-set growth "
          "(everything, C++ buffers too)")
    print(f"{'loss':<15} {'call':<27} {'dtype':<8} {'expected':>8} {'traced':>8} {'rss':>8}")
    for r in rows:
        rss = f"{r['rss_ratio']:.2f}" if "rss_ratio" in r else "-"
        flag = "" if abs(r["traced_ratio"] - r["expected_arrays"]) < 0.05 else "  <-- unexpected"
        print(f"{r['loss']:<15} {r['call']:<27} {r['dtype']:<8} {r['expected_arrays']:>8} "
              f"{r['traced_ratio']:>8.2f} {rss:>8}{flag}")


# -------------------------------------------------------------------- main

def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    return str(o)


def main(argv=None) -> int:
    args = parse_args(argv)
    supported = list(fl._core.supported_isas())
    ref_isa = fl._core.active_isa()
    isas = args.isa or supported
    if bad := [i for i in isas if i not in supported]:
        sys.exit(f"--isa {bad}: not supported here; supported: {supported}")
    if ref_isa not in isas:
        ref_isa = isas[0]
    peers = []
    for name in args.peers:
        peer = PEER_CLASSES[name]()
        if peer.available:
            peers.append(peer)
        else:
            log(f"skipping {name}: {peer.reason}")
    ctx = Context(args=args, peers=peers, isas=isas, ref_isa=ref_isa, bandwidth={},
                  llc_bytes=last_level_cache_bytes())
    if UNSET_ENV:
        log(f"removed from the environment before importing NumPy: {', '.join(UNSET_ENV)}")
    log(f"fastloss {getattr(fl, '__version__', '?')}, ISAs {isas} (reference {ref_isa}), "
        f"peers {[p.name for p in peers]}, threads {args.threads}, sizes {args.sizes}")

    load_start = load_average()
    if load_start and load_start[0] > 0.5:
        log(f"warning: load average {load_start[0]:.2f} before the run: something else is "
            "using the CPUs, and multi-threaded timings will suffer")
    t_start = time.perf_counter()
    bandwidth_runs = {"start": measure_bandwidth(args.threads, args.bandwidth_size,
                                                 args.repeat, ctx.llc_bytes)}
    ctx.bandwidth = bandwidth_reference_table(bandwidth_runs, args.threads)
    log(TABLE_HEADER)
    run_matrix(ctx)
    log("bandwidth again, at the end of the run:")
    bandwidth_runs["end"] = measure_bandwidth(args.threads, args.bandwidth_size,
                                              args.repeat, ctx.llc_bytes)
    ctx.bandwidth = bandwidth_reference_table(bandwidth_runs, args.threads)
    for row in ctx.rows:
        if "gbps" in row:
            set_pct_bandwidth(row, ctx.bandwidth)
    isa_rows = isa_table(ctx)
    overhead = per_call_overhead(ctx)
    memory = peak_memory(ctx)
    info = machine_info(ctx)
    info["load_average_start"] = load_start
    info["load_average_end"] = load_average()
    elapsed = time.perf_counter() - t_start

    print(f"fastloss benchmark  {info['date']}  {info['cpu_model']}, "
          f"{info['cores_available']} cores, LLC {(ctx.llc_bytes or 0) / 2**20:.0f} MiB, "
          f"ISA active {ref_isa}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
    print(f"load average (1 min) at start {info['load_average_start'] and info['load_average_start'][0]}, "
          f"at end {info['load_average_end'] and info['load_average_end'][0]}")
    print_bandwidth(bandwidth_runs, ctx.bandwidth)
    print_table(ctx.rows)
    print_summary(ctx)
    print_isa_table(ctx, isa_rows)
    print_overhead(overhead)
    print_memory(memory)
    notes = [f"{p.name} threads: {p.threads_note}" for p in peers]
    print("\nnotes:\n  " + "\n  ".join(notes))
    if ctx.warnings:
        print("\nwarnings:\n  " + "\n  ".join(ctx.warnings))
    print(f"\n(run took {elapsed:.0f} s)")

    if args.json:
        doc = {"machine": info,
               "options": {k: v for k, v in vars(args).items()},
               "bandwidth": {"runs": {w: {str(t): v for t, v in b.items()}
                                      for w, b in bandwidth_runs.items()},
                             "reference": {str(t): v for t, v in ctx.bandwidth.items()}},
               "results": ctx.rows, "isa": isa_rows, "per_call_overhead": overhead,
               "memory": memory, "warnings": ctx.warnings, "elapsed_s": elapsed}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=_json_default)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
