"""Bad input, generated for every registered loss x every argument.

Every case is derived from the Loss objects in ``fastloss.losses`` (their
``kind``, ``family``, ``params``) and from the parameter table in
``loss_cases.PARAMS``; a loss added to the registry joins all of them.

Errors: the exact exception type, and a message that names the argument at
fault (and, for labels or probabilities, the value and its position).
Accepted inputs (lists, 0-d, empty, non-contiguous, negative strides,
Fortran order, byte-swapped, read-only, other real dtypes) must give the
numbers of the same call on a plain contiguous array of the compute dtype.
"""

from __future__ import annotations

import math
import re
import zlib

import fastloss as fl
import loss_cases as lc
import numpy as np
import pytest

# The matrix over (first, target, sample_weight) of one value per sample; the tests of
# parameters, options and keywords need only a valid call (lc.call) and take every loss.
NAMES = lc.loss_names(fl, lc.SAMPLE_KINDS)
ALL_NAMES = lc.loss_names(fl)
ROWWISE = [n for n in NAMES if fl.losses[n].kind == "rowwise"]
INDEX = [n for n in ROWWISE if lc.index_targets(fl.losses[n])]
REDUCTIONS = ("none", "sum", "mean")


def rng_for(*parts):
    # crc32, not hash(): str hashes are salted per process, and the data must not change
    # from run to run.
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def named(arg):
    """A regex matching `arg` as a word (so 'out' does not match inside 'grad_out')."""
    return rf"(?<![A-Za-z_]){re.escape(arg)}(?![A-Za-z_])"


def ids(value):
    return lc.value_repr(value)


def test_every_loss_has_a_known_kind():
    # A loss of a new kind needs data makers in loss_cases before it is covered here.
    for name in sorted(set(fl.losses) - lc.NOT_GENERATED):
        loss = fl.losses[name]
        assert loss.kind in lc.KINDS, (loss.name, loss.kind)
        assert loss.family in lc.FAMILIES, (loss.name, loss.family)
    assert set(lc.NOT_GENERATED_KINDS) <= set(lc.KINDS)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_generated_call_is_valid(name):
    # The generated data of every kind is a valid call: finite numbers, the shapes the
    # generators promise, and sum over reduction="none" equal to reduction="sum".
    loss = fl.losses[name]
    rng = rng_for(name, "valid")
    first, target, weight = lc.make_inputs(loss, rng, shape=(4, 3), weighted=True)
    shapes = lc.operand_shapes(loss, (4, 3))
    got = [np.shape(a) for a in lc.flatten([first, target, weight])]
    assert got == list(shapes.values()), (got, shapes)
    value, grad = lc.call(loss, "value_and_grad", first, target, sample_weight=weight)
    total = lc.call(loss, "__call__", first, target, sample_weight=weight, reduction="sum")
    assert all(np.all(np.isfinite(a)) for a in lc.flatten([value, grad]))
    assert [np.shape(g) for g in lc.flatten([grad])] == [np.shape(f) for f in lc.flatten([first])]
    assert total == pytest.approx(float(np.sum(value)), rel=1e-12)
    assert total > 0


# --------------------------------------------------------------------------
# Wrong dtypes and non-arrays, for every array argument
# --------------------------------------------------------------------------

BAD_DTYPES = {
    "complex128": lambda a: a.astype(np.complex128),
    "complex64": lambda a: a.astype(np.complex64),
    "object": lambda a: a.astype(object),
    "str": lambda a: a.astype(str),
    "bytes": lambda a: a.astype("S8"),
    "datetime": lambda a: np.zeros(a.shape, "datetime64[s]"),
    "timedelta": lambda a: np.zeros(a.shape, "timedelta64[s]"),
    "void": lambda a: np.zeros(a.shape, "V8"),
}
ARGS = ("first", "target", "sample_weight")


def build(loss, arg_values, **kw):
    first, target, weight = arg_values
    return lambda method: lc.method_of(loss, method)(first, target, sample_weight=weight, **kw)


def arg_name(loss, arg):
    return lc.first_name(loss) if arg == "first" else arg


@pytest.mark.parametrize("method", lc.METHODS)
@pytest.mark.parametrize("kind", sorted(BAD_DTYPES))
@pytest.mark.parametrize("arg", ARGS)
@pytest.mark.parametrize("name", NAMES)
def test_bad_dtype(name, arg, kind, method):
    loss = fl.losses[name]
    vals = list(lc.make_inputs(loss, rng_for(name), weighted=True))
    i = ARGS.index(arg)
    vals[i] = BAD_DTYPES[kind](vals[i])
    with pytest.raises(TypeError, match=named(arg_name(loss, arg))):
        build(loss, vals)(method)


# Class weights counted from the data ("balanced", "auto") read the arrays before the
# compiled core does: the same errors, without a NumPy warning first.
COUNTED = [(n, mode) for n in NAMES if "class_weight" in fl.losses[n].params
           for mode in ("balanced", "auto")]


@pytest.mark.parametrize("kind", sorted(BAD_DTYPES))
@pytest.mark.parametrize("arg", ARGS)
@pytest.mark.parametrize("name, mode", COUNTED, ids=[f"{n}-{m}" for n, m in COUNTED])
def test_bad_dtype_with_counted_class_weight(name, mode, arg, kind):
    loss = fl.losses[name]
    vals = list(lc.make_inputs(loss, rng_for(name), weighted=True))
    i = ARGS.index(arg)
    vals[i] = BAD_DTYPES[kind](vals[i])
    for nan_policy in ("propagate", "omit"):
        with pytest.raises(TypeError, match=named(arg_name(loss, arg))):
            build(loss, vals, class_weight=mode, nan_policy=nan_policy)("value_and_grad")


