"""Cross-entropy losses against the float64 reference in ``reference_ce``.

The parametrised matrix runs sigmoid_cross_entropy and softmax_cross_entropy
for every option setting x dtype x reduction x sample_weight x ISA path x
thread count on small shapes, comparing value, gradient and Hessian from all
four entry points.  Further sections: class counts K across SIMD tails and
the 2048-element row chunk, integer and probability target dtypes,
derivatives by finite differences, bit-identical reductions across thread
counts, the textbook example, extreme logits, a large-K smoke test, bad
input, nan_policy and the Hessian policies.
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import fastloss as fl
import numpy as np
import pytest
import reference_ce as ref

DTYPES = (np.float32, np.float64)
REDUCTIONS = ("none", "sum", "mean")
# Accuracy asked of the kernels, relative to the scale of the result.
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}
SIGMOID = fl.sigmoid_cross_entropy
SOFTMAX = fl.softmax_cross_entropy

dtype_param = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def seed_of(*parts):
    return zlib.crc32(repr(parts).encode())


def rounded(x, dtype):
    """x as the kernel sees it: converted to the compute dtype, back in float64."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return x
    return np.asarray(x.astype(dtype), dtype=np.float64)


def clip_of(dtype):
    return float(np.finfo(dtype).eps)


def assert_close(actual, desired, rtol, what="", magnitude=None, floor_scale=0.0):
    """|actual - desired| <= rtol * (|desired| + max|desired|), NaN in the same places."""
    actual = np.asarray(actual)
    floor = float(np.finfo(actual.dtype).tiny) if actual.dtype.kind == "f" else 0.0
    a = actual.astype(np.float64)
    d = np.asarray(desired, dtype=np.float64)
    assert a.shape == d.shape, f"{what}: shape {a.shape} != {d.shape}"
    nan_a, nan_d = np.isnan(a), np.isnan(d)
    assert np.array_equal(nan_a, nan_d), f"{what}: NaN at {np.argwhere(nan_a != nan_d)[:5].tolist()}"
    a, d = a[~nan_d], d[~nan_d]
    if d.size == 0:
        return
    mag = np.abs(d) if magnitude is None else np.asarray(magnitude, dtype=np.float64)[~nan_d]
    scale = max(float(np.max(np.abs(d))), float(np.max(mag)), floor_scale, 1e-300)
    err = np.abs(a - d)
    tol = rtol * (np.abs(d) + scale) + floor
    bad = err > tol
    if bad.any():
        i = int(np.argmax(err - tol))
        raise AssertionError(f"{what}: {int(bad.sum())} of {d.size} differ beyond rtol={rtol}; "
                             f"worst actual={a[i]!r} desired={d[i]!r} err={err[i]:.3g}")


def assert_reduced(value, desired, rtol, magnitude, what=""):
    assert isinstance(value, np.float64), f"{what}: {type(value)} is not np.float64"
    if math.isnan(desired):
        assert math.isnan(value), f"{what}: expected nan, got {value!r}"
        return
    assert abs(value - desired) <= rtol * max(abs(magnitude), abs(desired), 1e-300), \
        f"{what}: {value!r} != {desired!r}"


def same(a, b):
    """Bit-identical (NaN equal to NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def check_all_entry_points(loss, args, kwargs, expected, dtype, magnitude=None, floor_scale=0.0):
    """__call__, value_and_grad, grad and grad_hess agree with (value, grad, hess).

    floor_scale: a lower bound on the scale that errors are relative to, for
    results that are exactly 0 in exact arithmetic (K = 1) but are computed
    from terms of order floor_scale.
    """
    value, grad, hess = expected
    cdt = np.dtype(dtype)
    rtol = RTOL[cdt]
    reduction = kwargs.get("reduction", "none")
    v = loss(*args, **kwargs)
    v2, g = loss.value_and_grad(*args, **kwargs)
    g2 = loss.grad(*args, **kwargs)
    g3, h = loss.grad_hess(*args, **kwargs)
    if reduction == "none":
        assert v.dtype == cdt and v2.dtype == cdt
        assert_close(v, value, rtol, "value", floor_scale=floor_scale)
        assert same(v, v2), "value differs between __call__ and value_and_grad"
    else:
        assert_reduced(v, value, rtol, max(magnitude or 0.0, floor_scale), "value")
        assert same(v, v2), "reduced value differs between __call__ and value_and_grad"
    for name, arr in (("grad", g), ("grad (grad)", g2), ("grad (grad_hess)", g3), ("hess", h)):
        assert isinstance(arr, np.ndarray) and arr.dtype == cdt, f"{name}: dtype {arr.dtype}"
        assert arr.shape == np.shape(args[0]), f"{name}: shape {arr.shape}"
    assert_close(g, grad, rtol, "grad", floor_scale=floor_scale)
    # The entry points run different fused kernels, whose gradients may round
    # differently in the last bit (class weights with label smoothing do).
    assert_close(g2, grad, rtol, "grad (grad)", floor_scale=floor_scale)
    assert_close(g3, grad, rtol, "grad (grad_hess)", floor_scale=floor_scale)
    assert_close(h, hess, rtol, "hess", floor_scale=floor_scale)


def reduced_magnitude(loss_ref, args, kwargs):
    """Sum of |w l| (over D for the mean): the scale of a reduced value's rounding."""
    kw = dict(kwargs)
    red = kw.pop("reduction", "none")
    per, _, _ = loss_ref(*args, reduction="none", **kw)
    total = float(np.sum(np.abs(per)))
    if red == "mean":
        s, _, _ = loss_ref(*args, reduction="sum", **kw)
        m, _, _ = loss_ref(*args, reduction="mean", **kw)
        if m != 0 and not math.isnan(m):
            total *= m / s if s != 0 else 1.0
    return total


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def binary_targets(rng, shape):
    """0/1 targets with a fifth soft in (0, 1); both classes present."""
    t = (rng.uniform(size=shape) < 0.4).astype(np.float64)
    soft = rng.uniform(size=shape) < 0.2
    t[soft] = rng.uniform(0.0, 1.0, size=int(soft.sum()))
    flat = t.reshape(-1)
    if flat.size >= 2:
        flat[0], flat[1] = 0.0, 1.0
    return t


def sigmoid_inputs(rng, shape, dtype, from_logits=True):
    if from_logits:
        z = rng.normal(0.0, 3.0, size=shape)
    else:
        z = rng.uniform(0.02, 0.98, size=shape)
    return z.astype(dtype), binary_targets(rng, shape).astype(dtype)


def index_targets(rng, n, k, dtype=np.int64, ignore=None, every_class=True):
    y = rng.integers(0, k, size=n)
    if every_class and n >= k:
        y[:k] = rng.permutation(k)
    if ignore is not None and n > k + 1:
        y[k::4] = ignore
    return y.astype(dtype)


def prob_targets(rng, n, k, ignore=None):
    t = rng.dirichlet(np.full(k, 0.7), size=n)
    if ignore is not None and 0 <= ignore < k and n > 3:
        t[3] = 0.0
        t[3, ignore] = 1.0
    return t


def softmax_inputs(rng, n, k, dtype, target="index", from_logits=True, ignore=None,
                   target_dtype=np.int64):
    if from_logits:
        x = rng.normal(0.0, 3.0, size=(n, k))
    else:
        x = rng.dirichlet(np.full(k, 2.0), size=n)
        x = np.maximum(x, 1e-3)
    if target == "index":
        t = index_targets(rng, n, k, target_dtype, ignore=ignore)
    else:
        t = prob_targets(rng, n, k, ignore=ignore).astype(dtype)
    return x.astype(dtype), t


# --------------------------------------------------------------------------
# The matrix
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    id: str
    loss: str  # "sigmoid" or "softmax"
    params: tuple = ()
    target: str = "binary"  # "binary", "index" or "prob"
    ignore: int | None = None  # a label that marks ignored rows in the data

    @property
    def kwargs(self):
        return dict(self.params)

    @property
    def from_logits(self):
        return self.kwargs.get("from_logits", True)


SIG_SHAPE = (9, 7)
SM_N, SM_K = 11, 5
PW_COLUMNS = tuple(np.linspace(0.5, 3.0, SIG_SHAPE[1]).tolist())
SM_WEIGHTS = (0.5, 2.0, 1.0, 3.0, 0.25)

CASES = [
    Case("plain", "sigmoid"),
    Case("pos_weight", "sigmoid", (("pos_weight", 2.5),)),
    Case("pos_weight_columns", "sigmoid", (("pos_weight", PW_COLUMNS),)),
    Case("smoothing", "sigmoid", (("label_smoothing", 0.1),)),
    Case("cw_list", "sigmoid", (("class_weight", (0.5, 2.0)),)),
    Case("cw_dict", "sigmoid", (("class_weight", {0: 0.3, 1: 3.0}),)),
    Case("cw_balanced", "sigmoid", (("class_weight", "balanced"),)),
    Case("cw_auto", "sigmoid", (("class_weight", "auto"),)),
    Case("probs", "sigmoid", (("from_logits", False),)),
    Case("log10", "sigmoid", (("log_base", 10),)),
    Case("everything", "sigmoid", (("pos_weight", PW_COLUMNS), ("label_smoothing", 0.2),
                                   ("class_weight", "balanced"), ("log_base", 2))),
    Case("everything_probs", "sigmoid", (("from_logits", False), ("pos_weight", 1.5),
                                         ("label_smoothing", 0.05), ("class_weight", (0.7, 1.6)),
                                         ("log_base", 10))),
    Case("index", "softmax", target="index"),
    Case("prob", "softmax", target="prob"),
    Case("cw", "softmax", (("class_weight", SM_WEIGHTS),), target="index"),
    Case("cw_dict", "softmax", (("class_weight", {1: 2.0, 3: 0.5}),), target="index"),
    Case("cw_balanced", "softmax", (("class_weight", "balanced"),), target="index", ignore=-100),
    Case("smoothing", "softmax", (("label_smoothing", 0.1),), target="index"),
    Case("ignore_default", "softmax", target="index", ignore=-100),
    Case("ignore_2", "softmax", (("ignore_index", 2),), target="index", ignore=2),
    Case("probs_index", "softmax", (("from_logits", False),), target="index"),
    Case("probs_prob_cw", "softmax", (("from_logits", False), ("class_weight", SM_WEIGHTS)),
         target="prob"),
    Case("log10", "softmax", (("log_base", 10),), target="index"),
    Case("everything_index", "softmax", (("class_weight", SM_WEIGHTS), ("label_smoothing", 0.15),
                                         ("ignore_index", 4), ("log_base", 2)),
         target="index", ignore=4),
    Case("everything_prob", "softmax", (("class_weight", SM_WEIGHTS), ("label_smoothing", 0.15),
                                        ("ignore_index", 1), ("log_base", 2)),
         target="prob", ignore=1),
    Case("everything_probs_index", "softmax", (("from_logits", False), ("class_weight", SM_WEIGHTS),
                                               ("label_smoothing", 0.1), ("ignore_index", -1),
                                               ("log_base", 10)),
         target="index", ignore=-1),
]


