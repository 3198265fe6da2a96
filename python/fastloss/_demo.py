"""The ``fastloss demo`` subcommand: time every registered loss against NumPy and check it.

For each loss in ``fastloss.losses`` the demo draws synthetic inputs, runs
``loss.value_and_grad(..., reduction="mean")``, computes the same value and
gradient with plain NumPy array expressions, and prints one table row: the two
timings, fastloss's throughput, the speed-up and whether the results agree.

Two small registries keep this open to new loss families without touching the
driver:

* ``DATA_GENERATORS`` maps a loss *family* (``Loss.family``, e.g.
  ``"regression"``) to a function that draws that family's inputs;
* ``NUMPY_REFERENCES`` maps a loss *name* to a NumPy function that returns the
  per-sample values and the per-sample gradients (of the sum) for the loss's
  parameters as keywords.

The references here are deliberately the textbook formulas, written without
any of the numerical care of the kernels (``log(cosh(r))``, not its stable
rewrite): the demo compares two independent computations on well-scaled data.
They are not the test suite's reference, which lives in ``tests/``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

import numpy as np

import fastloss as fl

__all__ = [
    "DATA_GENERATORS",
    "NUMPY_REFERENCES",
    "DemoInputs",
    "data_generator",
    "numpy_reference",
    "run",
]


# --------------------------------------------------------------------------
# Synthetic data, one generator per loss family
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoInputs:
    """Positional arrays for a loss call (the first one is differentiated), plus keywords."""

    args: tuple[np.ndarray, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


DataGenerator = Callable[[np.random.Generator, int, np.dtype], DemoInputs]
DATA_GENERATORS: dict[str, DataGenerator] = {}


def data_generator(family: str) -> Callable[[DataGenerator], DataGenerator]:
    """Register the input generator used for every loss of ``family``."""

    def register(func: DataGenerator) -> DataGenerator:
        if family in DATA_GENERATORS:
            raise ValueError(f"a data generator for family {family!r} is already registered")
        DATA_GENERATORS[family] = func
        return func

    return register


@data_generator("regression")
def _regression_inputs(rng: np.random.Generator, size: int, dtype: np.dtype) -> DemoInputs:
    # Two independent standard normals: the residual is N(0, 2), so about half
    # of the samples fall on each side of Huber's default delta = 1.
    pred = rng.standard_normal(size, dtype=dtype)
    target = rng.standard_normal(size, dtype=dtype)
    return DemoInputs((pred, target))


@data_generator("binary")
def _binary_inputs(rng: np.random.Generator, size: int, dtype: np.dtype) -> DemoInputs:
    # Logits of a model that is right about 3 times in 4, and 0/1 labels with 10% positives.
    target = (rng.random(size) < 0.1).astype(dtype)
    logits = (rng.standard_normal(size) * 2.0 + (4.0 * target - 2.0)).astype(dtype)
    return DemoInputs((logits, target))


DEMO_CLASSES = 10


@data_generator("multiclass")
def _multiclass_inputs(rng: np.random.Generator, size: int, dtype: np.dtype) -> DemoInputs:
    # ``size`` logits: size // K rows of K = 10 classes, integer labels.
    rows = max(1, size // DEMO_CLASSES)
    logits = rng.standard_normal((rows, DEMO_CLASSES), dtype=dtype) * 2.0
    labels = rng.integers(0, DEMO_CLASSES, rows)
    return DemoInputs((logits, labels))


# --------------------------------------------------------------------------
# NumPy references, one per loss name
# --------------------------------------------------------------------------

# reference(*args, **params) -> (per-sample values, per-sample gradient w.r.t. args[0])
NumpyReference = Callable[..., "tuple[np.ndarray, np.ndarray]"]
NUMPY_REFERENCES: dict[str, NumpyReference] = {}


def numpy_reference(name: str) -> Callable[[NumpyReference], NumpyReference]:
    """Register the NumPy reference of the loss called ``name``."""

    def register(func: NumpyReference) -> NumpyReference:
        if name in NUMPY_REFERENCES:
            raise ValueError(f"a NumPy reference for {name!r} is already registered")
        NUMPY_REFERENCES[name] = func
        return func

    return register


@numpy_reference("squared_error")
def _squared_error(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = pred - target
    return r * r, 2 * r


@numpy_reference("absolute_error")
def _absolute_error(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = pred - target
    return np.abs(r), np.sign(r)


@numpy_reference("huber")
def _huber(
    pred: np.ndarray, target: np.ndarray, *, delta: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    r = pred - target
    inside = np.abs(r) <= delta
    value = np.where(inside, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    grad = np.where(inside, r, delta * np.sign(r))
    return value, grad


@numpy_reference("log_cosh")
def _log_cosh(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = pred - target
    return np.log(np.cosh(r)), np.tanh(r)


@numpy_reference("sigmoid_cross_entropy")
def _sigmoid_cross_entropy(logits: np.ndarray, target: np.ndarray, **defaults: Any
                           ) -> tuple[np.ndarray, np.ndarray]:
    # The default options (no weights, no smoothing, logits): softplus(z) - t z, sigmoid(z) - t
    value = np.logaddexp(0, logits) - target * logits
    return value, 1.0 / (1.0 + np.exp(-logits)) - target


@numpy_reference("softmax_cross_entropy")
def _softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, **defaults: Any
                           ) -> tuple[np.ndarray, np.ndarray]:
    # The default options: log-sum-exp minus the label's logit; softmax - onehot.
    shifted = logits - logits.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=-1))
    rows = np.arange(logits.shape[0])
    value = lse - shifted[rows, labels]
    grad = np.exp(shifted - lse[:, None])
    grad[rows, labels] -= 1.0
    return value, grad


@numpy_reference("hinge")
def _hinge(scores: np.ndarray, target: np.ndarray, *, margin: float = 1.0
           ) -> tuple[np.ndarray, np.ndarray]:
    y = np.where(target > 0, 1.0, -1.0)
    z = margin - y * scores
    return np.maximum(z, 0.0), np.where(z > 0, -y, 0.0)


@numpy_reference("squared_hinge")
def _squared_hinge(scores: np.ndarray, target: np.ndarray, *, margin: float = 1.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    y = np.where(target > 0, 1.0, -1.0)
    z = np.maximum(margin - y * scores, 0.0)
    return z * z, -2.0 * y * z


@numpy_reference("multiclass_hinge")
def _multiclass_hinge(scores: np.ndarray, labels: np.ndarray, *, margin: float = 1.0,
                      **defaults: Any) -> tuple[np.ndarray, np.ndarray]:
    # The default kind, Crammer-Singer: max(0, margin + max_{j != y} s_j - s_y).
    rows = np.arange(scores.shape[0])
    others = scores.astype(np.float64)
    others[rows, labels] = -np.inf
    c = np.argmax(others, axis=1)
    z = margin + others[rows, c] - scores[rows, labels]
    grad = np.zeros(scores.shape)
    active = (z > 0).astype(np.float64)
    grad[rows, c] += active
    grad[rows, labels] -= active
    return np.maximum(z, 0.0), grad


@data_generator("multilabel")
def _multilabel_inputs(rng: np.random.Generator, size: int, dtype: np.dtype) -> DemoInputs:
    # ``size`` scores: size // K rows of K = 10 classes, about 2 positive labels per row.
    rows = max(1, size // DEMO_CLASSES)
    scores = rng.standard_normal((rows, DEMO_CLASSES), dtype=dtype) * 2.0
    labels = (rng.random((rows, DEMO_CLASSES)) < 0.2).astype(dtype)
    return DemoInputs((scores, labels))


@numpy_reference("multilabel_softmax_cross_entropy")
def _multilabel_softmax_ce(scores: np.ndarray, target: np.ndarray, **defaults: Any
                           ) -> tuple[np.ndarray, np.ndarray]:
    # log(1 + sum_neg e^s) + log(1 + sum_pos e^-s), written directly (fine for |s| < 700).
    s = scores.astype(np.float64)
    ea = np.where(target == 0, np.exp(s), 0.0)
    eb = np.where(target == 1, np.exp(-s), 0.0)
    a = 1.0 + ea.sum(axis=1)
    b = 1.0 + eb.sum(axis=1)
    return np.log(a) + np.log(b), ea / a[:, None] - eb / b[:, None]


def _numpy_mean_value_and_grad(
    reference: NumpyReference, inputs: DemoInputs, params: dict[str, Any]
) -> tuple[float, np.ndarray]:
    """What a NumPy user writes for value_and_grad(..., reduction="mean"), unweighted."""
    values, grad = reference(*inputs.args, **inputs.kwargs, **params)
    count = values.size
    # float64 accumulation, as fastloss does, so that the check compares like with like.
    mean = float(np.sum(values, dtype=np.float64) / count) if count else float("nan")
    grad = np.asarray(grad)
    grad /= count
    return mean, grad


# --------------------------------------------------------------------------
# Timing and checking
# --------------------------------------------------------------------------

# Tolerances relative to the value (for the mean) and to the largest gradient
# entry: a few hundred ULP of the compute dtype, far above the kernels' stated
# accuracy and far below any formula or scaling mistake.
_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def _best_time(func: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The smallest wall time of ``repeat`` calls, and the last call's result."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def _check(
    value: Any, grad: Any, ref_value: float, ref_grad: np.ndarray, dtype: np.dtype
) -> list[str]:
    """Every disagreement between fastloss's result and the NumPy reference, in words."""
    rtol = _RTOL[dtype]
    problems = []
    if not isinstance(value, (float, np.floating)):
        problems.append(f"value is a {type(value).__name__}, expected a float")
    elif not abs(float(value) - ref_value) <= rtol * abs(ref_value):
        problems.append(f"value {float(value)!r} != NumPy {ref_value!r} (rtol {rtol:g})")
    if not isinstance(grad, np.ndarray):
        problems.append(f"gradient is a {type(grad).__name__}, expected an ndarray")
        return problems
    if grad.shape != ref_grad.shape:
        problems.append(f"gradient shape {grad.shape} != {ref_grad.shape}")
        return problems
    if grad.dtype != dtype:
        problems.append(f"gradient dtype {grad.dtype} != input dtype {dtype}")
    if ref_grad.size == 0:
        return problems
    allowed = rtol * float(np.max(np.abs(ref_grad)))
    err = np.abs(grad.astype(np.float64) - ref_grad)
    bad = ~(err <= allowed)  # NaN counts as a disagreement
    if np.any(bad):
        # Point at a NaN if there is one, else at the largest difference.
        worst = int(np.argmax(np.isnan(err))) if np.isnan(err).any() else int(np.argmax(err))
        problems.append(
            f"gradient differs at {int(np.count_nonzero(bad))} of {err.size} entries;"
            f" worst at index {worst}: fastloss {float(grad.flat[worst])!r},"
            f" NumPy {float(ref_grad.flat[worst])!r} (allowed |diff| {allowed:.3g})"
        )
    return problems


