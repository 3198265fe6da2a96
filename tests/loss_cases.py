"""Valid inputs, parameter values and references for every registered loss.

The hardening tests (bad input, properties, concurrency, determinism, memory)
are generated from ``fastloss.losses``: a loss joins them by registration.
What they need to know about a loss comes from its ``Loss`` object:

* ``.kind`` chooses the shape of the data: "elementwise" (pred and target
  broadcast to one shape), "rowwise" (logits [..., K], one integer class
  index per row, or a multi-hot row [..., K] for family "multilabel"),
  "margin_ranking" (a pair (x1, x2) and y in {-1, 0, +1}) or "pairwise" (1-D
  scores and relevance, groups from ``group_sizes``, one weight per group);
  ``call`` unpacks the pair and adds group= so that every kind is called as
  ``call(loss, method, first, target, **kw)``;
* ``.family`` chooses the target's domain: any real number ("regression"),
  0/1 ("binary", valid for cross-entropy, focal and hinge losses alike),
  class indices ("multiclass", "ranking" row losses) or 0/1 rows ("multilabel");
* ``.params`` lists the keyword parameters; values to try, valid and
  invalid, come from ``PARAMS``, a table keyed by parameter name, never by
  loss.

``reference_call`` finds an independent float64 reference for a loss in
``tests/reference*.py`` where one exists.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import inspect
import math
import os
from typing import Any, Callable, Optional

import numpy as np

KINDS = ("elementwise", "rowwise", "margin_ranking", "pairwise")
FAMILIES = ("regression", "binary", "multiclass", "multilabel", "ranking")
# Kinds whose calls are (first, target) with one value per sample (element or row) and one
# gradient of the first argument's shape: the bad-input matrix and the property tests model
# these. The other kinds join the tests that only need a valid call (lc.call):
NOT_GENERATED_KINDS = {
    # Two differentiated inputs: (x1, x2, y) and gradients as a pair. The bad-input matrix
    # indexes, reshapes and replaces "the first argument" as one array.
    "margin_ranking": "two differentiated inputs (x1, x2); grads come as a pair",
    # One value and one sample weight per group, not per document: dropping a document is
    # not dropping a sample, and weights do not have the scores' shape.
    "pairwise": "values and weights per group (group=/qid=), scores 1-D only",
}
SAMPLE_KINDS = tuple(k for k in KINDS if k not in NOT_GENERATED_KINDS)
K_CLASSES = 5
NAN = float("nan")
INF = float("inf")


# Losses whose argument kinds the generators here do not model at all; a loss missing from
# both KINDS and this set fails test_every_loss_has_a_known_kind.
NOT_GENERATED: frozenset = frozenset()


def loss_names(fl, kinds=KINDS):
    """Every registered loss of one of `kinds` (not in NOT_GENERATED)."""
    return sorted(n for n in set(fl.losses) - NOT_GENERATED if fl.losses[n].kind in kinds)


def first_name(loss) -> str:
    """The name every message uses for the (first) differentiated argument: the loss's own
    ("logits", "scores", "pred", ...)."""
    return loss.arg_names[0]


def n_classes(loss) -> int:
    return K_CLASSES if loss.kind == "rowwise" else 2


def index_targets(loss) -> bool:
    """Row-wise with one integer class index per row (not a multi-hot row)."""
    return loss.kind == "rowwise" and loss.family != "multilabel"


def probability_rows(loss) -> bool:
    """An index loss that also takes a probability row per sample as its target: the losses
    that smooth labels work on distributions (docs/losses.md, label smoothing)."""
    return index_targets(loss) and "label_smoothing" in loss.params


# Group sizes of the generated pairwise calls (one empty group, one single document).
GROUP_PATTERN = (4, 1, 7, 0, 3, 9, 2)


def group_sizes(n: int) -> np.ndarray:
    """The group= of a generated pairwise call over n documents."""
    sizes, total, i = [], 0, 0
    while total < n:
        g = min(GROUP_PATTERN[i % len(GROUP_PATTERN)], n - total)
        sizes.append(g)
        total += g
        i += 1
    return np.array(sizes, dtype=np.int64)


# --------------------------------------------------------------------------
# Valid data
# --------------------------------------------------------------------------


def make_target(loss, rng, shape, dtype=np.float64):
    """A valid target for `loss` with the loss shape `shape` (rows shape for rowwise)."""
    # Every class present where the shape allows it ("balanced" class weights need them).
    size = int(np.prod(shape))
    if loss.kind == "pairwise":
        # Relevance grades 0..3; the first group (4 documents) holds all four, so that
        # every pair weighting changes its value.
        t = rng.permutation(np.arange(size) % 4)
        if size >= GROUP_PATTERN[0]:
            t[:4] = rng.permutation(4)
        return t.astype(dtype)
    if loss.kind == "margin_ranking":
        # y in {-1, +1}, and 0 (read as -1).
        return rng.permutation(np.array([1.0, -1.0, 0.0])[np.arange(size) % 3]).astype(
            dtype).reshape(shape)
    if loss.kind == "rowwise" and loss.family == "multilabel":
        full = tuple(shape) + (K_CLASSES,)
        return (rng.uniform(size=full) < 0.4).astype(dtype)
    if loss.kind == "rowwise":
        return rng.permutation(np.arange(size) % K_CLASSES).astype(np.int64).reshape(shape)
    if loss.family == "binary":
        return rng.permutation(np.arange(size) % 2).astype(dtype).reshape(shape)
    return rng.normal(0.0, 2.0, size=shape).astype(dtype)


def make_first(loss, rng, shape, dtype=np.float64, probabilities=False):
    """A valid first argument: values (or logits [..., K]), or probabilities; a pair (x1, x2)
    for margin_ranking, 1-D scores for pairwise losses."""
    if loss.kind == "margin_ranking":
        return tuple(rng.normal(0.0, 2.0, size=shape).astype(dtype) for _ in range(2))
    if loss.kind == "pairwise":
        shape = (int(np.prod(shape)),)
    if loss.kind == "rowwise":
        full = tuple(shape) + (K_CLASSES,)
        if probabilities:
            e = rng.uniform(0.2, 1.0, size=full)
            return (e / e.sum(axis=-1, keepdims=True)).astype(dtype)
        return rng.normal(0.0, 2.0, size=full).astype(dtype)
    if probabilities:
        return rng.uniform(0.05, 0.95, size=shape).astype(dtype)
    return rng.normal(0.0, 2.0, size=shape).astype(dtype)


def weight_shape(loss, shape):
    """The shape of sample_weight: one per sample, or one per group (pairwise)."""
    if loss.kind == "pairwise":
        return (len(group_sizes(int(np.prod(shape)))),)
    return tuple(shape)


def make_inputs(loss, rng, shape=(6,), dtype=np.float64, weighted=False, probabilities=False):
    """(first, target, sample_weight or None) of a valid call (see `call`)."""
    first = make_first(loss, rng, shape, dtype, probabilities)
    target = make_target(loss, rng, shape, dtype)
    weight = rng.uniform(0.5, 2.0, size=weight_shape(loss, shape)).astype(dtype) \
        if weighted else None
    return first, target, weight


def operand_shapes(loss, shape):
    """{argument: its shape} for a call whose loss shape (rows for rowwise) is `shape`."""
    if loss.kind == "margin_ranking":
        return {"x1": tuple(shape), "x2": tuple(shape), "y": tuple(shape),
                "sample_weight": tuple(shape)}
    if loss.kind == "pairwise":
        n = (int(np.prod(shape)),)
        return {"scores": n, "relevance": n, "sample_weight": weight_shape(loss, shape)}
    rows = tuple(shape)
    first = rows + ((K_CLASSES,) if loss.kind == "rowwise" else ())
    target = first if loss.kind == "rowwise" and not index_targets(loss) else rows
    return {first_name(loss): first, "target": target, "sample_weight": rows}


def call(loss, method, first, target, *args, **kw):
    """`method` of `loss` on operands from make_inputs: x1, x2 unpacked for margin_ranking,
    the generated group= added for pairwise losses (unless the caller gives group/qid)."""
    fn = method_of(loss, method)
    if loss.kind == "margin_ranking":
        return fn(*first, target, *args, **kw)
    if loss.kind == "pairwise" and "group" not in kw and "qid" not in kw:
        kw["group"] = group_sizes(np.shape(first)[0] if np.ndim(first) else 1)
    return fn(first, target, *args, **kw)


def like_grad(loss, first, empty=np.empty_like):
    """An output array (a pair for margin_ranking) for the gradient or Hessian of `first`."""
    if loss.kind == "margin_ranking":
        return tuple(empty(f) for f in first)
    return empty(first)


def nbytes(x):
    return sum(a.nbytes for a in flatten([x]))


# --------------------------------------------------------------------------
# Parameters: a table keyed by parameter name
# --------------------------------------------------------------------------


@dataclasses.dataclass
class ParamSpec:
    # Valid values other than the default; a callable gets the number of classes. A value
    # wrapped in Only(...) applies to the losses its `where` accepts, or needs other
    # parameters set alongside it (`needs`).
    valid: list = dataclasses.field(default_factory=list)
    # (value, exception type) pairs, or Only((value, exception type), where=...); a callable
    # value gets the number of classes.
    invalid: list = dataclasses.field(default_factory=list)
    # The data a valid non-default value needs: "probabilities" for from_logits=False.
    data: Optional[str] = None


@dataclasses.dataclass
class Only:
    entry: Any
    where: Callable = lambda loss: True
    needs: dict = dataclasses.field(default_factory=dict)


def _scale(loss) -> bool:
    # gamma is an exponent (focal losses, 0 allowed) or a scale of the scores (ranking
    # losses: crcnn_ranking's gamma must be > 0).
    return loss.family == "ranking"


PARAMS = {
    "delta": ParamSpec(valid=[0.5, 3.0], invalid=[(0.0, ValueError), (-1.0, ValueError),
                                                  (NAN, ValueError), (INF, ValueError),
                                                  ("1", TypeError), (None, TypeError)]),
    "gamma": ParamSpec(valid=[Only(0.0, where=lambda loss: not _scale(loss)), 0.5, 3.0],
                       invalid=[(-0.5, ValueError), (NAN, ValueError), (INF, ValueError),
                                ("2", TypeError), Only((0.0, ValueError), where=_scale)]),
    "alpha": ParamSpec(valid=[0.0, 0.75, 1.0], invalid=[(-0.1, ValueError), (1.5, ValueError),
                                                        (NAN, ValueError)]),
    "n": ParamSpec(valid=[1.0, 0.5, 3.0], invalid=[(0.0, ValueError), (-1.0, ValueError),
                                                   (NAN, ValueError), (INF, ValueError),
                                                   ("2", TypeError)]),
    "label_smoothing": ParamSpec(valid=[0.1, 1.0], invalid=[(-0.1, ValueError), (1.5, ValueError),
                                                            (NAN, ValueError),
                                                            ("0.1", TypeError)]),
    "log_base": ParamSpec(valid=[2.0, 10.0], invalid=[(1.0, ValueError), (0.0, ValueError),
                                                      (0.5, ValueError),
                                                      (-2.0, ValueError), (NAN, ValueError),
                                                      ("10", TypeError)]),
    "pos_weight": ParamSpec(valid=[2.0, 0.0, lambda k: np.linspace(0.5, 3.0, 6)],
                            invalid=[(-1.0, ValueError), (NAN, ValueError), ("a", TypeError)]),
    "class_weight": ParamSpec(
        valid=["balanced", "auto", {0: 2.0}, lambda k: np.linspace(0.5, 2.0, k)],
        invalid=[("bogus", ValueError), (lambda k: np.ones(k + 1), ValueError),
                 (lambda k: -np.ones(k), ValueError), (lambda k: np.full(k, NAN), ValueError),
                 ({99: 1.0}, ValueError)]),
    "ignore_index": ParamSpec(valid=[1, -1, None], invalid=[(1.5, TypeError), ("0", TypeError)]),
    "from_logits": ParamSpec(valid=[False], invalid=[("yes", TypeError), (None, TypeError)],
                             data="probabilities"),
    "margin": ParamSpec(valid=[0.0, 2.0, -0.5], invalid=[(NAN, ValueError), (INF, ValueError),
                                                         ("1", TypeError), (None, TypeError)]),
    "m_pos": ParamSpec(valid=[1.0], invalid=[(NAN, ValueError), ("1", TypeError)]),
    "m_neg": ParamSpec(valid=[1.0], invalid=[(NAN, ValueError), ("1", TypeError)]),
    "kind": ParamSpec(valid=["crammer_singer", "weston_watkins"], invalid=[("bogus", ValueError)]),
    # multiclass_hinge: p = 2 is defined for kind="weston_watkins" only.
    "p": ParamSpec(valid=[Only(2, needs={"kind": "weston_watkins"}),
                          Only(1, needs={"kind": "weston_watkins"})],
                   invalid=[(3, ValueError), (0, ValueError), (1.5, ValueError),
                            (2, ValueError), ("1", TypeError), (True, TypeError)]),
    "other_class": ParamSpec(valid=[0, lambda k: k - 1, None],
                             invalid=[(lambda k: k, ValueError), (-1, ValueError),
                                      (1.5, TypeError), ("0", TypeError), (True, TypeError)]),
    "mask": ParamSpec(valid=[lambda k: np.arange(k) != 1, lambda k: np.ones(k, bool)],
                      invalid=[(lambda k: np.ones(k, np.int64), TypeError),
                               (lambda k: np.ones(k + 1, bool), ValueError),
                               (lambda k: np.ones((2, 6, k), bool), ValueError)]),
    "sigma": ParamSpec(valid=[0.5, 2.0], invalid=[(0.0, ValueError), (-1.0, ValueError),
                                                  (NAN, ValueError), ("1", TypeError)]),
    "pair_weight": ParamSpec(valid=["relevance_difference"],
                             invalid=[("bogus", ValueError), (None, ValueError)]),
    "value_per": ParamSpec(valid=["document"], invalid=[("bogus", ValueError),
                                                         (None, ValueError)]),
    # Group layouts for the generated 6 documents (make_inputs(..., shape=(6,)));
    # valid ones are every generated pairwise call's group= (lc.call).
    "group": ParamSpec(invalid=[([2, 2], ValueError), ([7, -1], ValueError),
                                ([1.5, 4.5], TypeError), ("6", TypeError),
                                ([[3], [3]], ValueError)]),
    "qid": ParamSpec(valid=[[3, 3, 1, 1, 2, 2], [0, 1, 0, 2, 0, 0]],  # 3 groups, as group=
                     invalid=[([0, 1], ValueError), ([0.5] * 6, TypeError),
                              (["a"] * 6, TypeError)]),
}


def resolve(value, loss):
    return value(n_classes(loss)) if callable(value) else value


def valid_param_values(loss):
    """[(param, value, spec)] for every non-default valid value of every tabled parameter
    (the extra parameters a value needs: param_kw)."""
    out = []
    for name in loss.params:
        spec = PARAMS.get(name)
        if spec is None:
            continue
        for value in spec.valid:
            if isinstance(value, Only) and not value.where(loss):
                continue
            out.append((name, value, spec))
    return out


def param_kw(loss, name, value):
    """The keyword arguments of a call with parameter `name` set to a table value."""
    if isinstance(value, Only):
        return {**value.needs, name: resolve(value.entry, loss)}
    return {name: resolve(value, loss)}


def invalid_param_values(loss):
    """[(param, value, exception type or None)]; None: a parameter without a table entry,
    probed with object() (TypeError or ValueError accepted)."""
    out = []
    for name in loss.params:
        spec = PARAMS.get(name)
        if spec is None:
            out.append((name, object(), None))
            continue
        for entry in spec.invalid:
            if isinstance(entry, Only):
                if not entry.where(loss):
                    continue
                entry = entry.entry
            value, exc = entry
            out.append((name, value, exc))
    return out


def value_repr(value) -> str:
    if isinstance(value, Only):
        return value_repr(value.entry) + "".join(f",{k}={v}" for k, v in value.needs.items())
    if callable(value):
        return "array"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return repr(value)


# --------------------------------------------------------------------------
# Calling every entry point
# --------------------------------------------------------------------------

METHODS = ("__call__", "grad", "value_and_grad", "grad_hess")


def method_of(loss, method):
    return loss if method == "__call__" else getattr(loss, method)


def call_all(loss, first, target, **kw):
    """Results of the four entry points as one flat list of arrays/floats."""
    hess_kw = {k: v for k, v in kw.items()}
    out = [loss(first, target, **kw), loss.grad(first, target, **kw)]
    out.extend(loss.value_and_grad(first, target, **kw))
    out.extend(loss.grad_hess(first, target, **hess_kw))
    return out


def flatten(results):
    flat = []
    for r in results:
        if isinstance(r, (tuple, list)):
            flat.extend(flatten(r))
        else:
            flat.append(np.asarray(r))
    return flat


def assert_within_ulp(a, b, what="", ulp=4, atol=0.0):
    """Same dtypes and shapes; NaN and inf where the other has them; finite entries within
    `ulp` units in the last place of the larger, or within atol (a difference of terms of
    that scale: FMA rounds p - q once where p and q are rounded apart). The entry points'
    FMA contraction may differ: docs/design.md, Determinism."""
    fa, fb = flatten(a), flatten(b)
    assert len(fa) == len(fb), what
    for i, (x, y) in enumerate(zip(fa, fb)):
        assert x.dtype == y.dtype, (what, i, x.dtype, y.dtype)
        assert x.shape == y.shape, (what, i, x.shape, y.shape)
        if x.dtype.kind != "f":
            assert x.tobytes() == y.tobytes(), (what, i, x, y)
            continue
        xn, yn = np.isnan(x), np.isnan(y)
        assert np.array_equal(xn, yn), (what, i, x, y)
        fin = np.isfinite(x) & np.isfinite(y)
        assert np.array_equal(x[~fin & ~xn], y[~fin & ~yn]), (what, i, x, y)
        big = np.maximum(np.abs(x[fin]), np.abs(y[fin]))
        spacing = np.spacing(big.astype(x.dtype))
        bad = np.abs(x[fin].astype(np.float64) - y[fin].astype(np.float64)) > np.maximum(
            ulp * spacing, atol)
        assert not np.any(bad), (what, i, x[fin][bad], y[fin][bad])


def assert_bit_identical(a, b, what=""):
    fa, fb = flatten(a), flatten(b)
    assert len(fa) == len(fb), what
    for i, (x, y) in enumerate(zip(fa, fb)):
        assert x.dtype == y.dtype, (what, i, x.dtype, y.dtype)
        assert x.shape == y.shape, (what, i, x.shape, y.shape)
        assert x.tobytes() == y.tobytes(), (what, i, x, y)


# --------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------

_HERE = os.path.dirname(os.path.abspath(__file__))


def _reference_modules():
    mods = []
    for path in sorted(glob.glob(os.path.join(_HERE, "reference*.py"))):
        name = os.path.splitext(os.path.basename(path))[0]
        mods.append(importlib.import_module(name))
    return mods


_REF_CACHE: dict = {}


def reference_for(name) -> Optional[Callable]:
    """A float64 reference of a whole call: f(first, target, reduction=, sample_weight=,
    **params) -> (value, grad, hess), or None when tests/reference*.py has none.

    Two conventions are understood: an elementwise ``REFERENCE`` registry entry
    (fn(a, b, **params) -> elementwise (value, grad, hess)), and a module-level function
    named after the loss taking ``reduction``/``sample_weight`` keywords.
    """
    if name in _REF_CACHE:
        return _REF_CACHE[name]
    found = None
    for mod in _reference_modules():
        registry = getattr(mod, "REFERENCE", None)
        if isinstance(registry, dict) and name in registry and registry[name].get("kind") == "elementwise":
            found = _from_registry(mod, registry[name])
            break
        fn = getattr(mod, name, None)
        if callable(fn):
            sig = inspect.signature(fn)
            if "reduction" in sig.parameters and "sample_weight" in sig.parameters:
                found = fn
                break
    _REF_CACHE[name] = found
    return found


def _from_registry(mod, entry):
    fn = entry["fn"]

    def call(first, target, *, reduction="none", sample_weight=None, **params):
        first = np.asarray(first, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        shape = np.broadcast_shapes(first.shape, target.shape)
        a, b = np.broadcast_to(first, shape), np.broadcast_to(target, shape)
        v, g, h = fn(a, b, **{**entry["params"], **params})
        red = mod if hasattr(mod, "reduce") else importlib.import_module("reference")
        value = red.reduce(v, sample_weight, reduction)
        scale = red.derivative_scale(sample_weight, shape, reduction)
        return value, g * scale, h * scale

    return call


def rounded(x, dtype):
    """x as the kernels see it in compute dtype `dtype`, back in float64 (floats only)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return x
    return x.astype(dtype).astype(np.float64)