@pytest.mark.parametrize("arg", ARGS)
@pytest.mark.parametrize("name", NAMES)
def test_masked_entries_refused(name, arg):
    # np.asarray drops a mask: scoring the data under it would be silently wrong.
    loss = fl.losses[name]
    vals = list(lc.make_inputs(loss, rng_for(name, "masked"), weighted=True))
    i = ARGS.index(arg)
    a = np.asarray(vals[i])
    mask = np.zeros(a.shape, bool)
    mask.flat[0] = True
    vals[i] = np.ma.array(a, mask=mask)
    for method in lc.METHODS:
        with pytest.raises(TypeError, match=named(arg_name(loss, arg)) + " is a masked array"):
            build(loss, vals)(method)
    # Nothing masked: the data, as a plain array.
    vals[i] = np.ma.array(a, mask=np.zeros(a.shape, bool))
    got = build(loss, vals)("value_and_grad")
    vals[i] = a
    lc.assert_bit_identical(got, build(loss, vals)("value_and_grad"), name)


def test_masked_entries_refused_margin_ranking():
    m = np.ma.array([1.0, 2.0, 3.0], mask=[0, 1, 0])
    for args, which in (((m, np.ones(3), np.ones(3)), "x1"), ((np.ones(3), m, np.ones(3)), "x2"),
                        ((np.ones(3), np.ones(3), m), "y")):
        with pytest.raises(TypeError, match=named(which) + " is a masked array"):
            fl.margin_ranking.value_and_grad(*args)


@pytest.mark.parametrize("bad", [None, "abc", {"a": 1}, object(), [1.0, "x"]],
                         ids=["None", "str", "dict", "object", "mixed_list"])
@pytest.mark.parametrize("arg", ("first", "target"))
@pytest.mark.parametrize("name", NAMES)
def test_not_an_array(name, arg, bad):
    loss = fl.losses[name]
    vals = list(lc.make_inputs(loss, rng_for(name)))
    vals[ARGS.index(arg)] = bad
    with pytest.raises(TypeError, match=named(arg_name(loss, arg))):
        build(loss, vals)("value_and_grad")


# --------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------


def shape_cases(loss):
    """(id, first, target, weight, argument at fault) of calls whose shapes do not fit."""
    rng = rng_for(loss.name, "shape")
    first, target, weight = lc.make_inputs(loss, rng, shape=(6,), weighted=True)
    t5 = lc.make_target(loss, rng, (5,))
    cases = [
        ("target_length", first, t5, None, "target"),
        ("target_2d", first, lc.make_target(loss, rng, (3, 2)), None, "target"),
        ("weight_length", first, target, np.ones(5), "sample_weight"),
        ("weight_enlarges", first, target, np.ones((3, 6)), "sample_weight"),
        ("weight_2d_col", first, target, np.ones((6, 2)), "sample_weight"),
    ]
    if loss.kind == "rowwise":
        k = lc.K_CLASSES
        cases += [
            ("logits_0d", np.float64(1.0), np.int64(0), None, lc.first_name(loss)),
            ("zero_classes", np.zeros((6, 0)), target[..., :0] if target.ndim == 2 else target,
             None, lc.first_name(loss)),
        ]
    if lc.index_targets(loss):
        cases.append(("labels_with_class_axis", first, np.zeros((6, k), np.int64), None,
                      "target"))
    if lc.probability_rows(loss) or loss.kind == "rowwise" and not lc.index_targets(loss):
        # Float target rows [..., K] (probabilities, or multi-hot rows).
        cases += [
            ("prob_target_k_mismatch", first, np.full((6, k + 1), 1.0 / (k + 1)), None, "target"),
            ("prob_target_rows_mismatch", first, np.full((5, k), 1.0 / k), None, "target"),
            # NumPy would broadcast this one; probability rows must match logits exactly.
            ("prob_target_broadcastable", np.stack([first, first]), np.full((6, k), 1.0 / k),
             None, "target"),
        ]
    return cases


def float_target_cases(loss):
    """(id, first, target) of float targets where only class indices are defined."""
    rng = rng_for(loss.name, "float_target")
    first, target, _ = lc.make_inputs(loss, rng, shape=(6,))
    k = lc.K_CLASSES
    return [("float_labels", first, target.astype(np.float64)),
            ("prob_rows", first, np.full((6, k), 1.0 / k)),
            ("float32_labels", first, target.astype(np.float32))]


FLOAT_TARGET = [(n, c[0]) for n in INDEX if not lc.probability_rows(fl.losses[n])
                for c in float_target_cases(fl.losses[n])]


@pytest.mark.parametrize("method", lc.METHODS)
@pytest.mark.parametrize("name, case", FLOAT_TARGET, ids=[f"{n}-{c}" for n, c in FLOAT_TARGET])
def test_float_target_where_only_indices_are_defined(name, case, method):
    # docs/losses.md: a float target raises TypeError (no soft form of the loss).
    loss = fl.losses[name]
    _, first, target = next(c for c in float_target_cases(loss) if c[0] == case)
    with pytest.raises(TypeError, match=named("target")):
        lc.method_of(loss, method)(first, target)


SHAPE_CASES = [(n, c[0]) for n in NAMES for c in shape_cases(fl.losses[n])]


