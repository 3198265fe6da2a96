"""Float64 NumPy reference formulas for the fastloss test suite.

Written from the mathematics of each loss, independently of the compiled
kernels: nothing here imports fastloss.  Every function takes float64 arrays
(already broadcast to a common shape) plus the loss's keyword parameters and
returns ``(value, grad, hess)`` elementwise, where ``grad`` and ``hess`` are
the first and second derivative with respect to the first argument.

``REFERENCE`` is the registry the shared parametrised tests read.  A new loss
adds one function and one entry:

    "name": {
        "fn": function,             # (a, b, **params) -> (value, grad, hess)
        "params": {...},            # default keyword parameters
        "kind": "elementwise",
        "fisher": float | None,     # expected Hessian, None where undefined
        "kink_distance": function | None,
                                    # (a, b, **params) -> distance of each
                                    # point from the nearest place where a
                                    # derivative jumps (finite differences
                                    # and Hessian checks stay clear of it);
                                    # None for smooth losses
    }
"""

from __future__ import annotations

import functools

import numpy as np

LOG2 = float(np.log(2.0))


def _as_f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def _quiet(fn):
    """Evaluate a formula without floating-point warnings.

    The tests feed NaN, inf and huge values on purpose; the IEEE results
    (NaN, inf) are what the reference should return for them.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------
# Regression losses, r = pred - target
# --------------------------------------------------------------------------


@_quiet
def squared_error(pred, target):
    """l = (y - f)^2, g = 2 (f - y), h = 2."""
    pred, target = _as_f64(pred, target)
    r = pred - target
    return r * r, 2.0 * r, np.full_like(r, 2.0)


@_quiet
def absolute_error(pred, target):
    """l = |f - y|, g = sign(f - y) (0 at f == y), h = 0."""
    pred, target = _as_f64(pred, target)
    r = pred - target
    return np.abs(r), np.sign(r), np.zeros_like(r)


@_quiet
def huber(pred, target, delta=1.0):
    """Quadratic inside |r| <= delta, linear with slope delta outside."""
    pred, target = _as_f64(pred, target)
    r = pred - target
    a = np.abs(r)
    inside = a <= delta
    value = np.where(inside, 0.5 * r * r, delta * (a - 0.5 * delta))
    grad = np.where(inside, r, delta * np.sign(r))
    hess = np.where(inside, 1.0, 0.0)
    # NaN residuals compare False above; keep them NaN in every output.
    nan = np.isnan(r)
    value = np.where(nan, np.nan, value)
    grad = np.where(nan, np.nan, grad)
    hess = np.where(nan, np.nan, hess)
    return value, grad, hess


@_quiet
def log_cosh(pred, target):
    """l = log(cosh r), g = tanh r, h = sech^2 r.

    log(cosh r) = |r| + log(1 + exp(-2|r|)) - log 2 does not overflow for any
    finite r; sech^2 r = 4 e^{-2|r|} / (1 + e^{-2|r|})^2 likewise.  For small
    |r| that sum cancels to an absolute error of ~1e-16 whereas the loss is
    ~r^2/2, so there cosh r = 1 + 2 sinh^2(r/2) gives full relative accuracy.
    """
    pred, target = _as_f64(pred, target)
    r = pred - target
    a = np.abs(r)
    e = np.exp(-2.0 * a)
    small = np.log1p(2.0 * np.sinh(0.5 * a) ** 2)
    value = np.where(a < 1.0, small, a + np.log1p(e) - LOG2)
    grad = np.tanh(r)
    hess = 4.0 * e / (1.0 + e) ** 2
    return value, grad, hess


def _residual_kink_distance(distance):
    """Kink distance of a loss of r = pred - target, given as a function of |r|."""

    @_quiet
    def kink_distance(pred, target, **params):
        r = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
        return distance(np.abs(r), **params)

    return kink_distance


REFERENCE = {
    "squared_error": {
        "fn": squared_error,
        "params": {},
        "kind": "elementwise",
        "fisher": 2.0,
        "kink_distance": None,
    },
    "absolute_error": {
        "fn": absolute_error,
        "params": {},
        "kind": "elementwise",
        "fisher": 1.0,
        "kink_distance": _residual_kink_distance(lambda a: a),  # sign jumps at r = 0
    },
    "huber": {
        "fn": huber,
        "params": {"delta": 1.0},
        "kind": "elementwise",
        "fisher": None,
        "kink_distance": _residual_kink_distance(lambda a, delta=1.0: np.abs(a - delta)),
    },
    "log_cosh": {
        "fn": log_cosh,
        "params": {},
        "kind": "elementwise",
        "fisher": 0.5,
        "kink_distance": None,
    },
}


# --------------------------------------------------------------------------
# Reductions and Hessian policies (DESIGN.md semantics)
# --------------------------------------------------------------------------


def reduce(values, weights=None, reduction="none"):
    """Apply sample weights and a reduction to elementwise losses.

    "none": w * l elementwise; "sum": sum(w * l); "mean": sum(w * l) / sum(w)
    (sum(l) / N without weights; NaN for empty input).  Reduced results are
    Python floats computed in float64.
    """
    values = np.asarray(values, dtype=np.float64)
    if weights is None:
        weights = np.ones_like(values)
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), values.shape)
    weighted = weights * values
    if reduction == "none":
        return weighted
    total = float(np.sum(weighted, dtype=np.float64))
    if reduction == "sum":
        return total
    if reduction == "mean":
        denom = np.sum(weights, dtype=np.float64)
        if values.size == 0:
            return float("nan")
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float64(total) / denom)
    raise ValueError(f"unknown reduction {reduction!r}")


def derivative_scale(weights, shape, reduction):
    """Factor the elementwise grad/hess is multiplied by for a reduction.

    Gradients are of what was returned: w_i for "none"/"sum", w_i / sum(w)
    for "mean".
    """
    if weights is None:
        weights = np.ones(shape)
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), shape)
    if reduction == "mean":
        denom = float(np.sum(weights, dtype=np.float64))
        return weights / denom if weights.size else np.asarray(weights, np.float64)
    return np.array(weights, dtype=np.float64)


def apply_hessian_policy(hess, name, policy, hess_floor=1e-6):
    """Elementwise (unweighted) Hessian under a policy."""
    hess = np.asarray(hess, dtype=np.float64)
    if policy == "exact":
        return hess
    if policy == "clip":
        return np.maximum(hess, hess_floor)
    if policy == "abs":
        return np.abs(hess)
    if policy == "fisher":
        fisher = REFERENCE[name]["fisher"]
        if fisher is None:
            raise ValueError(f"no Fisher Hessian for {name}")
        return np.full_like(hess, fisher)
    raise ValueError(f"unknown hessian policy {policy!r}")


def sum_to_shape(array, shape):
    """Sum a broadcast result back to an operand's shape (NumPy's rules)."""
    array = np.asarray(array, dtype=np.float64)
    shape = tuple(shape)
    extra = array.ndim - len(shape)
    if extra:
        array = array.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and array.shape[i] != 1)
    if axes:
        array = array.sum(axis=axes, keepdims=True)
    return array.reshape(shape)