def fastloss_kwargs(case):
    kw = case.kwargs
    for key in ("pos_weight", "class_weight"):
        if isinstance(kw.get(key), tuple):
            kw[key] = np.array(kw[key])
    return kw


def make_case_data(case, dtype, weighted):
    rng = np.random.default_rng(seed_of(case.id, case.loss, np.dtype(dtype).name, weighted))
    if case.loss == "sigmoid":
        z, t = sigmoid_inputs(rng, SIG_SHAPE, dtype, case.from_logits)
        sw = rng.uniform(0.25, 2.0, size=SIG_SHAPE).astype(dtype) if weighted else None
    else:
        z, t = softmax_inputs(rng, SM_N, SM_K, dtype, case.target, case.from_logits, case.ignore)
        sw = rng.uniform(0.25, 2.0, size=SM_N).astype(dtype) if weighted else None
    return z, t, sw


_EXPECTED = {}


def expected_for(case, dtype, weighted, reduction):
    key = (case, np.dtype(dtype).name, weighted, reduction)
    if key not in _EXPECTED:
        z, t, sw = make_case_data(case, dtype, weighted)
        fn = ref.sigmoid_cross_entropy if case.loss == "sigmoid" else ref.softmax_cross_entropy
        kw = dict(case.kwargs, clip=clip_of(dtype))
        args = (rounded(z, dtype), rounded(t, dtype))
        w = None if sw is None else rounded(sw, dtype)
        exp = fn(*args, reduction=reduction, sample_weight=w, **kw)
        mag = reduced_magnitude(fn, args, dict(kw, reduction=reduction, sample_weight=w))
        _EXPECTED[key] = (exp, mag)
    return _EXPECTED[key]