@pytest.mark.parametrize("method", lc.METHODS)
@pytest.mark.parametrize("name, case", [
    pytest.param(n, c, marks=lc.known_bug("test_bad_shape", n, c)) for n, c in SHAPE_CASES],
                         ids=[f"{n}-{c}" for n, c in SHAPE_CASES])
def test_bad_shape(name, case, method):
    loss = fl.losses[name]
    _, first, target, weight, fault = next(c for c in shape_cases(loss) if c[0] == case)
    with pytest.raises(ValueError, match=named(fault)):
        lc.method_of(loss, method)(first, target, sample_weight=weight)


COUNTED_SHAPE = [(n, m, c[0]) for n, m in COUNTED for c in shape_cases(fl.losses[n])]


@pytest.mark.parametrize("name, mode, case", COUNTED_SHAPE,
                         ids=[f"{n}-{m}-{c}" for n, m, c in COUNTED_SHAPE])
def test_bad_shape_with_counted_class_weight(name, mode, case):
    # The class counts are taken before the compiled core sees the arrays: same errors.
    loss = fl.losses[name]
    _, first, target, weight, fault = next(c for c in shape_cases(loss) if c[0] == case)
    for nan_policy in ("propagate", "omit"):
        with pytest.raises(ValueError, match=named(fault)):
            loss.value_and_grad(first, target, sample_weight=weight, class_weight=mode,
                                nan_policy=nan_policy)


# --------------------------------------------------------------------------
# Target domains: labels out of range and probabilities outside [0, 1], with position
# --------------------------------------------------------------------------


def index_text(index):
    return "(" + ", ".join(str(i) for i in index) + ("," if len(index) == 1 else "") + ")"


LABEL_CASES = [
    # (id, rows shape, position, bad label, label dtype)
    ("k_at_3", (6,), (3,), lc.K_CLASSES, np.int64),
    ("neg_at_0", (6,), (0,), -2, np.int64),
    ("big_at_5", (6,), (5,), 10**12, np.int64),
    ("2d", (3, 4), (2, 1), lc.K_CLASSES + 3, np.int32),
    ("int8_neg", (6,), (4,), -7, np.int8),
    ("uint8", (6,), (1,), 200, np.uint8),
    ("uint64_huge", (6,), (2,), 2**63 + 5, np.uint64),
    ("uint32", (6,), (5,), 4000000000, np.uint32),
]


@pytest.mark.parametrize("method", lc.METHODS)
@pytest.mark.parametrize("case", LABEL_CASES, ids=[c[0] for c in LABEL_CASES])
@pytest.mark.parametrize("name", INDEX)
def test_label_out_of_range(name, case, method):
    loss = fl.losses[name]
    _, rows, pos, bad, dtype = case
    rng = rng_for(name, case[0])
    first, target, _ = lc.make_inputs(loss, rng, shape=rows)
    target = target.astype(dtype)
    target[pos] = bad
    with pytest.raises(ValueError) as info:
        lc.method_of(loss, method)(first, target)
    msg = str(info.value)
    assert re.search(named("target"), msg), msg
    assert str(bad) in msg, msg
    assert index_text(pos) in msg, msg


@pytest.mark.parametrize("bad", [2.0, -0.5, 1.0 + 1e-9, -np.inf, np.inf])
@pytest.mark.parametrize("name", [n for n in NAMES if fl.losses[n].family == "binary"])
def test_binary_target_outside_unit_interval(name, bad):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name), shape=(3, 4))
    target[1, 2] = bad
    with pytest.raises(ValueError) as info:
        loss.value_and_grad(first, target)
    msg = str(info.value)
    assert re.search(named("target"), msg) and "(1, 2)" in msg, msg


@pytest.mark.parametrize("bad", [1.5, -0.25, np.inf])
@pytest.mark.parametrize("name", [n for n in NAMES if "from_logits" in fl.losses[n].params])
def test_probabilities_outside_unit_interval(name, bad):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name), shape=(4,), probabilities=True)
    pos = (2, 1) if loss.kind == "rowwise" else (2,)
    first[pos] = bad
    with pytest.raises(ValueError) as info:
        loss.value_and_grad(first, target, from_logits=False)
    msg = str(info.value)
    assert re.search(named(lc.first_name(loss)), msg) and index_text(pos) in msg, msg


# --------------------------------------------------------------------------
# Parameters, options and keyword arguments
# --------------------------------------------------------------------------

INVALID_PARAMS = [(n, p, v, e) for n in ALL_NAMES
                  for (p, v, e) in lc.invalid_param_values(fl.losses[n])]


@pytest.mark.parametrize("method", ("__call__", "grad_hess"))
@pytest.mark.parametrize("name, param, value, exc", [
    pytest.param(n, p, v, e, marks=lc.known_bug("test_invalid_parameter", n, p, ids(v)))
    for n, p, v, e in INVALID_PARAMS],
                         ids=[f"{n}-{p}={ids(v)}" for n, p, v, _ in INVALID_PARAMS])
def test_invalid_parameter(name, param, value, exc, method):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name))
    kw = {param: lc.resolve(value, loss)}
    with pytest.raises(exc or (TypeError, ValueError), match=named(param)):
        lc.call(loss, method, first, target, **kw)


OPTIONS = [
    ("reduction", "average"), ("reduction", "SUM"), ("reduction", ""), ("reduction", None),
    ("reduction", 1), ("nan_policy", "ignore"), ("nan_policy", "Propagate"),
    ("nan_policy", None),
]


