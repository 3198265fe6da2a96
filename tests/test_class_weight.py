"""Class weights: fl.class_weight, fl.ClassCounts, and class_weight= in the
cross-entropy losses against explicit weighting."""

from __future__ import annotations

import fastloss as fl
import numpy as np
import pytest
import reference_ce as ref

SIGMOID = fl.sigmoid_cross_entropy
SOFTMAX = fl.softmax_cross_entropy
REDUCTIONS = ("none", "sum", "mean")


def all_outputs(loss, *args, **kwargs):
    """(value, grad, hess) from one call each."""
    v, g = loss.value_and_grad(*args, **kwargs)
    _, h = loss.grad_hess(*args, **kwargs)
    return v, g, h


def assert_outputs_close(a, b, rtol=1e-13):
    for x, y, what in zip(a, b, ("value", "grad", "hess")):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-15, err_msg=what)


# --------------------------------------------------------------------------
# fl.class_weight
# --------------------------------------------------------------------------


def test_balanced_hand_computed():
    # counts (1, 3, 1), n = 5, K = 3: n / (K n_c) = (5/3, 5/9, 5/3).
    w = fl.class_weight([0, 1, 1, 2, 1], "balanced")
    assert w.dtype == np.float64
    np.testing.assert_allclose(w, [5 / 3, 5 / 9, 5 / 3], rtol=1e-15)
    # The default mode is "balanced".
    np.testing.assert_array_equal(fl.class_weight(np.array([0, 1, 1, 2, 1])), w)


def test_auto_hand_computed():
    # 1 / n_c = (1, 1/3, 1), summing to 7/3; scaled to sum to K = 3: (9/7, 3/7, 9/7).
    w = fl.class_weight([0, 1, 1, 2, 1], "auto")
    np.testing.assert_allclose(w, [9 / 7, 3 / 7, 9 / 7], rtol=1e-15)
    assert w.sum() == pytest.approx(3.0, rel=1e-15)


def test_weighted_counts_hand_computed():
    # Weighted counts (2, 1): n = 3, balanced = 3 / (2 * (2, 1)) = (3/4, 3/2).
    w = fl.class_weight([0, 1, 1], "balanced", sample_weight=[2.0, 0.5, 0.5])
    np.testing.assert_allclose(w, [0.75, 1.5], rtol=1e-15)
    # auto: 1 / (2, 1) = (1/2, 1) summing to 3/2, scaled to sum to 2: (2/3, 4/3).
    w = fl.class_weight([0, 1, 1], "auto", sample_weight=np.array([2.0, 0.5, 0.5]))
    np.testing.assert_allclose(w, [2 / 3, 4 / 3], rtol=1e-15)


def test_integer_sample_weights_equal_repeats():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, size=200)
    y[:5] = np.arange(5)
    reps = rng.integers(1, 4, size=200)
    for mode in ("balanced", "auto"):
        np.testing.assert_allclose(fl.class_weight(y, mode, sample_weight=reps.astype(float)),
                                   fl.class_weight(np.repeat(y, reps), mode), rtol=1e-14)


def test_n_classes_and_ignore_index():
    np.testing.assert_allclose(fl.class_weight([1, 0, 1, 1], n_classes=2), [2.0, 2 / 3])
    # Ignored labels are not counted.
    np.testing.assert_allclose(fl.class_weight([0, 1, -100, 1, -100], ignore_index=-100),
                               [1.5, 0.75], rtol=1e-15)
    np.testing.assert_allclose(
        fl.class_weight([0, 1, 7, 1], sample_weight=[1.0, 1.0, 50.0, 1.0], ignore_index=7),
        [1.5, 0.75], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64])
def test_label_dtypes(dtype):
    y = np.array([0, 1, 1, 2, 1], dtype=dtype)
    np.testing.assert_allclose(fl.class_weight(y), [5 / 3, 5 / 9, 5 / 3], rtol=1e-15)


def test_missing_class():
    with pytest.raises(ValueError, match="class"):
        fl.class_weight([0, 2, 2])  # class 1 absent
    with pytest.raises(ValueError, match="class"):
        fl.class_weight([0, 1, 1], n_classes=3)  # class 2 absent
    with pytest.raises(ValueError):
        fl.class_weight([0, 1, 1], "auto", n_classes=3)
    with pytest.raises(ValueError):
        fl.class_weight([0, 1, 1], sample_weight=[0.0, 1.0, 1.0])  # class 0 weighs nothing
    with pytest.raises(ValueError):
        fl.ClassCounts(3).update([0, 1]).class_weight("balanced")