@pytest.mark.parametrize("weighted", [False, True], ids=["sw_none", "sw_array"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@dtype_param
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.loss}-{c.id}")
def test_matrix(case, dtype, reduction, weighted, isa, nthreads):
    z, t, sw = make_case_data(case, dtype, weighted)
    loss = SIGMOID if case.loss == "sigmoid" else SOFTMAX
    kwargs = dict(fastloss_kwargs(case), reduction=reduction, sample_weight=sw)
    expected, magnitude = expected_for(case, dtype, weighted, reduction)
    check_all_entry_points(loss, (z, t), kwargs, expected, dtype, magnitude)


# --------------------------------------------------------------------------
# Shapes: K across SIMD tails and the row chunk, broadcasting, out=
# --------------------------------------------------------------------------

K_VALUES = (1, 2, 3, 7, 8, 9, 15, 16, 17, 100, 2049, 5000)
K_OPTIONS = {
    "plain": {},
    "everything": {"label_smoothing": 0.1, "log_base": 2, "ignore_index": 0},
}


@pytest.mark.parametrize("options", list(K_OPTIONS), ids=str)
@pytest.mark.parametrize("target", ["index", "prob"])
@dtype_param
@pytest.mark.parametrize("k", K_VALUES, ids=lambda k: f"K{k}")
def test_softmax_class_counts(k, dtype, target, options, isa):
    rng = np.random.default_rng(seed_of("K", k, np.dtype(dtype).name, target, options))
    n = 4
    x = rng.normal(0.0, 4.0, size=(n, k)).astype(dtype)
    kw = dict(K_OPTIONS[options])
    if options == "everything":
        kw["class_weight"] = rng.uniform(0.5, 2.0, size=k)
    if target == "index":
        t = rng.integers(0, k, size=n)
        if options == "everything" and k > 1:
            t[1] = 0  # an ignored row (ignore_index=0)
    else:
        t = rng.dirichlet(np.ones(k), size=n).astype(dtype)
        if options == "everything":
            t[1] = 0.0
            t[1, 0] = 1.0  # ignored: t[ignore_index] == 1
    sw = rng.uniform(0.5, 2.0, size=n)
    for reduction in REDUCTIONS:
        exp = ref.softmax_cross_entropy(rounded(x, dtype), rounded(t, dtype), reduction=reduction,
                                        sample_weight=rounded(sw, dtype), clip=clip_of(dtype), **kw)
        mag = reduced_magnitude(ref.softmax_cross_entropy, (rounded(x, dtype), rounded(t, dtype)),
                                dict(kw, reduction=reduction, sample_weight=rounded(sw, dtype)))
        # K = 1: the loss is 0, computed as the difference of terms of order |x|.
        floor = float(np.max(np.abs(x))) * float(np.max(sw)) if k == 1 else 0.0
        check_all_entry_points(SOFTMAX, (x, t), dict(kw, reduction=reduction, sample_weight=sw),
                               exp, dtype, mag, floor)


@pytest.mark.parametrize("tdtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                    np.uint32, np.uint64], ids=lambda d: np.dtype(d).name)
def test_integer_target_dtypes(tdtype):
    rng = np.random.default_rng(seed_of("tdtype", np.dtype(tdtype).name))
    x = rng.normal(0.0, 2.0, size=(40, 9))
    y = index_targets(rng, 40, 9, np.int64)
    signed = np.dtype(tdtype).kind == "i"
    kw = {"class_weight": rng.uniform(0.5, 2, 9), "label_smoothing": 0.05}
    if signed:
        y[5::7] = -3
        kw["ignore_index"] = -3
    else:
        y[5::7] = 6
        kw["ignore_index"] = 6
    exp = ref.softmax_cross_entropy(x, y, reduction="mean", **kw)
    got = SOFTMAX.grad_hess(x, y.astype(tdtype), reduction="mean", **kw)
    value = SOFTMAX(x, y.astype(tdtype), reduction="mean", **kw)
    assert_reduced(value, exp[0], 1e-12, exp[0], "value")
    assert_close(got[0], exp[1], 1e-12, "grad")
    assert_close(got[1], exp[2], 1e-12, "hess")


@pytest.mark.parametrize("tdtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@dtype_param
def test_probability_target_dtypes(dtype, tdtype):
    """Probability targets of either float dtype are read in the logits' compute dtype."""
    rng = np.random.default_rng(seed_of("pdtype", np.dtype(dtype).name, np.dtype(tdtype).name))
    x = rng.normal(0.0, 2.0, size=(13, 6)).astype(dtype)
    t = prob_targets(rng, 13, 6).astype(tdtype)
    t64 = rounded(rounded(t, tdtype), dtype)
    for reduction in REDUCTIONS:
        exp = ref.softmax_cross_entropy(rounded(x, dtype), t64, reduction=reduction)
        mag = reduced_magnitude(ref.softmax_cross_entropy, (rounded(x, dtype), t64),
                                {"reduction": reduction})
        check_all_entry_points(SOFTMAX, (x, t), {"reduction": reduction}, exp, dtype, mag)
    # A one-hot probability target gives the index-target result.
    y = rng.integers(0, 6, size=13)
    onehot = np.eye(6, dtype=tdtype)[y]
    assert_close(SOFTMAX(x, onehot), SOFTMAX(x, y).astype(np.float64), RTOL[np.dtype(dtype)])


@dtype_param
def test_sigmoid_mixed_target_dtype(dtype):
    rng = np.random.default_rng(seed_of("mixed", np.dtype(dtype).name))
    z, t = sigmoid_inputs(rng, (50,), dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    for tt in (t.astype(other), (t > 0.5).astype(np.int8)):
        exp = ref.sigmoid_cross_entropy(rounded(z, dtype), rounded(tt, dtype))
        check_all_entry_points(SIGMOID, (z, tt), {}, exp, dtype)


def test_sigmoid_broadcasting():
    rng = np.random.default_rng(7)
    z = rng.normal(0, 2, size=(6, 4))
    t_row = binary_targets(rng, (4,))
    pw = np.array([0.5, 1.0, 2.0, 4.0])
    sw_col = rng.uniform(0.5, 2.0, size=(6, 1))
    for reduction in REDUCTIONS:
        kw = {"reduction": reduction, "pos_weight": pw, "label_smoothing": 0.1}
        exp = ref.sigmoid_cross_entropy(z, t_row, sample_weight=sw_col, **kw)
        check_all_entry_points(SIGMOID, (z, t_row), dict(kw, sample_weight=sw_col), exp,
                               np.float64, abs(exp[0]) if reduction != "none" else None)
    # A scalar target.
    exp = ref.sigmoid_cross_entropy(z, 1.0, reduction="sum")
    check_all_entry_points(SIGMOID, (z, 1.0), {"reduction": "sum"}, exp, np.float64, exp[0])


def test_softmax_broadcast_target_and_leading_axes():
    rng = np.random.default_rng(8)
    x = rng.normal(0, 2, size=(3, 4, 6))
    y = np.array([0, 5, 2, 3])  # broadcast against the rows (3, 4)
    sw = rng.uniform(0.5, 2.0, size=(3, 4))
    for reduction in REDUCTIONS:
        exp = ref.softmax_cross_entropy(x, np.broadcast_to(y, (3, 4)), reduction=reduction,
                                        sample_weight=sw)
        check_all_entry_points(SOFTMAX, (x, y), {"reduction": reduction, "sample_weight": sw},
                               exp, np.float64, abs(exp[0]) if reduction != "none" else None)
    v = SOFTMAX(x, y)
    assert v.shape == (3, 4)
    # Index targets broadcast to the rows as NumPy broadcasts; the message says so.
    for t in (np.array(2), np.array([2]), np.array([[2], [0], [5]])):
        np.testing.assert_array_equal(SOFTMAX(x, t), SOFTMAX(x, np.broadcast_to(t, (3, 4))))
    for bad in (np.array([0, 1, 2]), np.zeros((2, 4), dtype=np.int64)):
        with pytest.raises(ValueError, match=r"holds class indices and must broadcast to the "
                                             r"shape \(3, 4\)"):
            SOFTMAX(x, bad)
        with pytest.raises(ValueError, match="must broadcast to the shape"):
            SOFTMAX(x, bad, class_weight="balanced")  # the counting pass's own check


@dtype_param
def test_out_arrays(dtype):
    rng = np.random.default_rng(seed_of("out", np.dtype(dtype).name))
    x, y = softmax_inputs(rng, 10, 7, dtype)
    out = np.empty(10, dtype)
    g_out = np.empty((10, 7), dtype)
    h_out = np.empty((10, 7), dtype)
    v, g = SOFTMAX.value_and_grad(x, y, out=out, grad_out=g_out)
    assert v is out and g is g_out
    g2, h = SOFTMAX.grad_hess(x, y, grad_out=g_out, hess_out=h_out)
    assert g2 is g_out
    assert h is h_out
    exp = ref.softmax_cross_entropy(rounded(x, dtype), y)
    assert_close(out, exp[0], RTOL[np.dtype(dtype)])
    assert_close(h_out, exp[2], RTOL[np.dtype(dtype)])
    z, t = sigmoid_inputs(rng, (5, 3), dtype)
    out = np.empty((5, 3), dtype)
    assert SIGMOID(z, t, out=out) is out
    assert_close(out, ref.sigmoid_cross_entropy(rounded(z, dtype), rounded(t, dtype))[0],
                 RTOL[np.dtype(dtype)])


def test_input_layouts_and_dtypes():
    """Strided, Fortran-ordered, read-only, list, float16 and integer logits."""
    rng = np.random.default_rng(21)
    base = rng.normal(0, 2, size=(6, 10))
    y = np.array([0, 1, 4, 2, 3, 0])
    want = ref.softmax_cross_entropy(base[:, ::2], y, reduction="none", label_smoothing=0.1)
    layouts = {
        "strided": base[:, ::2],
        "fortran": np.asfortranarray(base[:, ::2]),
        "transposed": np.ascontiguousarray(base[:, ::2].T).T,
        "list": base[:, ::2].tolist(),
    }
    read_only = base[:, ::2].copy()
    read_only.flags.writeable = False
    layouts["read_only"] = read_only
    for name, x in layouts.items():
        v, g = SOFTMAX.value_and_grad(x, y, label_smoothing=0.1)
        _, h = SOFTMAX.grad_hess(x, y, label_smoothing=0.1)
        assert_close(v, want[0], 1e-12, name)
        assert_close(g, want[1], 1e-12, name)
        assert_close(h, want[2], 1e-12, name)
    # Strided target too.
    y_strided = np.repeat(y, 2)[::2]
    assert_close(SOFTMAX(base[:, ::2], y_strided, label_smoothing=0.1), want[0], 1e-12)
    # float16 logits compute in float32; integer logits in float64.
    assert SOFTMAX(base.astype(np.float16), np.zeros(6, dtype=np.int64)).dtype == np.float32
    assert SIGMOID(np.ones(3, dtype=np.float16), np.ones(3)).dtype == np.float32
    xi = rng.integers(-3, 4, size=(5, 4))
    v = SOFTMAX(xi, np.array([0, 1, 2, 3, 0]))
    assert v.dtype == np.float64
    assert_close(v, ref.softmax_cross_entropy(xi.astype(float), np.array([0, 1, 2, 3, 0]))[0], 1e-12)
    z = base[::2, ::3]
    t = (z > 0).astype(np.float64)
    assert_close(SIGMOID(z, t), ref.sigmoid_cross_entropy(z, t)[0], 1e-12)


def test_concurrent_python_threads():
    """The GIL is released during kernels; concurrent calls give the serial results."""
    import concurrent.futures

    rng = np.random.default_rng(22)
    jobs = []
    for i in range(8):
        x = rng.normal(0, 2, size=(3000 + i, 13))
        y = rng.integers(0, 13, size=3000 + i)
        jobs.append((x, y))
    serial = [SOFTMAX.grad_hess(x, y, reduction="mean", label_smoothing=0.1) for x, y in jobs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(SOFTMAX.grad_hess, x, y, reduction="mean", label_smoothing=0.1)
                   for x, y in jobs]
        parallel = [f.result() for f in futures]
    for (g0, h0), (g1, h1) in zip(serial, parallel):
        assert same(g0, g1) and same(h0, h1)


# --------------------------------------------------------------------------
# Derivatives by finite differences (float64, reduction="sum")
# --------------------------------------------------------------------------


def central_diff(f, x, step):
    """4th-order central differences of scalar f along every coordinate of x."""
    x = np.array(x, dtype=np.float64)
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        v = x[i]
        vals = []
        for m in (-2, -1, 1, 2):
            x[i] = v + m * step
            vals.append(f(x))
        x[i] = v
        out[i] = (vals[0] - 8.0 * vals[1] + 8.0 * vals[2] - vals[3]) / (12.0 * step)
    return out


def diag_diff(grad_fn, x, step):
    """d grad[i] / d x[i] by 4th-order central differences of the gradient."""
    x = np.array(x, dtype=np.float64)
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        v = x[i]
        vals = []
        for m in (-2, -1, 1, 2):
            x[i] = v + m * step
            vals.append(grad_fn(x)[i])
        x[i] = v
        out[i] = (vals[0] - 8.0 * vals[1] + 8.0 * vals[2] - vals[3]) / (12.0 * step)
    return out


SIG_FD = {
    "plain": {},
    "pos_weight": {"pos_weight": np.array([0.5, 2.0, 3.0])},
    "everything": {"pos_weight": 1.7, "label_smoothing": 0.2, "class_weight": "balanced",
                   "log_base": 2},
    "probs": {"from_logits": False, "pos_weight": 2.0, "label_smoothing": 0.1, "log_base": 10},
}


@pytest.mark.parametrize("weighted", [False, True], ids=["sw_none", "sw_array"])
@pytest.mark.parametrize("options", list(SIG_FD), ids=str)
def test_sigmoid_finite_differences(options, weighted):
    rng = np.random.default_rng(seed_of("sigfd", options, weighted))
    kw = dict(SIG_FD[options], reduction="sum")
    from_logits = kw.get("from_logits", True)
    z, t = sigmoid_inputs(rng, (4, 3), np.float64, from_logits)
    if not from_logits:
        z = rng.uniform(0.1, 0.9, size=(4, 3))
    if weighted:
        kw["sample_weight"] = rng.uniform(0.5, 2.0, size=(4, 3))
    step = 1e-3 if from_logits else 1e-4
    g, h = SIGMOID.grad_hess(z, t, **kw)
    g_fd = central_diff(lambda v: float(SIGMOID(v, t, **kw)), z, step)
    h_fd = diag_diff(lambda v: SIGMOID.grad(v, t, **kw), z, step)
    np.testing.assert_allclose(g, g_fd, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(h, h_fd, rtol=1e-7, atol=1e-9)


SM_FD = {
    "index": ("index", {}),
    "prob": ("prob", {}),
    "everything_index": ("index", {"class_weight": np.array([0.5, 2.0, 1.0, 3.0, 1.5]),
                                   "label_smoothing": 0.2, "ignore_index": 3, "log_base": 10}),
    "everything_prob": ("prob", {"class_weight": np.array([0.5, 2.0, 1.0, 3.0, 1.5]),
                                 "label_smoothing": 0.2, "log_base": 2}),
    "probs_index": ("index", {"from_logits": False, "label_smoothing": 0.1}),
    "probs_prob": ("prob", {"from_logits": False, "class_weight": np.array([1.0, 2.0, 0.5, 1.0, 1.0])}),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["sw_none", "sw_array"])
@pytest.mark.parametrize("options", list(SM_FD), ids=str)
def test_softmax_finite_differences(options, weighted):
    rng = np.random.default_rng(seed_of("smfd", options, weighted))
    target, kw = SM_FD[options]
    kw = dict(kw, reduction="sum")
    from_logits = kw.get("from_logits", True)
    x, t = softmax_inputs(rng, 4, 5, np.float64, target, from_logits,
                          ignore=kw.get("ignore_index"))
    if not from_logits:
        x = rng.uniform(0.1, 0.9, size=(4, 5))
    if target == "index" and "ignore_index" in kw:
        t[2] = kw["ignore_index"]
    if weighted:
        kw["sample_weight"] = rng.uniform(0.5, 2.0, size=4)
    step = 1e-3 if from_logits else 1e-4
    g, h = SOFTMAX.grad_hess(x, t, **kw)
    g_fd = central_diff(lambda v: float(SOFTMAX(v, t, **kw)), x, step)
    h_fd = diag_diff(lambda v: SOFTMAX.grad(v, t, **kw), x, step)
    np.testing.assert_allclose(g, g_fd, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(h, h_fd, rtol=1e-7, atol=1e-9)


def test_mean_derivatives_carry_the_denominator():
    """The gradient of "mean" is the finite difference of the mean."""
    rng = np.random.default_rng(11)
    x, y = softmax_inputs(rng, 6, 4, np.float64, ignore=-100)
    y[1] = -100
    kw = {"reduction": "mean", "class_weight": np.array([1.0, 2.0, 3.0, 0.5]),
          "sample_weight": rng.uniform(0.5, 2, 6)}
    g = SOFTMAX.grad(x, y, **kw)
    np.testing.assert_allclose(g, central_diff(lambda v: float(SOFTMAX(v, y, **kw)), x, 1e-3),
                               rtol=1e-7, atol=1e-10)
    z, t = sigmoid_inputs(rng, (5, 2), np.float64)
    kw = {"reduction": "mean", "class_weight": [0.5, 3.0], "sample_weight": rng.uniform(0.5, 2, (5, 2))}
    g = SIGMOID.grad(z, t, **kw)
    np.testing.assert_allclose(g, central_diff(lambda v: float(SIGMOID(v, t, **kw)), z, 1e-3),
                               rtol=1e-7, atol=1e-10)


# --------------------------------------------------------------------------
# Determinism across thread counts, and the parallel path against the reference
# --------------------------------------------------------------------------

_LARGE = {}


def large_data(loss, dtype):
    key = (loss, np.dtype(dtype).name)
    if key not in _LARGE:
        rng = np.random.default_rng(seed_of("large", *key))
        if loss == "sigmoid":
            z, t = sigmoid_inputs(rng, (100_003,), dtype)
            sw = rng.uniform(0.25, 2.0, size=z.shape).astype(dtype)
            kw = {"pos_weight": 1.5, "class_weight": "balanced", "label_smoothing": 0.05}
            exp = ref.sigmoid_cross_entropy(rounded(z, dtype), rounded(t, dtype), reduction="mean",
                                            sample_weight=rounded(sw, dtype), **kw)
        else:
            x, t = softmax_inputs(rng, 6001, 17, dtype, ignore=-100)
            z = x
            sw = rng.uniform(0.25, 2.0, size=6001).astype(dtype)
            kw = {"class_weight": rng.uniform(0.5, 2.0, 17), "label_smoothing": 0.05}
            exp = ref.softmax_cross_entropy(rounded(x, dtype), t, reduction="mean",
                                            sample_weight=rounded(sw, dtype), **kw)
        _LARGE[key] = (z, t, sw, kw, exp)
    return _LARGE[key]


@pytest.mark.parametrize("loss", ["sigmoid", "softmax"])
@dtype_param
def test_reductions_bit_identical_across_threads(loss, dtype, isa):
    z, t, sw, kw, exp = large_data(loss, dtype)
    fn = SIGMOID if loss == "sigmoid" else SOFTMAX
    results = {}
    for n in (1, 2, 7):
        with fl.threads(n):
            s = fn(z, t, reduction="sum", sample_weight=sw, **kw)
            m, g = fn.value_and_grad(z, t, reduction="mean", sample_weight=sw, **kw)
            g2, h = fn.grad_hess(z, t, reduction="mean", sample_weight=sw, **kw)
            again = fn(z, t, reduction="sum", sample_weight=sw, **kw)
        assert same(s, again), "sum differs from run to run"
        results[n] = (s, m, g, g2, h)
    for n in (2, 7):
        for a, b, what in zip(results[1], results[n], ("sum", "mean", "grad", "grad_hess grad", "hess")):
            assert same(a, b), f"{what} with {n} threads differs from 1 thread"
    rtol = RTOL[np.dtype(dtype)]
    _, m, g, _, h = results[1]
    assert abs(m - exp[0]) <= rtol * abs(exp[0])
    assert_close(g, exp[1], rtol, "grad")
    assert_close(h, exp[2], rtol, "hess")


def test_large_rows_across_chunks_threads(nthreads):
    """Rows of K > 2048 split into chunks, with several rows per thread."""
    rng = np.random.default_rng(seed_of("bigrows", nthreads))
    x = rng.normal(0.0, 3.0, size=(24, 3001)).astype(np.float32)
    y = rng.integers(0, 3001, size=24)
    exp = ref.softmax_cross_entropy(rounded(x, np.float32), y, reduction="none",
                                    label_smoothing=0.1)
    check_all_entry_points(SOFTMAX, (x, y), {"label_smoothing": 0.1}, exp, np.float32)


# --------------------------------------------------------------------------
# Hand-computed values and extremes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("target", [np.array([0]), np.array([[1.0, 0.0, 0.0]])],
                         ids=["index", "one_hot"])
def test_textbook_example(target):
    """H((1, 0, 0), (0.5, 0.4, 0.1)): -ln 0.5 = 0.693147 nats, log10(2) = 0.30103."""
    probs = np.array([[0.5, 0.4, 0.1]])
    v = SOFTMAX(probs, target, from_logits=False)
    assert v.shape == (1,)
    assert round(float(v[0]), 6) == 0.693147
    assert round(float(SOFTMAX(probs, target, from_logits=False, log_base=10)[0]), 5) == 0.30103
    assert float(SOFTMAX(probs, target, from_logits=False, reduction="mean")) == pytest.approx(
        math.log(2.0), rel=1e-15)
    assert float(SOFTMAX(probs, target, from_logits=False, log_base=2, reduction="sum")) == \
        pytest.approx(1.0, rel=1e-15)
    # The same numbers from logits whose softmax is (0.5, 0.4, 0.1).
    assert float(SOFTMAX(np.log(probs), target)[0]) == pytest.approx(math.log(2.0), rel=1e-14)


def test_sigmoid_hand_values():
    # softplus(0) = ln 2 for either target; log_base=2 makes it 1 bit.
    assert SIGMOID(np.array([0.0]), np.array([1.0]), log_base=2)[0] == pytest.approx(1.0, rel=1e-15)
    v, g = SIGMOID.value_and_grad(np.array([0.0, 0.0]), np.array([0.0, 1.0]), pos_weight=3.0)
    np.testing.assert_allclose(v, [math.log(2), 3 * math.log(2)], rtol=1e-15)
    np.testing.assert_allclose(g, [0.5, -1.5], rtol=1e-15)
    # Keras binary smoothing: t' = t (1 - eps) + eps / 2.
    v = SIGMOID(np.array([2.0]), np.array([1.0]), label_smoothing=0.2)[0]
    expected = 0.9 * math.log1p(math.exp(-2.0)) + 0.1 * math.log1p(math.exp(2.0))
    assert v == pytest.approx(expected, rel=1e-14)
    # Probabilities: -ln(0.8) for t = 1, q = 0.8.
    assert SIGMOID(np.array([0.8]), np.array([1.0]), from_logits=False)[0] == pytest.approx(
        -math.log(0.8), rel=1e-15)


@pytest.mark.parametrize("target", ["index", "prob"])
@dtype_param
def test_extreme_logits_finite(dtype, target):
    big = 1e4
    x = np.array([[big, -big, 0.0], [-big, big, -big], [big, big, -big], [0.0, 0.0, 0.0]],
                 dtype=dtype)
    t = np.array([1, 0, 2, 1]) if target == "index" else np.eye(3, dtype=dtype)[[1, 0, 2, 1]]
    g, h = SOFTMAX.grad_hess(x, t)
    v = SOFTMAX(x, t)
    for arr in (v, g, h):
        assert np.all(np.isfinite(arr)), arr
    exp = ref.softmax_cross_entropy(rounded(x, dtype), rounded(t, dtype))
    assert_close(v, exp[0], RTOL[np.dtype(dtype)], "value")
    assert_close(g, exp[1], RTOL[np.dtype(dtype)], "grad")
    assert_close(h, exp[2], RTOL[np.dtype(dtype)], "hess")
    assert math.isfinite(SOFTMAX(x, t, reduction="mean", label_smoothing=0.1))


@dtype_param
def test_sigmoid_extreme_logits_finite(dtype):
    z = np.array([1e4, -1e4, 1e4, -1e4, 88.0, -88.0, 700.0, -700.0], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.3, 0.7, 1.0, 0.0], dtype=dtype)
    for kw in ({}, {"pos_weight": 3.0, "label_smoothing": 0.1}):
        v = SIGMOID(z, t, **kw)
        g, h = SIGMOID.grad_hess(z, t, **kw)
        for arr in (v, g, h):
            assert np.all(np.isfinite(arr)), arr
        exp = ref.sigmoid_cross_entropy(rounded(z, dtype), rounded(t, dtype), **kw)
        assert_close(v, exp[0], RTOL[np.dtype(dtype)], "value")
        assert_close(g, exp[1], RTOL[np.dtype(dtype)], "grad")
        assert_close(h, exp[2], RTOL[np.dtype(dtype)], "hess")


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-6), (np.float32, 1e-5)],
                         ids=["float64", "float32"])
def test_sigmoid_gradient_tail_not_flushed(dtype, rtol):
    """At z = 30, t = 1 the gradient is -1/(1 + e^30) ~ -9.4e-14, not 0."""
    g = SIGMOID.grad(np.array([30.0], dtype=dtype), np.array([1.0], dtype=dtype))[0]
    want = -1.0 / (1.0 + math.exp(30.0))
    assert g != 0.0
    assert abs(float(g) / want - 1.0) <= rtol
    h = SIGMOID.grad_hess(np.array([-30.0], dtype=dtype), np.array([0.0], dtype=dtype))[1][0]
    assert abs(float(h) / (math.exp(-30.0) / (1 + math.exp(-30.0)) ** 2) - 1.0) <= rtol


def confident_rows(z, k):
    """Rows (z, 0, ..., 0) of k logits, label 0, and their exact value, gradient and Hessian
    diagonal in closed form: with s = (k - 1) e^-z, p_0 = 1 / (1 + s), 1 - p_0 = s / (1 + s),
    p_j = e^-z / (1 + s); loss log1p(s)."""
    s = (k - 1) * math.exp(-z)
    p0, om, pj = 1.0 / (1.0 + s), s / (1.0 + s), math.exp(-z) / (1.0 + s)
    x = np.zeros((1, k))
    x[0, 0] = z
    g = np.full((1, k), pj)
    g[0, 0] = -om
    h = np.full((1, k), pj * (1.0 - pj))
    h[0, 0] = p0 * om
    return x, np.array([0]), math.log1p(s), g, h


@pytest.mark.parametrize("k", [2, 3, 100, 3000])  # 3000: a row of two softmax chunks
@pytest.mark.parametrize("z", [20.0, 30.0, 40.0])
@pytest.mark.parametrize("form", ["index", "onehot", "weighted"])
@dtype_param
def test_softmax_confident_rows_keep_relative_accuracy(k, z, form, dtype, isa):
    """A row whose label has p ~ 1: the loss log1p(S1) and the gradient p - 1 = -S1 / S at the
    label keep their relative accuracy (S1 = 9.4e-14 at (30, 0) would vanish next to 1 in a
    plain sum), as softmax_cross_entropy's K = 2 row agrees with sigmoid_cross_entropy."""
    x, y, v_want, g_want, h_want = confident_rows(z, k)
    xd = x.astype(dtype)
    tgt = y if form == "index" else np.eye(k, dtype=dtype)[y]
    kw = {"class_weight": np.linspace(0.3, 1.7, k)} if form == "weighted" else {}
    c = kw["class_weight"][0] if kw else 1.0
    v = SOFTMAX(xd, tgt, **kw)
    g, h = SOFTMAX.grad_hess(xd, tgt, **kw)
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    tiny = np.finfo(dtype).tiny
    np.testing.assert_allclose(v[0], c * v_want, rtol=rtol)
    np.testing.assert_allclose(g[0, 0], c * g_want[0, 0], rtol=rtol)
    np.testing.assert_allclose(h[0, 0], c * h_want[0, 0], rtol=rtol, atol=tiny)
    np.testing.assert_allclose(g[0, 1:], c * g_want[0, 1:], rtol=rtol, atol=tiny)
    if k == 2 and form == "index":
        sg = SIGMOID.grad(np.array([z], dtype), np.array([1.0], dtype))[0]
        np.testing.assert_allclose(g[0, 0], sg, rtol=rtol)


@dtype_param
def test_probabilities_at_the_bounds(dtype):
    """from_logits=False clips 0 and 1 to [eps, 1 - eps]: finite, derivatives of the formula."""
    eps = clip_of(dtype)
    q = np.array([0.0, 1.0, 0.0, 1.0], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    v = SIGMOID(q, t, from_logits=False)
    g, h = SIGMOID.grad_hess(q, t, from_logits=False)
    for arr in (v, g, h):
        assert np.all(np.isfinite(arr))
    exp = ref.sigmoid_cross_entropy(rounded(q, dtype), rounded(t, dtype), from_logits=False, clip=eps)
    assert_close(v, exp[0], RTOL[np.dtype(dtype)], "value")
    assert_close(g, exp[1], RTOL[np.dtype(dtype)], "grad")
    assert_close(h, exp[2], RTOL[np.dtype(dtype)], "hess")
    p = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]], dtype=dtype)
    y = np.array([0, 2])
    v = SOFTMAX(p, y, from_logits=False)
    g, h = SOFTMAX.grad_hess(p, y, from_logits=False)
    for arr in (v, g, h):
        assert np.all(np.isfinite(arr))
    exp = ref.softmax_cross_entropy(rounded(p, dtype), y, from_logits=False, clip=eps)
    assert_close(v, exp[0], RTOL[np.dtype(dtype)], "value")
    assert_close(g, exp[1], RTOL[np.dtype(dtype)], "grad")
    assert_close(h, exp[2], RTOL[np.dtype(dtype)], "hess")