# --------------------------------------------------------------------------
# Parameter values that leave the generated call's value unchanged
# --------------------------------------------------------------------------

# On the generated data (every class equally often, no row of class -1, ...) these values
# give the numbers of the default: test_valid_parameter does not ask them to change the value.
NEUTRAL_VALUES = {
    "class_weight": ["balanced", "auto"],
    "ignore_index": [-1, None],
    "mask": [np.ones(K_CLASSES, bool)],
    "p": [1],
    "n": [1.0],
    # A scalar alpha of a softmax loss scales every class alike: 1 is no weighting.
    "alpha": [Only(1.0, where=lambda loss: loss.kind == "rowwise")],
}


def same_value(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b) and bool(np.all(np.asarray(a) == np.asarray(b)))
    return type(a) is type(b) and a == b


def is_neutral(loss, param, value) -> bool:
    v = resolve(value.entry if isinstance(value, Only) else value, loss)
    default = loss.params.get(param)
    return same_value(v, default) or any(
        same_value(v, n.entry if isinstance(n, Only) else n)
        and (not isinstance(n, Only) or n.where(loss)) for n in NEUTRAL_VALUES.get(param, ()))


# --------------------------------------------------------------------------
# Library bugs the generated cases found: (loss, parameter, value) -> reason (xfail strict)
# --------------------------------------------------------------------------

KNOWN_BUGS: dict = {
    # (test, loss, case id...) -> the library bug that fails the case, marked xfail(strict).
}


def known_bug(test, name, *case_id):
    """The xfail(strict) mark of a generated case that a library bug fails, else [];
    case_id: the case's id strings (parameter values as value_repr writes them)."""
    import pytest

    reason = KNOWN_BUGS.get((test, name) + case_id)
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