@pytest.mark.parametrize("method", lc.METHODS)
@pytest.mark.parametrize("option, value", OPTIONS, ids=[f"{o}={v!r}" for o, v in OPTIONS])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_unknown_option_value(name, option, value, method):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name))
    with pytest.raises(ValueError, match=named(option)):
        lc.call(loss, method, first, target, **{option: value})


@pytest.mark.parametrize("value", ["newton", "EXACT", "", None, 3])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_unknown_hessian(name, value):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name))
    with pytest.raises(ValueError, match=named("hessian")):
        lc.call(loss, "grad_hess", first, target, hessian=value)


# A negative floor would let "clip" return negative Hessians: refused.
@pytest.mark.parametrize("value, exc", [(NAN := float("nan"), ValueError), (float("inf"), ValueError),
                                        ("0.1", TypeError), (None, TypeError),
                                        (-1.0, ValueError), (-1e-300, ValueError)],
                         ids=["nan", "inf", "str", "None", "negative", "tiny_negative"])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_bad_hess_floor(name, value, exc):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name))
    with pytest.raises(exc, match=named("hess_floor")):
        lc.call(loss, "grad_hess", first, target, hessian="clip", hess_floor=value)


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if not fl.losses[n].has_fisher])
def test_fisher_where_undefined(name):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name))
    with pytest.raises(ValueError, match="fisher"):
        lc.call(loss, "grad_hess", first, target, hessian="fisher")


GBDT_CASES = [(n, v) for n in ALL_NAMES if fl.losses[n].kind != "rowwise"
              for v in ("xgboost", "lightgbm")
              # hinge offers XGBoost's binary:hinge Hessian as its own policy.
              if v not in (fl.losses[n]._hessians or {})]


@pytest.mark.parametrize("name, value", GBDT_CASES, ids=[f"{n}-{v}" for n, v in GBDT_CASES])
def test_gbdt_hessians_only_for_multiclass(name, value):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name))
    with pytest.raises(ValueError, match=named("hessian")):
        lc.call(loss, "grad_hess", first, target, hessian=value)


@pytest.mark.parametrize("method", lc.METHODS)
@pytest.mark.parametrize("keyword", ["no_such_option", "weights", "sample_weights"])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_unknown_keyword(name, keyword, method):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name))
    with pytest.raises(TypeError, match=named(keyword)):
        lc.call(loss, method, first, target, **{keyword: 1})


# Keywords that belong to another entry point.
MISPLACED = [("__call__", "grad_out"), ("__call__", "hess_out"), ("__call__", "hessian"),
             ("grad", "hess_out"), ("grad", "grad_out"), ("value_and_grad", "hess_out"),
             ("value_and_grad", "hessian"), ("grad_hess", "out")]


@pytest.mark.parametrize("method, keyword", MISPLACED, ids=[f"{m}-{k}" for m, k in MISPLACED])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_keyword_of_another_method(name, method, keyword):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name))
    value = "exact" if keyword == "hessian" else np.empty(np.shape(first))
    with pytest.raises(TypeError, match=named(keyword)):
        lc.call(loss, method, first, target, **{keyword: value})


@pytest.mark.parametrize("name", ALL_NAMES)
def test_options_are_keyword_only(name):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name))
    for method in lc.METHODS:
        with pytest.raises(TypeError):
            lc.call(loss, method, first, target, "sum")


# --------------------------------------------------------------------------
# out= / grad_out= / hess_out=
# --------------------------------------------------------------------------

OUT_ARGS = [("out", "__call__"), ("out", "grad"), ("out", "value_and_grad"),
            ("grad_out", "value_and_grad"), ("grad_out", "grad_hess"), ("hess_out", "grad_hess")]


def out_shape(loss, arg, method, first, target):
    """The shape the output `arg` of `method` must have."""
    per_sample = arg == "out" and method in ("__call__", "value_and_grad")
    if per_sample and loss.kind == "rowwise":
        return np.shape(first)[:-1]
    if per_sample:
        return np.broadcast_shapes(np.shape(first), np.shape(target))
    return np.shape(first)


def out_cases(loss, arg, method):
    """(id, make(first, target, weight) -> (out, weight), exception type)."""
    def shape_of(f, t):
        return out_shape(loss, arg, method, f, t)

    def ro(f, t, w):
        a = np.empty(shape_of(f, t))
        a.flags.writeable = False
        return a, w

    def partial_overlap(f, t, w):
        n = int(np.prod(shape_of(f, t)))
        buf = np.empty(n + f.size)
        fv = buf[: f.size].reshape(f.shape)
        fv[...] = f
        f[...] = fv  # unchanged values
        return buf[buf.size - n - 1: buf.size - 1].reshape(shape_of(f, t)), w

    def weight_as_out(f, t, w):
        w = np.ones(shape_of(f, t))
        return w, w

    cases = [
        ("short", lambda f, t, w: (np.empty(int(np.prod(shape_of(f, t))) - 1), w), ValueError),
        ("extra_axis", lambda f, t, w: (np.empty(shape_of(f, t) + (1,)), w), ValueError),
        ("float32", lambda f, t, w: (np.empty(shape_of(f, t), np.float32), w), TypeError),
        ("int64", lambda f, t, w: (np.empty(shape_of(f, t), np.int64), w), TypeError),
        ("complex", lambda f, t, w: (np.empty(shape_of(f, t), np.complex128), w), TypeError),
        ("big_endian", lambda f, t, w: (np.empty(shape_of(f, t), ">f8"), w), TypeError),
        ("list", lambda f, t, w: (np.zeros(shape_of(f, t)).tolist(), w), TypeError),
        ("read_only", ro, ValueError),
        ("is_first", lambda f, t, w: (f if f.shape == shape_of(f, t) else f[..., 0], w), ValueError),
        ("partial_overlap_first", None, ValueError),
    ]
    if loss.kind == "elementwise" or arg == "out" and method in ("__call__", "value_and_grad"):
        cases.append(("is_weight", weight_as_out, ValueError))
    per_sample = arg == "out" and method in ("__call__", "value_and_grad")
    if loss.kind == "elementwise" or lc.operand_shapes(loss, (6,))["target"] == (6, lc.K_CLASSES) \
            and not per_sample:
        cases.append(("is_target", lambda f, t, w: (t, w), ValueError))
    return cases