@dataclass
class _Row:
    label: str
    t_fastloss: float | None = None
    t_numpy: float | None = None
    status: str = "OK"
    notes: list[str] = field(default_factory=list)


def _format_params(params: dict[str, Any]) -> str:
    if not params:
        return ""
    return "(" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in params.items()) + ")"


def _run_one(
    name: str, loss: Any, rng: np.random.Generator, size: int, dtype: np.dtype, repeat: int
) -> _Row:
    params = dict(getattr(loss, "params", {}) or {})
    row = _Row(label=name + _format_params(params))
    family = getattr(loss, "family", None)
    generator = DATA_GENERATORS.get(family)  # type: ignore[arg-type]
    if generator is None:
        row.status = "SKIP"
        row.notes.append(f"no demo data generator for family {family!r}")
        return row
    inputs = generator(rng, size, dtype)

    try:
        row.t_fastloss, (value, grad) = _best_time(
            lambda: loss.value_and_grad(*inputs.args, reduction="mean", **inputs.kwargs), repeat
        )
    except Exception as exc:  # report it in the table and go on with the other losses
        row.status = "FAIL"
        row.notes.append(f"value_and_grad raised {type(exc).__name__}: {exc}")
        return row

    reference = NUMPY_REFERENCES.get(name)
    if reference is None:
        row.status = "SKIP"
        row.notes.append("no NumPy reference in the demo")
        return row
    row.t_numpy, (ref_value, ref_grad) = _best_time(
        lambda: _numpy_mean_value_and_grad(reference, inputs, params), repeat
    )
    problems = _check(value, grad, ref_value, ref_grad, dtype)
    if problems:
        row.status = "FAIL"
        row.notes.extend(problems)
    return row