def test_large_k_smoke():
    rng = np.random.default_rng(12)
    k = 262_144
    x = rng.normal(0.0, 3.0, size=(4, k)).astype(np.float32)
    y = np.array([0, k - 1, 12345, 200_000])
    for reduction in ("none", "mean"):
        exp = ref.softmax_cross_entropy(rounded(x, np.float32), y, reduction=reduction)
        check_all_entry_points(SOFTMAX, (x, y), {"reduction": reduction}, exp, np.float32,
                               abs(exp[0]) if reduction == "mean" else None)


def test_sample_weight_and_class_weight_semantics():
    """none sums to sum; mean = sum / sum(sw c[y]) over kept rows; probability
    targets divide by sum(sw)."""
    rng = np.random.default_rng(13)
    x, y = softmax_inputs(rng, 12, 4, np.float64)
    y[[2, 7]] = -100
    c = np.array([1.0, 2.0, 0.5, 4.0])
    sw = rng.uniform(0.5, 2.0, size=12)
    none = SOFTMAX(x, y, class_weight=c, sample_weight=sw)
    total = SOFTMAX(x, y, class_weight=c, sample_weight=sw, reduction="sum")
    mean = SOFTMAX(x, y, class_weight=c, sample_weight=sw, reduction="mean")
    kept = y != -100
    assert none[~kept].tolist() == [0.0, 0.0]
    assert total == pytest.approx(none.sum(), rel=1e-14)
    assert mean == pytest.approx(total / np.sum(sw[kept] * c[y[kept]]), rel=1e-14)
    t = prob_targets(rng, 12, 4)
    total = SOFTMAX(x, t, class_weight=c, sample_weight=sw, reduction="sum")
    mean = SOFTMAX(x, t, class_weight=c, sample_weight=sw, reduction="mean")
    assert mean == pytest.approx(total / sw.sum(), rel=1e-14)
    z, tb = sigmoid_inputs(rng, (12,), np.float64)
    swb = rng.uniform(0.5, 2.0, size=12)
    total = SIGMOID(z, tb, class_weight=[0.5, 3.0], sample_weight=swb, reduction="sum")
    mean = SIGMOID(z, tb, class_weight=[0.5, 3.0], sample_weight=swb, reduction="mean")
    assert mean == pytest.approx(total / np.sum(swb * (0.5 * (1 - tb) + 3.0 * tb)), rel=1e-14)