OUT_CASES = [(n, a, m, c[0]) for n in NAMES for (a, m) in OUT_ARGS
             for c in out_cases(fl.losses[n], a, m)]


@pytest.mark.parametrize("name, arg, method, case", OUT_CASES,
                         ids=[f"{n}-{m}-{a}-{c}" for n, a, m, c in OUT_CASES])
def test_bad_output_array(name, arg, method, case):
    loss = fl.losses[name]
    rng = rng_for(name, arg, method, case)
    first, target, _ = lc.make_inputs(loss, rng, shape=(6,))
    keep_first, keep_target = first.copy(), target.copy()
    _, make, exc = next(c for c in out_cases(loss, arg, method) if c[0] == case)
    weight = None
    if case == "partial_overlap_first":
        n = int(np.prod(out_shape(loss, arg, method, first, target)))
        buf = np.zeros(first.size + n)
        view = buf[: first.size].reshape(first.shape)
        view[...] = first
        out = buf[first.size - 1: first.size - 1 + n].reshape(
            out_shape(loss, arg, method, first, target))
        first = view
    else:
        out, weight = make(first, target, None)
    with pytest.raises(exc, match=named(arg)):
        lc.method_of(loss, method)(first, target, sample_weight=weight, **{arg: out})
    # Nothing was written into the inputs.
    np.testing.assert_array_equal(first, keep_first)
    np.testing.assert_array_equal(target, keep_target)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("method", ["__call__", "value_and_grad"])
@pytest.mark.parametrize("name", NAMES)
def test_out_needs_reduction_none(name, method, reduction):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name))
    out = np.empty(out_shape(loss, "out", "__call__", first, target))
    with pytest.raises(ValueError, match=named("out")):
        lc.method_of(loss, method)(first, target, reduction=reduction, out=out)


@pytest.mark.parametrize("name", NAMES)
def test_failed_call_leaves_outputs_untouched(name):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name), shape=(6,))
    g = np.full(first.shape, 7.0)
    h = np.full(first.shape, 7.0)
    with pytest.raises(ValueError, match="sample_weight"):
        loss.grad_hess(first, target, sample_weight=np.ones(5), grad_out=g, hess_out=h)
    with pytest.raises(ValueError, match="reduction"):
        loss.grad_hess(first, target, reduction="bogus", grad_out=g, hess_out=h)
    assert np.all(g == 7.0) and np.all(h == 7.0)


# --------------------------------------------------------------------------
# NaN and inf in every operand under every nan_policy
# --------------------------------------------------------------------------


def float_operands(loss):
    """Operands that can hold NaN: the first argument, float targets, sample_weight."""
    ops = ["first", "sample_weight"]
    if not lc.index_targets(loss):
        ops.insert(1, "target")
    return ops


NAN_CASES = [(n, op) for n in NAMES for op in float_operands(fl.losses[n])]
BAD_AT = 3  # the sample (row) that gets the NaN


def nan_inputs(loss, op, value=np.nan):
    rng = rng_for(loss.name, op, "nan")
    first, target, weight = lc.make_inputs(loss, rng, shape=(8,), weighted=True)
    if op in ("first", "target"):
        a = first if op == "first" else target
        a[(BAD_AT, 1) if a.ndim == 2 else BAD_AT] = value
    else:
        weight[BAD_AT] = value
    return first, target, weight


@pytest.mark.parametrize("name, op", NAN_CASES, ids=[f"{n}-{o}" for n, o in NAN_CASES])
def test_nan_raise_names_operand_and_index(name, op):
    loss = fl.losses[name]
    first, target, weight = nan_inputs(loss, op)
    pos = "(3, 1)" if op != "sample_weight" and loss.kind == "rowwise" \
        and len(lc.operand_shapes(loss, (8,))[arg_name(loss, op)]) == 2 else "(3,)"
    for method in lc.METHODS:
        with pytest.raises(ValueError) as info:
            lc.method_of(loss, method)(first, target, sample_weight=weight, nan_policy="raise")
        msg = str(info.value)
        assert re.search(named(arg_name(loss, op)), msg) and pos in msg, msg


def keep_mask(loss, shape=(8,)):
    keep = np.ones(shape, bool)
    keep[BAD_AT] = False
    return keep


