"""Valid inputs, parameter values and references for every registered loss.

The hardening tests (bad input, properties, concurrency, determinism, memory)
are generated from ``fastloss.losses``: a loss joins them by registration.
What they need to know about a loss comes from its ``Loss`` object:

* ``.kind`` chooses the shape of the data: "elementwise" (pred and target
  broadcast to one shape) or "rowwise" (logits [..., K], one integer class
  index per row);
* ``.family`` chooses the target's domain: any real number ("regression"),
  0/1 ("binary", valid for cross-entropy, focal and hinge losses alike) or
  class indices ("multiclass");
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

KINDS = ("elementwise", "rowwise")
# The name every message uses for the differentiated argument, by kind.
FIRST_NAME = {"elementwise": "pred", "rowwise": "logits"}
K_CLASSES = 5
NAN = float("nan")
INF = float("inf")


# Losses whose argument kinds the generators here do not model yet (labels -1/+1, two
# differentiated inputs, groups, multi-label rows); each has its own bad-input tests in
# test_margin.py / test_ranking.py. A loss missing from both sets fails
# test_every_loss_has_a_known_kind.
NOT_GENERATED = frozenset({
    "hinge", "squared_hinge", "margin_ranking", "multiclass_hinge", "crcnn_ranking",
    "multilabel_softmax_cross_entropy", "pairwise_logistic", "pairwise_hinge"})


def loss_names(fl):
    return sorted(set(fl.losses) - NOT_GENERATED)


def first_name(loss) -> str:
    return FIRST_NAME[loss.kind]


def n_classes(loss) -> int:
    return K_CLASSES if loss.kind == "rowwise" else 2


# --------------------------------------------------------------------------
# Valid data
# --------------------------------------------------------------------------


def make_target(loss, rng, shape, dtype=np.float64):
    """A valid target for `loss` with the loss shape `shape` (rows shape for rowwise)."""
    # Every class present where the shape allows it ("balanced" class weights need them).
    size = int(np.prod(shape))
    if loss.kind == "rowwise":
        return rng.permutation(np.arange(size) % K_CLASSES).astype(np.int64).reshape(shape)
    if loss.family == "binary":
        return rng.permutation(np.arange(size) % 2).astype(dtype).reshape(shape)
    return rng.normal(0.0, 2.0, size=shape).astype(dtype)


def make_first(loss, rng, shape, dtype=np.float64, probabilities=False):
    """A valid first argument: values (or logits [..., K]), or probabilities."""
    if loss.kind == "rowwise":
        full = tuple(shape) + (K_CLASSES,)
        if probabilities:
            e = rng.uniform(0.2, 1.0, size=full)
            return (e / e.sum(axis=-1, keepdims=True)).astype(dtype)
        return rng.normal(0.0, 2.0, size=full).astype(dtype)
    if probabilities:
        return rng.uniform(0.05, 0.95, size=shape).astype(dtype)
    return rng.normal(0.0, 2.0, size=shape).astype(dtype)


def make_inputs(loss, rng, shape=(6,), dtype=np.float64, weighted=False, probabilities=False):
    """(first, target, sample_weight or None) of a valid call."""
    first = make_first(loss, rng, shape, dtype, probabilities)
    target = make_target(loss, rng, shape, dtype)
    weight = rng.uniform(0.5, 2.0, size=shape).astype(dtype) if weighted else None
    return first, target, weight


def operand_shapes(loss, shape):
    """{argument: its shape} for a call whose loss shape (rows for rowwise) is `shape`."""
    first = tuple(shape) + ((K_CLASSES,) if loss.kind == "rowwise" else ())
    return {first_name(loss): first, "target": tuple(shape), "sample_weight": tuple(shape)}


# --------------------------------------------------------------------------
# Parameters: a table keyed by parameter name
# --------------------------------------------------------------------------


@dataclasses.dataclass
class ParamSpec:
    # Valid values other than the default; a callable gets the number of classes.
    valid: list = dataclasses.field(default_factory=list)
    # (value, exception type) pairs; a callable value gets the number of classes.
    invalid: list = dataclasses.field(default_factory=list)
    # The data a valid non-default value needs: "probabilities" for from_logits=False.
    data: Optional[str] = None


PARAMS = {
    "delta": ParamSpec(valid=[0.5, 3.0], invalid=[(0.0, ValueError), (-1.0, ValueError),
                                                  (NAN, ValueError), (INF, ValueError),
                                                  ("1", TypeError), (None, TypeError)]),
    "gamma": ParamSpec(valid=[0.0, 0.5, 3.0], invalid=[(-0.5, ValueError), (NAN, ValueError),
                                                       (INF, ValueError), ("2", TypeError)]),
    "alpha": ParamSpec(valid=[0.0, 0.75, 1.0], invalid=[(-0.1, ValueError), (1.5, ValueError),
                                                        (NAN, ValueError)]),
    "n": ParamSpec(valid=[1.0, 0.5, 3.0], invalid=[(0.0, ValueError), (-1.0, ValueError),
                                                   (NAN, ValueError), (INF, ValueError),
                                                   ("2", TypeError)]),
    "label_smoothing": ParamSpec(valid=[0.1, 1.0], invalid=[(-0.1, ValueError), (1.5, ValueError),
                                                            (NAN, ValueError),
                                                            ("0.1", TypeError)]),
    "log_base": ParamSpec(valid=[2.0, 10.0], invalid=[(1.0, ValueError), (0.0, ValueError),
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
    "margin": ParamSpec(valid=[0.0, 2.0], invalid=[(NAN, ValueError), ("1", TypeError)]),
    "m_pos": ParamSpec(valid=[1.0], invalid=[(NAN, ValueError)]),
    "m_neg": ParamSpec(valid=[1.0], invalid=[(NAN, ValueError)]),
    "kind": ParamSpec(valid=["crammer_singer", "weston_watkins"], invalid=[("bogus", ValueError)]),
}


def resolve(value, loss):
    return value(n_classes(loss)) if callable(value) else value


def valid_param_values(loss):
    """[(param, value, spec)] for every non-default valid value of every tabled parameter."""
    out = []
    for name in loss.params:
        spec = PARAMS.get(name)
        if spec is None:
            continue
        for value in spec.valid:
            out.append((name, value, spec))
    return out


def invalid_param_values(loss):
    """[(param, value, exception type or None)]; None: a parameter without a table entry,
    probed with object() (TypeError or ValueError accepted)."""
    out = []
    for name in loss.params:
        spec = PARAMS.get(name)
        if spec is None:
            out.append((name, object(), None))
            continue
        for value, exc in spec.invalid:
            out.append((name, value, exc))
    return out


def value_repr(value) -> str:
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
        value = mod.reduce(v, sample_weight, reduction)
        scale = mod.derivative_scale(sample_weight, shape, reduction)
        return value, g * scale, h * scale

    return call


def rounded(x, dtype):
    """x as the kernels see it in compute dtype `dtype`, back in float64 (floats only)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return x
    return x.astype(dtype).astype(np.float64)