def test_empty_inputs():
    assert SIGMOID(np.zeros(0), np.zeros(0)).shape == (0,)
    assert math.isnan(SIGMOID(np.zeros(0), np.zeros(0), reduction="mean"))
    assert SIGMOID(np.zeros(0), np.zeros(0), reduction="sum") == 0.0
    x = np.zeros((0, 4))
    y = np.zeros(0, dtype=np.int64)
    assert SOFTMAX(x, y).shape == (0,)
    assert SOFTMAX.grad(x, y).shape == (0, 4)
    assert math.isnan(SOFTMAX(x, y, reduction="mean"))
    # Every row ignored: the mean has an empty denominator.
    assert math.isnan(SOFTMAX(np.zeros((2, 3)), np.array([-100, -100]), reduction="mean"))


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


def test_label_out_of_range_names_target_and_position():
    x = np.zeros((5, 5))
    y = np.array([0, 1, 2, 7, 4])
    with pytest.raises(ValueError, match=r"target.*\b7\b.*\(3,\)"):
        SOFTMAX(x, y)
    with pytest.raises(ValueError, match=r"target.*-1.*\(1,\)"):
        SOFTMAX(x, np.array([0, -1, 2, 3, 4]))
    with pytest.raises(ValueError, match=r"target.*\b5\b.*\(1, 0\)"):
        SOFTMAX(np.zeros((2, 2, 5)), np.array([[0, 1], [5, 0]]))
    # ignore_index is not out of range, but -100 is once ignore_index is changed.
    SOFTMAX(x, np.array([0, -100, 2, 3, 4]))
    with pytest.raises(ValueError, match="target"):
        SOFTMAX(x, np.array([0, -100, 2, 3, 4]), ignore_index=-1)
    for method in (SOFTMAX.grad, SOFTMAX.grad_hess, SOFTMAX.value_and_grad):
        with pytest.raises(ValueError, match="target"):
            method(x, y)


def test_huge_labels_are_not_wrapped():
    """Labels beyond the int32 range are out of range, not reduced modulo 2**32."""
    x = np.zeros((4, 5))
    with pytest.raises(ValueError, match=r"target.*4294967297"):
        SOFTMAX(x, np.array([0, 1, 2**32 + 1, 3], dtype=np.int64))
    with pytest.raises(ValueError, match="target"):
        SOFTMAX(x, np.array([0, 1, 2**63 + 1, 3], dtype=np.uint64))
    # An ignore_index that the target dtype cannot hold ignores nothing.
    y8 = np.array([0, 1, 2, 3], dtype=np.int8)
    same_as = SOFTMAX(x + np.arange(5), y8.astype(np.int64))
    assert same(SOFTMAX(x + np.arange(5), y8, ignore_index=2**40), same_as)
    assert same(SOFTMAX(x + np.arange(5), y8.astype(np.uint8), ignore_index=256), same_as)


def test_huge_uint64_label_message():
    with pytest.raises(ValueError, match="9223372036854775809"):
        SOFTMAX(np.zeros((4, 5)), np.array([0, 1, 2**63 + 1, 3], dtype=np.uint64))
    try:
        SOFTMAX(np.zeros((4, 5)), np.array([0, 1, 2**63 + 1, 3], dtype=np.uint64))
    except ValueError as e:
        assert "-9223372036854775807" not in str(e)