def test_bad_input():
    with pytest.raises(ValueError):
        fl.class_weight([0, 1], mode="sometimes")
    with pytest.raises(ValueError):
        fl.class_weight([0, 1, -1])  # negative label
    with pytest.raises(ValueError):
        fl.class_weight([0, 1, 3], n_classes=3)  # label beyond n_classes
    with pytest.raises(TypeError):
        fl.class_weight(np.array([0.5, 1.0]))  # not class labels


@pytest.mark.parametrize("k", [2, 3, 7, 20])
def test_matches_sklearn(k):
    sklearn_cw = pytest.importorskip("sklearn.utils.class_weight")
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, size=500)
    y[:k] = np.arange(k)
    y[-50:] = 0  # imbalance
    expected = sklearn_cw.compute_class_weight("balanced", classes=np.arange(k), y=y)
    np.testing.assert_allclose(fl.class_weight(y, "balanced"), expected, rtol=1e-14)
    np.testing.assert_allclose(fl.class_weight(y, "balanced", n_classes=k), expected, rtol=1e-14)


def test_matches_sklearn_weighted():
    sklearn_cw = pytest.importorskip("sklearn.utils.class_weight")
    import inspect

    if "sample_weight" not in inspect.signature(sklearn_cw.compute_class_weight).parameters:
        pytest.skip("this scikit-learn has no sample_weight in compute_class_weight")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=300)
    y[:4] = np.arange(4)
    sw = rng.uniform(0.1, 3.0, size=300)
    expected = sklearn_cw.compute_class_weight("balanced", classes=np.arange(4), y=y,
                                               sample_weight=sw)
    np.testing.assert_allclose(fl.class_weight(y, "balanced", sample_weight=sw), expected,
                               rtol=1e-13)


# --------------------------------------------------------------------------
# fl.ClassCounts
# --------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("n_classes", [None, 6])
def test_class_counts_chunks_equal_one_shot(n_classes, weighted):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 6, size=1000)
    y[::97] = -100
    y[:6] = np.arange(6)
    sw = rng.uniform(0.5, 2.0, size=1000) if weighted else None
    cc = fl.ClassCounts(n_classes, ignore_index=-100)
    bounds = [0, 1, 2, 50, 51, 400, 999, 1000]
    for a, b in zip(bounds[:-1], bounds[1:]):
        cc.update(y[a:b], None if sw is None else sw[a:b])
    expected = ref.class_counts(y, 6, sw, ignore_index=-100)
    np.testing.assert_allclose(cc.counts, expected, rtol=1e-13)
    if not weighted:
        np.testing.assert_array_equal(cc.counts, expected)
    for mode in ("balanced", "auto"):
        one_shot = fl.class_weight(y, mode, n_classes=n_classes, sample_weight=sw, ignore_index=-100)
        np.testing.assert_allclose(cc.class_weight(mode), one_shot, rtol=1e-13)
        np.testing.assert_allclose(one_shot, ref.weights_from_counts(expected, mode), rtol=1e-13)


def test_class_counts_grows_and_empty_chunks():
    cc = fl.ClassCounts()
    cc.update([0, 1, 1])
    cc.update(np.array([], dtype=np.int64))
    cc.update([3])  # class 3 seen only now, class 2 never
    np.testing.assert_array_equal(cc.counts, [1.0, 2.0, 0.0, 1.0])
    with pytest.raises(ValueError):
        cc.class_weight("balanced")
    cc.update([2, 2])
    np.testing.assert_allclose(cc.class_weight("balanced"), 6 / (4 * np.array([1.0, 2.0, 2.0, 1.0])))


def test_class_counts_2d_chunks_with_weights():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, size=(10, 4))
    y[0, :3] = [0, 1, 2]
    w = rng.uniform(0.5, 1.5, size=(10, 4))
    cc = fl.ClassCounts(3)
    cc.update(y[:5], w[:5]).update(y[5:], w[5:])
    np.testing.assert_allclose(cc.counts, ref.class_counts(y, 3, w), rtol=1e-14)