@pytest.mark.parametrize("name, op", NAN_CASES, ids=[f"{n}-{o}" for n, o in NAN_CASES])
def test_nan_propagate_stays_in_its_sample(name, op):
    loss = fl.losses[name]
    first, target, weight = nan_inputs(loss, op)
    keep = keep_mask(loss)
    value, grad = loss.value_and_grad(first, target, sample_weight=weight)
    assert np.isnan(value[BAD_AT])
    # The other samples are exactly those of a call without the bad one.
    v2, g2 = loss.value_and_grad(first[keep], target[keep], sample_weight=weight[keep])
    np.testing.assert_array_equal(value[keep], v2)
    np.testing.assert_array_equal(grad[keep], g2)
    assert np.isnan(loss(first, target, sample_weight=weight, reduction="sum"))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name, op", NAN_CASES, ids=[f"{n}-{o}" for n, o in NAN_CASES])
def test_nan_omit_equals_dropping_the_sample(name, op, reduction):
    loss = fl.losses[name]
    first, target, weight = nan_inputs(loss, op)
    keep = keep_mask(loss)
    value, grad = loss.value_and_grad(first, target, sample_weight=weight, nan_policy="omit",
                                      reduction=reduction)
    _, hess = loss.grad_hess(first, target, sample_weight=weight, nan_policy="omit",
                             reduction=reduction)
    v2, g2 = loss.value_and_grad(first[keep], target[keep], sample_weight=weight[keep],
                                 reduction=reduction)
    _, h2 = loss.grad_hess(first[keep], target[keep], sample_weight=weight[keep],
                           reduction=reduction)
    assert np.all(grad[BAD_AT] == 0) and np.all(hess[BAD_AT] == 0)
    np.testing.assert_allclose(grad[keep], g2, rtol=1e-13, atol=0)
    np.testing.assert_allclose(hess[keep], h2, rtol=1e-13, atol=0)
    if reduction == "none":
        assert value[BAD_AT] == 0
        np.testing.assert_array_equal(value[keep], v2)
    else:
        np.testing.assert_allclose(value, v2, rtol=1e-13)


# Negative weights are not a domain the losses define: +inf only for sample_weight.
INF_CASES = [(n, op, v) for n, op in NAN_CASES if op != "target" for v in (np.inf, -np.inf)
             if not (op == "sample_weight" and v < 0)]


@pytest.mark.parametrize("name, op, value", INF_CASES,
                         ids=[f"{n}-{o}-{v}" for n, o, v in INF_CASES])
def test_inf_is_not_nan(name, op, value):
    # nan_policy concerns NaN only: an infinite input gives the same numbers under every
    # policy, and the other samples are untouched.
    loss = fl.losses[name]
    first, target, weight = nan_inputs(loss, op, value)
    keep = keep_mask(loss)
    with np.errstate(all="ignore"):
        results = [loss.value_and_grad(first, target, sample_weight=weight, nan_policy=p)
                   for p in ("propagate", "raise", "omit")]
    for r in results[1:]:
        lc.assert_bit_identical(r, results[0])
    v2, g2 = loss.value_and_grad(first[keep], target[keep], sample_weight=weight[keep])
    np.testing.assert_array_equal(results[0][0][keep], v2)
    np.testing.assert_array_equal(results[0][1][keep], g2)


# --------------------------------------------------------------------------
# Inputs that must be accepted, with the right numbers
# --------------------------------------------------------------------------


def compute_dtype(first):
    dt = np.asarray(first).dtype
    return np.dtype(np.float32) if dt in (np.float16, np.float32) else np.dtype(np.float64)


def canonical(loss, arg, x, cdt):
    """x as a plain C-contiguous array of the dtype the kernels compute in."""
    a = np.asarray(x)
    if arg == "target" and lc.index_targets(loss) and a.dtype.kind in "biu":
        return np.ascontiguousarray(a, dtype=np.int64)
    return np.ascontiguousarray(a, dtype=cdt)


def strided(a):
    a = np.asarray(a)
    buf = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype) if a.ndim else None
    if buf is None:
        return a
    buf[::2] = a
    return buf[::2]


def reversed_view(a):
    a = np.asarray(a)
    return np.ascontiguousarray(a[::-1])[::-1] if a.ndim else a