def test_wrong_target_shape():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="target"):
        SOFTMAX(x, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="target"):
        SOFTMAX(x, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="target"):
        SOFTMAX(x, np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(ValueError):
        SIGMOID(np.zeros((4, 3)), np.zeros((4, 2)))


def test_zero_classes():
    with pytest.raises(ValueError):
        SOFTMAX(np.zeros((3, 0)), np.array([0, 0, 0]))
    with pytest.raises(ValueError):
        SOFTMAX.grad_hess(np.zeros((3, 0)), np.zeros((3, 0)))


def test_out_checked():
    x = np.zeros((4, 3))
    y = np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match="out"):
        SOFTMAX(x, y, out=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="grad_out"):
        SOFTMAX.value_and_grad(x, y, grad_out=np.zeros(4))
    with pytest.raises(ValueError, match="hess_out"):
        SOFTMAX.grad_hess(x, y, hess_out=np.zeros((3, 4)))
    with pytest.raises((TypeError, ValueError), match="out"):
        SOFTMAX(x, y, out=np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="out"):
        SIGMOID(np.zeros(4), np.zeros(4), out=np.zeros(5))
    with pytest.raises(ValueError, match="out"):
        SOFTMAX(x, y, reduction="sum", out=np.zeros(4))
    read_only = np.zeros(4)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        SOFTMAX(x, y, out=read_only)
    with pytest.raises(ValueError, match="out"):
        SOFTMAX.grad(x, y, out=x)  # overlaps logits
    with pytest.raises(ValueError, match="hess_out"):
        SOFTMAX.grad_hess(x, y, hess_out=x)
    z = np.zeros(4)
    with pytest.raises(ValueError, match="out"):
        SIGMOID(z, np.ones(4), out=z)


def test_probabilities_outside_unit_interval():
    # The first argument is named as DESIGN.md names it (logits), though it holds probabilities.
    with pytest.raises(ValueError, match=r"^logits .*; got 1\.5 at index \(1,\)$"):
        SIGMOID(np.array([0.5, 1.5]), np.array([1.0, 0.0]), from_logits=False)
    for loss in (SIGMOID, fl.sigmoid_focal, fl.sigmoid_power_cross_entropy):
        with pytest.raises(TypeError, match="^logits must hold real numbers"):
            loss(np.array([0.5, 1 + 2j]), np.array([1.0, 0.0]), from_logits=False)
    with pytest.raises(ValueError, match="^logits"):
        SIGMOID.grad_hess(np.array([-0.1, 0.5]), np.array([1.0, 0.0]), from_logits=False)
    with pytest.raises(ValueError, match="logits"):
        SOFTMAX(np.array([[0.5, -0.5]]), np.array([0]), from_logits=False)
    with pytest.raises(ValueError, match="logits"):
        SOFTMAX.grad(np.array([[0.5, 2.0]]), np.array([0]), from_logits=False)


@pytest.mark.parametrize("eps", [-0.1, 1.5, math.nan, math.inf])
def test_bad_label_smoothing(eps):
    with pytest.raises(ValueError, match="label_smoothing"):
        SIGMOID(np.zeros(2), np.zeros(2), label_smoothing=eps)
    with pytest.raises(ValueError, match="label_smoothing"):
        SOFTMAX(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=eps)


def test_label_smoothing_bounds_accepted():
    for eps in (0.0, 1.0):
        SIGMOID(np.zeros(2), np.zeros(2), label_smoothing=eps)
        SOFTMAX(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=eps)
    # eps = 1: the uniform target, whatever the label.
    x = np.random.default_rng(14).normal(size=(3, 4))
    np.testing.assert_allclose(SOFTMAX(x, np.array([0, 1, 3]), label_smoothing=1.0),
                               SOFTMAX(x, np.full((3, 4), 0.25)), rtol=1e-14)


def test_bad_hessian_name():
    with pytest.raises(ValueError, match="hessian"):
        SIGMOID.grad_hess(np.zeros(2), np.zeros(2), hessian="newton")
    with pytest.raises(ValueError, match="hessian"):
        SOFTMAX.grad_hess(np.zeros((2, 3)), np.array([0, 1]), hessian="newton")
    # The gradient-boosting conventions are multiclass only.
    with pytest.raises(ValueError, match="hessian"):
        SIGMOID.grad_hess(np.zeros(2), np.zeros(2), hessian="xgboost")


def test_unknown_keyword():
    for loss, args in ((SIGMOID, (np.zeros(2), np.zeros(2))),
                       (SOFTMAX, (np.zeros((2, 3)), np.array([0, 1])))):
        for method in (loss, loss.grad, loss.value_and_grad, loss.grad_hess):
            with pytest.raises(TypeError):
                method(*args, not_a_parameter=1)
    with pytest.raises(TypeError):
        SIGMOID(np.zeros(2), np.zeros(2), ignore_index=3)  # a softmax-only option
    with pytest.raises(TypeError):
        SOFTMAX(np.zeros((2, 3)), np.array([0, 1]), pos_weight=2.0)  # a sigmoid-only option