def _config_line(dtype: np.dtype, size: int, repeat: int) -> str:
    config = fl.show_config(mode="dicts")
    isa = config.get("isa", {})
    openmp = config.get("openmp", {})
    supported = ", ".join(isa.get("supported", [])) or "?"
    omp = f"OpenMP {openmp.get('version', '')}".rstrip() if openmp.get("enabled") else "no OpenMP"
    return (
        f"fastloss {config.get('version', '?')} | ISA {isa.get('active', '?')}"
        f" (supported: {supported}) | {omp} | threads {fl.get_num_threads()}\n"
        f"NumPy {np.__version__} | {size:,} elements of {dtype.name}"
        f" | best of {repeat} run{'s' if repeat != 1 else ''}"
    )


def _print_table(rows: list[_Row], size: int, file: TextIO) -> None:
    header = ("loss", "fastloss ms", "NumPy ms", "M elem/s", "speed-up", "check")
    cells = []
    for row in rows:
        t_fl, t_np = row.t_fastloss, row.t_numpy
        cells.append((
            row.label,
            f"{t_fl * 1e3:.2f}" if t_fl is not None else "-",
            f"{t_np * 1e3:.2f}" if t_np is not None else "-",
            f"{size / t_fl / 1e6:.1f}" if t_fl else "-",
            f"{t_np / t_fl:.1f}x" if t_fl and t_np is not None else "-",
            row.status,
        ))
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]

    def line(values: tuple[str, ...]) -> str:
        first = values[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(values[1:-1], widths[1:-1])]
        return "  ".join([first, *rest, values[-1]])

    print(line(header), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for values in cells:
        print(line(values), file=file)


def run(
    *,
    size: int = 10_000_000,
    dtype: str | np.dtype = "float64",
    threads: int | None = None,
    seed: int = 0,
    repeat: int = 3,
    file: TextIO | None = None,
) -> int:
    """Run the demo, print the report to ``file`` (stdout) and return the exit status.

    The status is 0 when every checked loss agrees with NumPy, 1 otherwise
    (losses without a data generator or a reference are reported as SKIP).
    """
    out = sys.stdout if file is None else file
    dtype = np.dtype(dtype)
    if dtype not in _RTOL:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")

    with fl.threads(threads) if threads is not None else contextlib.nullcontext():
        print(_config_line(dtype, size, repeat), file=out)
        print(file=out)
        rows = []
        for name, loss in fl.losses.items():
            # One seeded stream per loss, so that a loss's data does not depend on
            # which losses come before it in the registry.
            rng = np.random.default_rng([seed, *name.encode()])
            rows.append(_run_one(name, loss, rng, size, dtype, repeat))

    _print_table(rows, size, out)
    print(
        "\nfastloss: value_and_grad(pred, target, reduction='mean');"
        " NumPy: the same value and gradient from plain array expressions (one thread).",
        file=out,
    )
    notes = [(row.label, note) for row in rows for note in row.notes]
    if notes:
        print(file=out)
        for label, note in notes:
            print(f"{label}: {note}", file=out)
    failed = [row.label for row in rows if row.status == "FAIL"]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=out)
        return 1
    return 0