# --------------------------------------------------------------------------
# class_weight= in the losses equals explicit weighting
# --------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("spec", ["array", "dict"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_softmax_class_weight_is_a_sample_weight(spec, reduction, dtype):
    """Index targets without smoothing: class_weight c is sample_weight c[y]."""
    rng = np.random.default_rng(6)
    k = 5
    x = rng.normal(0, 2, size=(40, k)).astype(dtype)
    y = rng.integers(0, k, size=40)
    y[::9] = -100
    sw = rng.uniform(0.5, 2.0, size=40)
    c = np.array([0.5, 2.0, 1.0, 3.0, 0.25])
    cw = c if spec == "array" else {i: float(v) for i, v in enumerate(c) if v != 1.0}
    got = all_outputs(SOFTMAX, x, y, class_weight=cw, sample_weight=sw, reduction=reduction)
    explicit_w = sw * c[np.where(y < 0, 0, y)]
    want = all_outputs(SOFTMAX, x, y, sample_weight=explicit_w, reduction=reduction)
    assert_outputs_close(got, want, rtol=1e-13 if dtype == np.float64 else 2e-6)


def test_softmax_class_weight_with_probability_targets():
    """One-hot probability targets: the class weight is in the loss (sum and none agree
    with sample_weight c[y]), but the mean divides by sum(sample_weight)."""
    rng = np.random.default_rng(7)
    x = rng.normal(0, 2, size=(30, 4))
    y = rng.integers(0, 4, size=30)
    onehot = np.eye(4)[y]
    c = np.array([0.5, 2.0, 1.0, 3.0])
    sw = rng.uniform(0.5, 2.0, size=30)
    for reduction in ("none", "sum"):
        assert_outputs_close(all_outputs(SOFTMAX, x, onehot, class_weight=c, sample_weight=sw,
                                         reduction=reduction),
                             all_outputs(SOFTMAX, x, y, class_weight=c, sample_weight=sw,
                                         reduction=reduction))
    total = SOFTMAX(x, onehot, class_weight=c, sample_weight=sw, reduction="sum")
    assert SOFTMAX(x, onehot, class_weight=c, sample_weight=sw, reduction="mean") == \
        pytest.approx(total / sw.sum(), rel=1e-14)
    assert SOFTMAX(x, y, class_weight=c, sample_weight=sw, reduction="mean") == \
        pytest.approx(total / np.sum(sw * c[y]), rel=1e-14)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("spec", ["list", "array", "dict"])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_sigmoid_class_weight_is_a_sample_weight(spec, soft, reduction):
    """class_weight [w_neg, w_pos] is the sample weight w_neg (1 - t) + w_pos t."""
    rng = np.random.default_rng(8)
    z = rng.normal(0, 2, size=(20, 3))
    t = (rng.uniform(size=(20, 3)) < 0.3).astype(float)
    if soft:
        t = np.where(rng.uniform(size=t.shape) < 0.3, rng.uniform(size=t.shape), t)
    sw = rng.uniform(0.5, 2.0, size=(20, 3))
    w_neg, w_pos = 0.4, 2.5
    cw = {"list": [w_neg, w_pos], "array": np.array([w_neg, w_pos]), "dict": {0: w_neg, 1: w_pos}}[spec]
    kw = {"pos_weight": np.array([1.0, 2.0, 0.5]), "label_smoothing": 0.1, "reduction": reduction}
    got = all_outputs(SIGMOID, z, t, class_weight=cw, sample_weight=sw, **kw)
    want = all_outputs(SIGMOID, z, t, sample_weight=sw * (w_neg * (1 - t) + w_pos * t), **kw)
    assert_outputs_close(got, want)


def test_sigmoid_partial_dict():
    z = np.array([0.3, -1.2, 2.0, 0.0])
    t = np.array([1.0, 0.0, 1.0, 0.0])
    got = all_outputs(SIGMOID, z, t, class_weight={1: 3.0}, reduction="mean")
    want = all_outputs(SIGMOID, z, t, sample_weight=np.where(t == 1, 3.0, 1.0), reduction="mean")
    assert_outputs_close(got, want)