def test_bad_class_weight():
    x = np.zeros((2, 3))
    y = np.array([0, 1])
    with pytest.raises(ValueError, match="class_weight"):
        SOFTMAX(x, y, class_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="class_weight"):
        SOFTMAX(x, y, class_weight="sometimes")
    with pytest.raises(ValueError, match="class_weight"):
        SOFTMAX(x, y, class_weight={5: 1.0})
    with pytest.raises(ValueError, match="class_weight"):
        SIGMOID(np.zeros(2), np.zeros(2), class_weight=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("bad", [np.array([1 + 5j, 1.0, 1.0]), ["a", "b", "c"],
                                 {0: "a"}, {1: None}, {2: 1j}, {0: np.ones(2)}])
def test_class_weight_of_non_real_numbers_is_a_type_error(bad):
    x = np.zeros((2, 3))
    y = np.array([0, 1])
    with pytest.raises(TypeError, match="class_weight"):
        SOFTMAX(x, y, class_weight=bad)
    with pytest.raises(TypeError, match="class_weight"):
        fl.softmax_focal(x, y, class_weight=bad)


def test_class_weight_dict_values_are_any_real_scalar():
    import fractions

    x = np.array([[0.3, -1.0, 2.0], [1.0, 0.0, -0.5]])
    y = np.array([0, 2])
    want = SOFTMAX(x, y, class_weight=[2.0, 1.0, 0.5], reduction="sum")
    for w0, w2 in [(np.array(2.0), np.float32(0.5)), (2, fractions.Fraction(1, 2)),
                   (np.int8(2), 0.5)]:
        assert SOFTMAX(x, y, class_weight={0: w0, 2: w2}, reduction="sum") == want


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("from_logits", [True, False])
def test_sigmoid_default_parameters_take_the_same_bits_as_explicit_ones(dtype, from_logits,
                                                                        isa):
    # The defaults (pos_weight None, no class weights, no smoothing, natural log) run a loop
    # of their own; spelling the same parameters out takes the general one. Soft targets,
    # every mode, both Hessian policies that differ.
    rng = np.random.default_rng(7)
    n = 10_007
    x = (rng.random(n) if not from_logits else rng.standard_normal(n) * 6).astype(dtype)
    t = rng.random(n).astype(dtype)
    t[::3] = np.round(t[::3])
    x[5] = np.nan
    t[7] = np.nan
    w = rng.uniform(0.0, 3.0, n).astype(dtype)
    # An array pos_weight of ones takes the general loop (only a scalar 1 or None is known
    # to be 1; class_weight [1, 1] alone would still take the plain one, and with a NaN
    # target it makes the mean's denominator NaN, a different matter).
    general = dict(pos_weight=np.ones(n, dtype))
    kw = dict(from_logits=from_logits)
    for extra in ({}, {"sample_weight": w}, {"nan_policy": "omit"},
                  {"sample_weight": w, "nan_policy": "omit"}):
        for reduction in ("none", "sum", "mean"):
            a = SIGMOID(x, t, reduction=reduction, **kw, **extra)
            b = SIGMOID(x, t, reduction=reduction, **kw, **extra, **general)
            np.testing.assert_array_equal(a, b)
        for hessian in ("exact", "fisher", "clip", "abs"):
            a = SIGMOID.grad_hess(x, t, reduction="mean", hessian=hessian, **kw, **extra)
            b = SIGMOID.grad_hess(x, t, reduction="mean", hessian=hessian, **kw, **extra,
                                  **general)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
        a = SIGMOID.value_and_grad(x, t, reduction="mean", **kw, **extra)
        b = SIGMOID.value_and_grad(x, t, reduction="mean", **kw, **extra, **general)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


# --------------------------------------------------------------------------
# nan_policy
# --------------------------------------------------------------------------


def test_sigmoid_nan_policy():
    rng = np.random.default_rng(15)
    z, t = sigmoid_inputs(rng, (20,), np.float64)
    sw = rng.uniform(0.5, 2.0, size=20)
    z[3] = np.nan
    t[11] = np.nan
    bad = np.isnan(z) | np.isnan(t)
    kw = {"pos_weight": 2.0, "class_weight": [0.5, 1.5], "sample_weight": sw}
    v = SIGMOID(z, t, **kw)
    assert np.isnan(v[bad]).all()
    exp = ref.sigmoid_cross_entropy(z, t, **kw)
    assert_close(v, exp[0], 1e-12)
    assert math.isnan(SIGMOID(z, t, reduction="sum", **kw))
    with pytest.raises(ValueError, match="pred|logits"):
        SIGMOID(z, t, nan_policy="raise", **kw)
    with pytest.raises(ValueError, match="target"):
        SIGMOID(np.nan_to_num(z), t, nan_policy="raise", **kw)
    w_nan = sw.copy()
    w_nan[5] = np.nan
    with pytest.raises(ValueError, match="sample_weight"):
        SIGMOID(np.nan_to_num(z), np.nan_to_num(t), nan_policy="raise", pos_weight=2.0,
                sample_weight=w_nan)
    for reduction in REDUCTIONS:
        v = SIGMOID(z, t, nan_policy="omit", reduction=reduction, **kw)
        g, h = SIGMOID.grad_hess(z, t, nan_policy="omit", reduction=reduction, **kw)
        keep = ~bad
        exp = ref.sigmoid_cross_entropy(z[keep], t[keep], reduction=reduction, pos_weight=2.0,
                                        class_weight=[0.5, 1.5], sample_weight=sw[keep])
        if reduction == "none":
            assert np.all(v[bad] == 0.0)
            assert_close(v[keep], exp[0], 1e-12)
        else:
            assert v == pytest.approx(exp[0], rel=1e-12)
        assert np.all(g[bad] == 0.0) and np.all(h[bad] == 0.0)
        assert_close(g[keep], exp[1], 1e-12)
        assert_close(h[keep], exp[2], 1e-12)


@pytest.mark.parametrize("target", ["index", "prob"])
def test_softmax_nan_policy(target):
    rng = np.random.default_rng(16)
    x, t = softmax_inputs(rng, 10, 4, np.float64, target)
    sw = rng.uniform(0.5, 2.0, size=10)
    x[2, 1] = np.nan
    bad = np.zeros(10, dtype=bool)
    bad[2] = True
    if target == "prob":
        t[6, 0] = np.nan
        bad[6] = True
    kw = {"class_weight": np.array([1.0, 2.0, 0.5, 1.5]), "sample_weight": sw,
          "label_smoothing": 0.1}
    v = SOFTMAX(x, t, **kw)
    assert np.isnan(v[bad]).all() and not np.isnan(v[~bad]).any()
    exp = ref.softmax_cross_entropy(x[~bad], t[~bad], class_weight=kw["class_weight"],
                                    sample_weight=sw[~bad], label_smoothing=0.1)
    assert_close(v[~bad], exp[0], 1e-12)
    assert math.isnan(SOFTMAX(x, t, reduction="mean", **kw))
    with pytest.raises(ValueError, match="logits"):
        SOFTMAX(x, t, nan_policy="raise", **kw)
    if target == "prob":
        with pytest.raises(ValueError, match="target"):
            SOFTMAX(np.nan_to_num(x), t, nan_policy="raise", **kw)
    for reduction in REDUCTIONS:
        v = SOFTMAX(x, t, nan_policy="omit", reduction=reduction, **kw)
        g, h = SOFTMAX.grad_hess(x, t, nan_policy="omit", reduction=reduction, **kw)
        exp = ref.softmax_cross_entropy(x[~bad], t[~bad], reduction=reduction,
                                        class_weight=kw["class_weight"], sample_weight=sw[~bad],
                                        label_smoothing=0.1)
        if reduction == "none":
            assert np.all(v[bad] == 0.0)
            assert_close(v[~bad], exp[0], 1e-12)
        else:
            assert v == pytest.approx(exp[0], rel=1e-12)
        assert np.all(g[bad] == 0.0) and np.all(h[bad] == 0.0)
        assert_close(g[~bad], exp[1], 1e-12)
        assert_close(h[~bad], exp[2], 1e-12)


@pytest.mark.parametrize("loss", [SIGMOID, SOFTMAX], ids=["sigmoid", "softmax"])
def test_bad_nan_policy(loss):
    args = (np.zeros(2), np.zeros(2)) if loss is SIGMOID else (np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="nan_policy"):
        loss(*args, nan_policy="ignore")


@pytest.mark.parametrize("where", ["sigmoid_target", "sigmoid_weight", "softmax_prob_target",
                                   "softmax_weight"])
def test_nan_omit_with_balanced_class_weight(where):
    rng = np.random.default_rng(19)
    if where.startswith("sigmoid"):
        z, t = sigmoid_inputs(rng, (12,), np.float64)
        sw = rng.uniform(0.5, 2.0, size=12)
        (t if where == "sigmoid_target" else sw)[4] = np.nan
        keep = np.arange(12) != 4
        v = SIGMOID(z, t, sample_weight=sw, class_weight="balanced", nan_policy="omit")
        want = ref.sigmoid_cross_entropy(z[keep], t[keep], sample_weight=sw[keep],
                                         class_weight="balanced")[0]
    else:
        target = "prob" if where == "softmax_prob_target" else "index"
        x, t = softmax_inputs(rng, 12, 4, np.float64, target)
        sw = rng.uniform(0.5, 2.0, size=12)
        if target == "prob":
            t[6, 1] = np.nan
        else:
            sw[6] = np.nan
        keep = np.arange(12) != 6
        v = SOFTMAX(x, t, sample_weight=sw, class_weight="balanced", nan_policy="omit")
        want = ref.softmax_cross_entropy(x[keep], t[keep], sample_weight=sw[keep],
                                         class_weight="balanced")[0]
    assert not np.isnan(v[keep]).any(), "kept samples have NaN losses"
    assert_close(v[keep], want, 1e-12)


# --------------------------------------------------------------------------
# Hessian policies
# --------------------------------------------------------------------------


@pytest.mark.parametrize("hessian", ["exact", "clip", "abs", "fisher"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sigmoid_hessian_policies(hessian, reduction):
    rng = np.random.default_rng(seed_of("sighess", hessian, reduction))
    z = rng.normal(0.0, 6.0, size=(30,))
    t = binary_targets(rng, (30,))
    sw = rng.uniform(0.5, 2.0, size=30)
    kw = {"reduction": reduction, "sample_weight": sw, "label_smoothing": 0.1, "log_base": 2,
          "class_weight": [0.5, 2.0]}
    floor = 0.02
    g, h = SIGMOID.grad_hess(z, t, hessian=hessian, hess_floor=floor, **kw)
    exp = ref.sigmoid_cross_entropy(z, t, hessian=hessian, hess_floor=floor, **kw)
    assert_close(g, exp[1], 1e-12, "grad")
    assert_close(h, exp[2], 1e-12, "hess")
    if hessian == "clip":
        assert np.any(ref.sigmoid_ce_terms(z, t, label_smoothing=0.1, log_base=2)[2] < floor)


def test_sigmoid_fisher_is_logistic_variance():
    """The expected Hessian of the logistic likelihood w.r.t. the logit is sigmoid(z) sigmoid(-z)."""
    z = np.linspace(-8, 8, 33)
    t = (z > 0.3).astype(np.float64)
    _, h = SIGMOID.grad_hess(z, t, hessian="fisher")
    np.testing.assert_allclose(h, ref.sigmoid(z) * ref.sigmoid(-z), rtol=1e-13)


@pytest.mark.parametrize("hessian", ["exact", "abs", "fisher", "xgboost", "lightgbm"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["sw_none", "sw_array"])
def test_softmax_hessian_policies(hessian, reduction, weighted):
    rng = np.random.default_rng(seed_of("smhess", hessian, reduction, weighted))
    x, y = softmax_inputs(rng, 12, 6, np.float64, ignore=-100)
    kw = {"reduction": reduction, "class_weight": rng.uniform(0.5, 2.0, 6),
          "label_smoothing": 0.1, "log_base": 10}
    if weighted:
        kw["sample_weight"] = rng.uniform(0.5, 2.0, 12)
    g, h = SOFTMAX.grad_hess(x, y, hessian=hessian, **kw)
    g0, h0 = SOFTMAX.grad_hess(x, y, **kw)
    exp = ref.softmax_cross_entropy(x, y, hessian=hessian, **kw)
    assert same(g, g0)
    assert_close(h, exp[2], 1e-12, "hess")
    if hessian != "fisher":  # fisher: the expected Hessian, checked against the reference above
        factor = {"xgboost": 2.0, "lightgbm": 6.0 / 5.0}.get(hessian, 1.0)
        np.testing.assert_allclose(h, factor * h0, rtol=1e-15)


def test_softmax_fisher_does_not_depend_on_the_label():
    """The expected Hessian averages over the model's classes: the true label drops out."""
    x = np.array([[0.3, -0.2, 1.1]])
    cw = np.array([1.0, 9.0, 2.0])
    hs = [SOFTMAX.grad_hess(x, np.array([y]), class_weight=cw, hessian="fisher")[1]
          for y in range(3)]
    np.testing.assert_allclose(hs[0], hs[1], rtol=1e-12)
    np.testing.assert_allclose(hs[0], hs[2], rtol=1e-12)
    p = np.exp(x - x.max())
    p /= p.sum()
    np.testing.assert_allclose(hs[0], np.sum(cw * p) * p * (1 - p), rtol=1e-12)


def test_softmax_probability_hessian_policies():
    """from_logits=False: "abs" is the exact c q / p^2; "fisher" its expectation c q(p) / p^2."""
    rng = np.random.default_rng(20)
    p = rng.uniform(0.05, 1.0, size=(6, 4))
    y = index_targets(rng, 6, 4)
    exact = SOFTMAX.grad_hess(p, y, from_logits=False, label_smoothing=0.1)[1]
    assert_close(exact, ref.softmax_cross_entropy(p, y, from_logits=False, label_smoothing=0.1)[2],
                 1e-12)
    assert same(SOFTMAX.grad_hess(p, y, from_logits=False, label_smoothing=0.1,
                                  hessian="abs")[1], exact)
    fisher = SOFTMAX.grad_hess(p, y, from_logits=False, label_smoothing=0.1, hessian="fisher")[1]
    assert_close(fisher, ref.softmax_cross_entropy(p, y, from_logits=False, label_smoothing=0.1,
                                                   hessian="fisher")[2], 1e-12)
    # The textbook case: the expected Hessian is 1/p_k on every class (no zeros).
    h = SOFTMAX.grad_hess(np.array([[0.5, 0.4, 0.1]]), np.array([0]), from_logits=False,
                          hessian="fisher")[1]
    np.testing.assert_allclose(h, [[2.0, 2.5, 10.0]], rtol=1e-12)


def test_softmax_clip_policy_unweighted():
    rng = np.random.default_rng(17)
    x = rng.normal(0.0, 6.0, size=(10, 5))
    y = index_targets(rng, 10, 5)
    _, h = SOFTMAX.grad_hess(x, y, hessian="clip", hess_floor=0.01)
    exp = ref.softmax_cross_entropy(x, y, hessian="clip", hess_floor=0.01)
    assert np.any(ref.softmax_cross_entropy(x, y)[2] < 0.01)
    assert_close(h, exp[2], 1e-12, "hess")


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_softmax_clip_policy_weighted(reduction):
    rng = np.random.default_rng(18)
    x = rng.normal(0.0, 6.0, size=(10, 5))
    y = index_targets(rng, 10, 5)
    sw = rng.uniform(0.5, 2.0, size=10)
    sw[4] = 0.0
    _, h = SOFTMAX.grad_hess(x, y, hessian="clip", hess_floor=0.01, sample_weight=sw,
                             reduction=reduction)
    exp = ref.softmax_cross_entropy(x, y, hessian="clip", hess_floor=0.01, sample_weight=sw,
                                    reduction=reduction)
    assert np.all(h[4] == 0.0), "a row of weight 0 has a non-zero Hessian"
    assert_close(h, exp[2], 1e-12, "hess")


def test_lightgbm_needs_two_classes():
    with pytest.raises(ValueError):
        SOFTMAX.grad_hess(np.zeros((3, 1)), np.array([0, 0, 0]), hessian="lightgbm")


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "softmax_focal"])
@dtype_param
def test_masked_logits_with_probability_targets(loss, dtype):
    """Logits of -inf (masked classes) where the probability target is 0: 0 log 0 = 0, so the
    one-hot row gives what its class index gives (it was NaN from 0 * -inf)."""
    f = getattr(fl, loss)
    x = np.array([[0.0, -np.inf, 1.0, -np.inf], [2.0, -np.inf, -1.0, 0.5]], dtype=dtype)
    y = np.array([0, 1])
    onehot = np.eye(4, dtype=dtype)[y]
    kw = {"gamma": 2.0} if loss == "softmax_focal" else {"class_weight": [1.0, 2.0, 0.5, 1.5]}
    v_idx, v_prob = f(x, y, **kw), f(x, onehot, **kw)
    assert np.isfinite(v_idx[0]) and v_idx[1] == np.inf  # row 2's label is a masked class
    assert v_prob[1] == np.inf
    np.testing.assert_allclose(v_prob[0], v_idx[0], rtol=1e-6)
    g_idx, g_prob = f.grad(x[:1], y[:1], **kw), f.grad(x[:1], onehot[:1], **kw)
    assert np.all(np.isfinite(g_prob))
    np.testing.assert_allclose(g_prob, g_idx, rtol=1e-6, atol=1e-7)
    assert g_prob[0, 1] == 0 and g_prob[0, 3] == 0


@pytest.mark.parametrize("ig", [2**53 + 1, 2**63 - 1])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "softmax_focal", "multiclass_hinge",
                                  "crcnn_ranking"])