def read_only(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


LAYOUTS = {
    "list": lambda a: np.asarray(a).tolist(),
    "strided": strided,
    "negative_stride": reversed_view,
    "fortran": np.asfortranarray,
    "byte_swapped": lambda a: np.asarray(a).astype(np.asarray(a).dtype.newbyteorder()),
    "read_only": read_only,
    "broadcast_view": lambda a: np.broadcast_to(np.asarray(a)[None], (3,) + np.shape(a))[1],
    "transposed_copy": lambda a: np.ascontiguousarray(np.asarray(a).T).T,
}


def layout_applies(loss, arg, layout, shape):
    nd = len(lc.operand_shapes(loss, shape)[arg_name(loss, arg)])
    if layout in ("fortran", "transposed_copy") and nd < 2:
        return False
    return True


ACCEPT_CASES = [(n, arg, layout, shape) for n in NAMES for arg in ARGS
                for layout in LAYOUTS for shape in ((7,), (4, 3))
                if layout_applies(fl.losses[n], arg, layout, shape)]


@pytest.mark.parametrize("name, arg, layout, shape", ACCEPT_CASES,
                         ids=[f"{n}-{a}-{lay}-{'x'.join(map(str, s))}"
                              for n, a, lay, s in ACCEPT_CASES])
def test_accepted_layouts(name, arg, layout, shape):
    loss = fl.losses[name]
    vals = list(lc.make_inputs(loss, rng_for(name, arg, layout, shape), shape=shape,
                               weighted=True))
    i = ARGS.index(arg)
    vals[i] = LAYOUTS[layout](vals[i])
    cdt = compute_dtype(vals[0])
    plain = [canonical(loss, a, v, cdt) for a, v in zip(ARGS, vals)]
    got = lc.call_all(loss, vals[0], vals[1], sample_weight=vals[2], reduction="none")
    want = lc.call_all(loss, plain[0], plain[1], sample_weight=plain[2], reduction="none")
    lc.assert_bit_identical(got, want, f"{name} {arg} {layout}")
    for reduction in ("sum", "mean"):
        got = loss.value_and_grad(vals[0], vals[1], sample_weight=vals[2], reduction=reduction)
        want = loss.value_and_grad(plain[0], plain[1], sample_weight=plain[2],
                                   reduction=reduction)
        lc.assert_bit_identical(got, want, f"{name} {arg} {layout} {reduction}")


SWAP_CASES = [(n, dt, fromlog) for n in NAMES for dt in ("float32", "float16")
              for fromlog in (True, False)
              if fromlog or "from_logits" in fl.losses[n].params]


@pytest.mark.parametrize("name, dtype, from_logits", SWAP_CASES,
                         ids=[f"{n}-{d}-{'logits' if f else 'probs'}" for n, d, f in SWAP_CASES])
def test_byte_swapped_narrow_floats(name, dtype, from_logits):
    """A byte-swapped float32 or float16 first argument (every one of margin_ranking's) is
    computed as the native float32 one, with the same dtypes and bits: values, gradients and
    Hessians, probabilities too (whose clip depends on the compute dtype)."""
    loss = fl.losses[name]
    first, target, weight = lc.make_inputs(loss, rng_for(name, "swap", dtype), shape=(4, 3),
                                           dtype=np.dtype(dtype), weighted=True,
                                           probabilities=not from_logits)
    kw = {} if from_logits else {"from_logits": False}

    def swapped(a):
        a = np.asarray(a)
        return a.astype(a.dtype.newbyteorder())

    if loss.kind == "margin_ranking":
        sw_first, native = tuple(swapped(a) for a in first), tuple(np.asarray(a, np.float32)
                                                                   for a in first)
    else:
        sw_first, native = swapped(first), np.asarray(first, np.float32)
    assert not np.dtype(dtype).newbyteorder().isnative
    if not from_logits:
        # The extremes, where a clip to [eps, 1 - eps] in the wrong dtype would show.
        native[0, :] = 0.0
        native[0, 0] = 1.0
        sw_first = swapped(native.astype(dtype))
    got = lc.call(loss, "value_and_grad", sw_first, target, sample_weight=weight, **kw)
    want = lc.call(loss, "value_and_grad", native, target, sample_weight=weight, **kw)
    lc.assert_bit_identical(got, want, f"{name} {dtype}")
    got = lc.call(loss, "grad_hess", sw_first, target, sample_weight=weight, **kw)
    want = lc.call(loss, "grad_hess", native, target, sample_weight=weight, **kw)
    lc.assert_bit_identical(got, want, f"{name} {dtype} grad_hess")


OTHER_DTYPES = {
    "first": (np.float16, np.int32, np.int8, np.uint16, np.bool_),
    "target": (np.float16, np.float32, np.int64, np.uint8, np.int16),
    "sample_weight": (np.float16, np.float32, np.int32, np.uint8, np.bool_),
}
# Float targets of a multiclass loss are probability rows, not labels: integer ones only.
DTYPE_CASES = [(n, arg, np.dtype(dt).name) for n in NAMES for arg in ARGS
               for dt in OTHER_DTYPES[arg]
               if not (lc.index_targets(fl.losses[n]) and arg == "target"
                       and np.dtype(dt).kind == "f")]


@pytest.mark.parametrize("name, arg, dtype", DTYPE_CASES,
                         ids=[f"{n}-{a}-{d}" for n, a, d in DTYPE_CASES])
def test_accepted_dtypes(name, arg, dtype):
    loss = fl.losses[name]
    vals = list(lc.make_inputs(loss, rng_for(name, arg, dtype), shape=(9,), weighted=True))
    i = ARGS.index(arg)
    dt = np.dtype(dtype)
    if dt.kind in "biu":
        v = np.asarray(vals[i], dtype=np.float64)
        labels01 = loss.family in ("binary", "multilabel")
        v = np.abs(np.round(v)) % (2 if dt.kind == "b" or labels01 else 4)
        if lc.index_targets(loss) and arg == "target":
            v = v % lc.K_CLASSES
        vals[i] = v.astype(dt)
    else:
        vals[i] = vals[i].astype(dt)
    cdt = compute_dtype(vals[0])
    plain = [canonical(loss, a, v, cdt) for a, v in zip(ARGS, vals)]
    got = lc.call_all(loss, vals[0], vals[1], sample_weight=vals[2])
    want = lc.call_all(loss, plain[0], plain[1], sample_weight=plain[2])
    lc.assert_bit_identical(got, want, f"{name} {arg} {dtype}")
    assert np.asarray(got[0]).dtype == cdt


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", NAMES)
def test_empty(name, reduction):
    loss = fl.losses[name]
    for rows in ((0,), (0, 3), (3, 0)):
        first, target, weight = lc.make_inputs(loss, rng_for(name), shape=rows, weighted=True)
        value, grad = loss.value_and_grad(first, target, sample_weight=weight,
                                          reduction=reduction)
        g2, hess = loss.grad_hess(first, target, sample_weight=weight, reduction=reduction)
        assert grad.shape == hess.shape == first.shape and grad.size == 0
        if reduction == "none":
            assert value.shape == rows
        elif reduction == "sum":
            assert value == 0.0 and isinstance(value, np.float64)
        else:
            assert math.isnan(value) and isinstance(value, np.float64)


@pytest.mark.parametrize("name", [n for n in NAMES if fl.losses[n].kind == "elementwise"])
def test_zero_dim_and_python_scalars(name):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name), shape=(1,))
    f0, t0 = first.reshape(()), target.reshape(())
    value, grad = loss.value_and_grad(f0, t0)
    assert value.shape == () and grad.shape == ()
    v1, g1 = loss.value_and_grad(first, target)
    assert value == v1[0] and grad == g1[0]
    # Python scalars compute in float64, as 0-d float64 arrays.
    vs, gs = loss.value_and_grad(float(f0), float(t0))
    lc.assert_bit_identical((vs, gs), (value, grad))
    assert loss(float(f0), float(t0), reduction="sum") == float(v1[0])