# --------------------------------------------------------------------------
# "balanced" / "auto" inside the losses
# --------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("mode", ["balanced", "auto"])
@pytest.mark.parametrize("weighted", [False, True], ids=["sw_none", "sw_array"])
def test_softmax_balanced_equals_array(mode, weighted, reduction):
    rng = np.random.default_rng(9)
    k = 6
    x = rng.normal(0, 2, size=(60, k))
    y = rng.integers(0, k, size=60)
    y[:k] = np.arange(k)
    y[-10:] = 2
    y[7::11] = -100
    sw = rng.uniform(0.5, 2.0, size=60) if weighted else None
    c = fl.class_weight(y, mode, n_classes=k, sample_weight=sw, ignore_index=-100)
    kw = {"sample_weight": sw, "reduction": reduction, "label_smoothing": 0.05}
    assert_outputs_close(all_outputs(SOFTMAX, x, y, class_weight=mode, **kw),
                         all_outputs(SOFTMAX, x, y, class_weight=c, **kw))
    # The same through a streamed count.
    cc = fl.ClassCounts(k, ignore_index=-100)
    for a in range(0, 60, 25):
        cc.update(y[a:a + 25], None if sw is None else sw[a:a + 25])
    assert_outputs_close(all_outputs(SOFTMAX, x, y, class_weight=cc.class_weight(mode), **kw),
                         all_outputs(SOFTMAX, x, y, class_weight=c, **kw))


def test_softmax_balanced_probability_targets():
    """Probability targets: counts are the column sums of the targets."""
    rng = np.random.default_rng(10)
    x = rng.normal(0, 2, size=(25, 4))
    t = rng.dirichlet(np.full(4, 0.5), size=25)
    c = ref.weights_from_counts(t.sum(axis=0), "balanced")
    assert_outputs_close(all_outputs(SOFTMAX, x, t, class_weight="balanced", reduction="mean"),
                         all_outputs(SOFTMAX, x, t, class_weight=c, reduction="mean"))
    # One-hot probabilities give the counts of the index targets.
    y = rng.integers(0, 4, size=25)
    y[:4] = np.arange(4)
    assert_outputs_close(all_outputs(SOFTMAX, x, np.eye(4)[y], class_weight="balanced"),
                         all_outputs(SOFTMAX, x, y, class_weight="balanced"))


@pytest.mark.parametrize("mode", ["balanced", "auto"])
@pytest.mark.parametrize("weighted", [False, True], ids=["sw_none", "sw_array"])
def test_sigmoid_balanced_equals_list(mode, weighted):
    rng = np.random.default_rng(11)
    z = rng.normal(0, 2, size=(40, 3))
    t = (rng.uniform(size=(40, 3)) < 0.2).astype(float)
    t[0, 0], t[1, 0] = 0.0, 1.0
    t[5:9, 1] = 0.6  # soft targets count fractionally
    sw = rng.uniform(0.5, 2.0, size=(40, 3)) if weighted else None
    w = np.ones_like(t) if sw is None else sw
    n_pos, n_neg = np.sum(t * w), np.sum((1 - t) * w)
    if mode == "balanced":
        cw = [(n_pos + n_neg) / (2 * n_neg), (n_pos + n_neg) / (2 * n_pos)]
    else:
        inv = np.array([1 / n_neg, 1 / n_pos])
        cw = list(2 * inv / inv.sum())
    np.testing.assert_allclose(cw, ref.binary_class_weight(t, mode, sw), rtol=1e-14)
    for reduction in REDUCTIONS:
        kw = {"sample_weight": sw, "reduction": reduction}
        assert_outputs_close(all_outputs(SIGMOID, z, t, class_weight=mode, **kw),
                             all_outputs(SIGMOID, z, t, class_weight=cw, **kw))


def test_sigmoid_balanced_counts_the_broadcast_shape():
    """Counts run over the loss's shape: a broadcast target counts once per use."""
    z = np.zeros((4, 3))
    t = np.array([1.0, 0.0, 0.0])
    n_pos, n_neg = 4.0, 8.0
    cw = [12 / (2 * n_neg), 12 / (2 * n_pos)]
    assert_outputs_close(all_outputs(SIGMOID, z, t, class_weight="balanced", reduction="sum"),
                         all_outputs(SIGMOID, z, np.broadcast_to(t, (4, 3)), class_weight=cw,
                                     reduction="sum"))


def test_missing_class_in_losses():
    with pytest.raises(ValueError, match="class"):
        SOFTMAX(np.zeros((3, 3)), np.array([0, 1, 1]), class_weight="balanced")
    with pytest.raises(ValueError, match="class"):
        SOFTMAX(np.zeros((3, 3)), np.array([0, 1, -100]), class_weight="auto")
    with pytest.raises(ValueError, match="class"):
        SIGMOID(np.zeros(3), np.zeros(3), class_weight="balanced")
    with pytest.raises(ValueError, match="class"):
        SIGMOID(np.zeros(3), np.ones(3), class_weight="auto")