def test_huge_ignore_index_is_ignored(loss, ig):
    """An ignore_index beyond 2^53 (not exact as a double) still ignores its rows: value 0 and a
    zero gradient row, never a read or write at that index."""
    f = getattr(fl, loss)
    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -2.0]])
    y = np.array([ig, 0], dtype=np.int64)
    v, g = f.value_and_grad(x, y, ignore_index=ig)
    assert v[0] == 0 and np.all(g[0] == 0)
    v1, g1 = f.value_and_grad(x[1:], y[1:], ignore_index=ig)
    np.testing.assert_array_equal(v[1:], v1)
    np.testing.assert_array_equal(g[1:], g1)


@dtype_param
def test_nan_row_longer_than_a_chunk_is_all_nan(dtype):
    """A NaN in a row of two softmax chunks makes the whole gradient and Hessian row NaN, also
    where the rest of the row is a confident one."""
    x = np.zeros((1, 3000), dtype=dtype)
    x[0, 0] = 30
    x[0, 2500] = np.nan
    g, h = SOFTMAX.grad_hess(x, np.array([0]))
    assert np.all(np.isnan(g)) and np.all(np.isnan(h))
    assert np.isnan(SOFTMAX(x, np.array([0]))[0])


@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.7])
@dtype_param
def test_focal_label_on_masked_logit(gamma, dtype):
    """The label's logit is -inf: the loss is inf, and the gradient is finite (p_y = 0, so phi
    = 1 and the row's gradient is p - onehot, as softmax_cross_entropy's)."""
    for k in (4, 100, 3000):
        x = np.zeros((1, k), dtype=dtype)
        x[0, 1] = -np.inf
        x[0, 2] = 1.0
        y = np.array([1])
        assert fl.softmax_focal(x, y, gamma=gamma)[0] == np.inf
        g, h = fl.softmax_focal.grad_hess(x, y, gamma=gamma)
        assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
        np.testing.assert_allclose(g, SOFTMAX.grad(x, y), rtol=1e-5, atol=1e-7)


def test_zero_weight_class_with_masked_logit():
    """A class of weight 0 whose logit is -inf adds nothing (0, not 0 * inf = NaN), on the
    confident path and the other alike, as in softmax_focal with gamma = 0."""
    cw = [1.0, 0.0, 1.0, 1.0]
    t = np.array([[0.5, 0.5, 0.0, 0.0]])
    for x in ([[0.0, -np.inf, 1.0, 0.5]], [[0.0, -np.inf, 1.0, 0.9]], [[5.0, -np.inf, 1.0, 0.9]]):
        x = np.array(x)
        v = SOFTMAX(x, t, class_weight=cw)
        assert np.isfinite(v[0])
        np.testing.assert_allclose(v, fl.softmax_focal(x, t, gamma=0.0, class_weight=cw),
                                   rtol=1e-12)
    x = np.array([[0.0, -np.inf, 1.0, 0.9]])
    v = SOFTMAX(x, np.array([0]), class_weight=cw, label_smoothing=0.1)
    np.testing.assert_allclose(v, fl.softmax_focal(x, np.array([0]), gamma=0.0, class_weight=cw,
                                                   label_smoothing=0.1), rtol=1e-12)


@pytest.mark.parametrize("loss", [fl.softmax_cross_entropy, fl.softmax_focal],
                         ids=["softmax_cross_entropy", "softmax_focal"])
@pytest.mark.parametrize("dtype, lo", [(np.float32, -87.33654), (np.float64, -708.39642)])
def test_softmax_rows_near_the_exp_range_edge_agree(loss, dtype, lo):
    """A row whose logits span less than the normal range of exp(x - max) takes the exp
    without its underflow clamp; one that spans more takes the clamped exp. Two rows that
    differ only in one logit whose term underflows (below the float64 sum's last bit either
    way) must give the same bits everywhere else, whichever exp each row took."""
    rng = np.random.default_rng(11)
    K, pos, y = 100, 37, 5
    base = rng.standard_normal(K).astype(dtype)
    base[y] = 3.0
    rows = []
    for gap in (lo + 1.5, lo + 0.7, lo - 0.2, lo - 5.0, -1e4):  # x[pos] - max(x)
        r = base.copy()
        r[pos] = dtype(3.0 + gap)
        rows.append(r)
    x = np.stack(rows)
    labels = np.full(len(rows), y)
    v, g = loss.value_and_grad(x, labels)
    h = loss.grad_hess(x, labels)[1]
    keep = np.arange(K) != pos
    for k in range(1, len(rows)):
        assert v[k] == v[0]
        np.testing.assert_array_equal(g[k, keep], g[0, keep])
        np.testing.assert_array_equal(h[k, keep], h[0, keep])
    assert np.all(np.isfinite(g)) and np.all(g[:, pos] >= 0) and np.all(h[:, pos] >= 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K", [8, 13, 100, 101])
def test_softmax_short_and_general_rows_same_gradient_bits(dtype, K):
    """Integer labels without class weights take the short row routine (rows two at a time);
    class weights of ones take the general one. The gradient is rounded the same way on both
    (labels in the last, overlapping vector included); the value may differ in its last bits
    (log S from the vector log on the short way)."""
    rng = np.random.default_rng(K)
    x = (rng.standard_normal((65, K)) * 3).astype(dtype)  # an odd count: one row alone
    y = np.r_[np.full(20, K - 1), np.zeros(5, np.int64), rng.integers(0, K, 40)]
    v1, g1 = SOFTMAX.value_and_grad(x, y)
    v2, g2 = SOFTMAX.value_and_grad(x, y, class_weight=np.ones(K))
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_allclose(v1, v2, rtol=4 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K", [8, 13, 100, 101])
def test_softmax_label_entry_rounds_as_the_other_entries(dtype, K):
    """With label smoothing the gradient entry of class k is e_k ga - gc, rounded in the
    compute type, whether or not k is the label; at the label it is then lowered by 1 - eps
    in float64 (reduction "none": the scale is 1). So the label's entry must equal that of
    another label's row at the same class, minus 0.9, rounded once: whatever the compiler
    contracts, both entries take the same rounding (labels in the overlapping last vector
    included)."""
    rng = np.random.default_rng(K + 1)
    x = (0.2 * rng.standard_normal((31, K))).astype(dtype)  # no confident rows (S >= 2)
    y = np.r_[np.full(10, K - 1), rng.integers(0, K, 21)]
    y_other = (y + 1 + rng.integers(0, K - 1, y.size)) % K
    assert np.all(y_other != y)
    _, g = SOFTMAX.value_and_grad(x, y, label_smoothing=0.1)
    _, g_other = SOFTMAX.value_and_grad(x, y_other, label_smoothing=0.1)
    rows = np.arange(y.size)
    one_minus_eps = 1.0 - float(dtype(0.1))  # the kernel's eps is in the compute type
    expected = (g_other[rows, y].astype(np.float64) - one_minus_eps).astype(dtype)
    np.testing.assert_array_equal(g[rows, y], expected)