@pytest.mark.parametrize("name", INDEX)
def test_rowwise_single_row_and_0d_label(name):
    loss = fl.losses[name]
    first, target, _ = lc.make_inputs(loss, rng_for(name), shape=(1,))
    value, grad = loss.value_and_grad(first[0], target[0])  # logits (K,), label 0-d
    v1, g1 = loss.value_and_grad(first, target)
    assert value.shape == () and grad.shape == (lc.K_CLASSES,)
    assert value == v1[0]
    np.testing.assert_array_equal(grad, g1[0])
    # A Python int label and a list of logits.
    v3 = loss(first[0].tolist(), int(target[0]))
    assert v3 == value


# --------------------------------------------------------------------------
# Every valid parameter value from the table runs and gives finite numbers
# --------------------------------------------------------------------------

VALID_PARAMS = [(n, p, v) for n in ALL_NAMES
                for (p, v, _) in lc.valid_param_values(fl.losses[n])]


@pytest.mark.parametrize("name, param, value", VALID_PARAMS,
                         ids=[f"{n}-{p}={ids(v)}" for n, p, v in VALID_PARAMS])
def test_valid_parameter(name, param, value):
    loss = fl.losses[name]
    spec = lc.PARAMS[param]
    first, target, weight = lc.make_inputs(loss, rng_for(name, param), shape=(6,), weighted=True,
                                           probabilities=spec.data == "probabilities")
    kw = lc.param_kw(loss, param, value)
    value_, grad = lc.call(loss, "value_and_grad", first, target, sample_weight=weight, **kw)
    g2, hess = lc.call(loss, "grad_hess", first, target, sample_weight=weight, **kw)
    assert all(np.all(np.isfinite(a)) for a in lc.flatten([value_, grad, hess]))
    lc.assert_within_ulp([grad], [g2])  # separate kernels: docs/design.md, Determinism
    # The per-sample values or the mean change with the parameter (a parameter that is not
    # read would pass the checks above).
    if not lc.is_neutral(loss, param, value):
        base = {k: v for k, v in kw.items() if k != param}
        changed = []
        for reduction in ("none", "mean"):
            got = lc.call(loss, "__call__", first, target, sample_weight=weight,
                          reduction=reduction, **kw)
            want = lc.call(loss, "__call__", first, target, sample_weight=weight,
                           reduction=reduction, **base)
            changed.append(not np.array_equal(got, want))
        assert any(changed), (param, value)
    ref = lc.reference_for(name)
    # Counted modes ("balanced", "auto") are checked against scikit-learn's counts in
    # test_class_weight.py and test_focal.py; the references take arrays.
    if ref is not None and not any(isinstance(v, (str, dict)) for v in kw.values()) \
            and loss.kind in lc.SAMPLE_KINDS:
        rv, rg, _ = ref(first, target, sample_weight=weight, reduction="none", **kw)
        np.testing.assert_allclose(value_, rv, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grad, rg, rtol=1e-10, atol=1e-12)
# appended to tests/test_bad_input.py


# --------------------------------------------------------------------------
# Ragged nested lists: a ValueError naming the argument, for every kind of loss
# --------------------------------------------------------------------------

RAGGED = [[1.0, 2.0], [3.0]]


@pytest.mark.parametrize("call, name", [
    (lambda: fl.squared_error(RAGGED, [1.0, 2.0]), "pred"),
    (lambda: fl.squared_error([1.0, 2.0], RAGGED), "target"),
    (lambda: fl.squared_error([1.0, 2.0], [1.0, 2.0], sample_weight=RAGGED), "sample_weight"),
    (lambda: fl.sigmoid_focal.grad(RAGGED, [1.0, 0.0]), "logits"),
    (lambda: fl.softmax_cross_entropy(RAGGED, [0, 1]), "logits"),
    (lambda: fl.softmax_focal.value_and_grad([[1.0, 2.0], [3.0, 4.0]], RAGGED), "target"),
    (lambda: fl.multiclass_hinge(RAGGED, [0, 1]), "scores"),
    (lambda: fl.multilabel_softmax_cross_entropy([[1.0, 2.0], [3.0, 4.0]], RAGGED), "target"),
    (lambda: fl.margin_ranking(RAGGED, [1.0, 2.0], [1, -1]), "x1"),
    (lambda: fl.pairwise_logistic(RAGGED, [1.0, 0.0]), "scores"),
    (lambda: fl.crcnn_predict(RAGGED), "scores"),
])
def test_ragged_lists_name_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name} could not be converted to an array"):
        call()
