"""Class weights: fl.class_weight, fl.ClassCounts, and class_weight= in the
cross-entropy losses against explicit weighting."""

from __future__ import annotations

import re

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


# --------------------------------------------------------------------------
# ignore_index as the largest label; checks before counting
# --------------------------------------------------------------------------

FOCAL = fl.softmax_focal


def error_of(call):
    """The message of the ValueError that `call` raises."""
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def test_ignored_largest_label_keeps_its_entry():
    """Without n_classes the weights have largest label + 1 entries, the ignored one
    included (weight 0), wherever the ignored label lies."""
    y = np.array([0, 0, 1, 2])
    np.testing.assert_allclose(fl.class_weight(y, ignore_index=1), [0.75, 0.0, 1.5], rtol=1e-15)
    w = fl.class_weight(y, ignore_index=2)
    np.testing.assert_allclose(w, [0.75, 1.5, 0.0], rtol=1e-15)
    np.testing.assert_array_equal(fl.class_weight(y, ignore_index=2, n_classes=3), w)
    cc = fl.ClassCounts(ignore_index=2).update(y[:3]).update(y[3:])
    np.testing.assert_array_equal(cc.counts, [2.0, 1.0, 0.0])
    np.testing.assert_array_equal(cc.class_weight(), w)
    # The array fits the loss with the same ignore_index, and equals class_weight="balanced".
    x = np.random.default_rng(12).normal(size=(4, 3))
    assert_outputs_close(all_outputs(SOFTMAX, x, y, ignore_index=2, class_weight=w),
                         all_outputs(SOFTMAX, x, y, ignore_index=2, class_weight="balanced"))
    # n_classes below the ignored label: K = 2 logits, label 2 ignored outside them.
    w2 = fl.class_weight(y, ignore_index=2, n_classes=2)
    np.testing.assert_allclose(w2, [0.75, 1.5], rtol=1e-15)
    assert_outputs_close(all_outputs(SOFTMAX, x[:, :2], y, ignore_index=2, class_weight=w2),
                         all_outputs(SOFTMAX, x[:, :2], y, ignore_index=2,
                                     class_weight="balanced"))


def test_ignore_index_above_empty_classes_is_outside_them():
    """An ignored label above classes with no samples (255 in segmentation masks) is not a
    class: the weights stop at the largest counted label, the only length that defines them."""
    y = np.array([0, 1, 1, 255])
    w = fl.class_weight(y, ignore_index=255)
    np.testing.assert_allclose(w, [1.5, 0.75], rtol=1e-15)
    np.testing.assert_array_equal(fl.class_weight(y, ignore_index=255, n_classes=2), w)
    cc = fl.ClassCounts(ignore_index=255).update(y[:2]).update(y[2:])
    np.testing.assert_array_equal(cc.class_weight(), w)
    x = np.random.default_rng(14).normal(size=(4, 2))
    assert_outputs_close(all_outputs(SOFTMAX, x, y, ignore_index=255, class_weight=w),
                         all_outputs(SOFTMAX, x, y, ignore_index=255, class_weight="balanced"))
    # An empty class below the largest counted label is still an error.
    with pytest.raises(ValueError, match="class 1 has no samples"):
        fl.class_weight([0, 2, 255], ignore_index=255)
    with pytest.raises(ValueError, match="no labels seen"):
        fl.class_weight([2, 2], ignore_index=2)


def test_balanced_checks_binary_target_first():
    """A target outside [0, 1] gives the loss's own message, not an empty class."""
    z = np.zeros(3)
    for t in (np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, -np.inf]), np.array([0, 1, 2])):
        msg = error_of(lambda t=t: SIGMOID(z, t))
        assert "target must hold probabilities in [0, 1]" in msg
        for mode in ("balanced", "auto"):
            for policy in ("propagate", "raise", "omit"):
                with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
                    SIGMOID(z, t, class_weight=mode, nan_policy=policy)


def test_balanced_checks_probability_target_first():
    x = np.zeros((3, 3), dtype=np.float32)
    t = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 2.1]])
    msg = error_of(lambda: SOFTMAX(x, t))
    assert msg == "target must hold probabilities in [0, 1]; got 2.1 at index (2, 2)"
    for kw in ({"class_weight": "balanced"}, {"class_weight": "auto", "nan_policy": "omit"}):
        with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
            SOFTMAX(x, t, **kw)
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        FOCAL(x, t, alpha="balanced")


NAN_CASES = {
    # id: (loss, first, target, sample_weight, named argument, index)
    "sigmoid_target": (SIGMOID, np.zeros(3), np.array([0.0, 1.0, np.nan]), None, "target",
                       "(2,)"),
    "sigmoid_weight": (SIGMOID, np.zeros(3), np.array([0.0, 1.0, 1.0]),
                       np.array([1.0, np.nan, 1.0]), "sample_weight", "(1,)"),
    "softmax_index_weight": (SOFTMAX, np.zeros((4, 3)), np.array([0, 1, 2, 1]),
                             np.array([1.0, np.nan, 1.0, 1.0]), "sample_weight", "(1,)"),
    "softmax_prob_target": (SOFTMAX, np.zeros((4, 3)), np.array([[1.0, 0, 0], [0, 1, 0],
                                                                 [0, 0, np.nan], [0, 0, 1]]),
                            None, "target", "(2, 2)"),
}


@pytest.mark.parametrize("case", sorted(NAN_CASES))
def test_balanced_with_nan(case):
    """A NaN target or sample weight has no class: its sample is left out of the counts.
    propagate: that sample's loss is NaN, every other one is what omit gives it (the same
    counts); raise: a ValueError about the NaN; omit: the NaN's sample gets loss 0."""
    loss, first, target, sw, name, where = NAN_CASES[case]
    bad = tuple(int(i) for i in where.strip("(),").split(","))[0]
    for mode in ("balanced", "auto"):
        kw = dict(sample_weight=sw, class_weight=mode)
        v = loss(first, target, **kw)
        omit = loss(first, target, nan_policy="omit", **kw)
        assert np.isnan(v[bad]) and omit[bad] == 0.0
        keep = np.arange(v.shape[0]) != bad
        assert np.all(np.isfinite(v[keep]))
        np.testing.assert_array_equal(v[keep], omit[keep])
        assert np.isnan(loss(first, target, reduction="mean", **kw))
        with pytest.raises(ValueError, match=f"{name}.*NaN.*nan_policy='raise'"):
            loss(first, target, nan_policy="raise", **kw)
    # The weights are those of the counts without that sample.
    keep = np.arange(np.shape(target)[0]) != bad
    sub_w = None if sw is None else sw[keep]
    np.testing.assert_array_equal(
        loss(first, target, sample_weight=sw, class_weight="balanced")[keep],
        loss(first[keep], target[keep], sample_weight=sub_w, class_weight="balanced"))
    # Without class weights, propagate gives NaN for that sample only.
    v = loss(first, target, sample_weight=sw)
    assert np.isnan(v).sum() == 1


def test_balanced_alpha_with_nan_weight_leaves_the_row_out():
    sw = np.array([1.0, np.nan, 1.0, 1.0])
    x = np.random.default_rng(5).normal(size=(4, 3))
    y = np.array([0, 1, 2, 1])
    v = FOCAL(x, y, sample_weight=sw, alpha="balanced")
    assert np.isnan(v[1]) and np.all(np.isfinite(v[[0, 2, 3]]))
    np.testing.assert_array_equal(v[[0, 2, 3]], FOCAL(x, y, sample_weight=sw, alpha="balanced",
                                                      nan_policy="omit")[[0, 2, 3]])


@pytest.mark.parametrize("policy", ["propagate", "raise", "omit"])
def test_balanced_with_infinite_sample_weight(policy):
    sw = np.array([1.0, np.inf, 1.0])
    match = r"class_weight='balanced' cannot be computed: sample_weight holds an infinite value"
    with pytest.raises(ValueError, match=match):
        SOFTMAX(np.zeros((3, 3)), np.array([0, 1, 2]), sample_weight=sw,
                class_weight="balanced", nan_policy=policy)
    with pytest.raises(ValueError, match=match):
        SIGMOID(np.zeros(3), np.array([0.0, 1.0, 1.0]), sample_weight=sw,
                class_weight="balanced", nan_policy=policy)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_class_weight_nonfinite_sample_weight(bad):
    what = "NaN" if np.isnan(bad) else "an infinite value"
    sw = [1.0, bad, 1.0]
    with pytest.raises(ValueError, match=rf"^sample_weight holds {what} at index \(1,\)"):
        fl.class_weight([0, 1, 2], sample_weight=sw)
    cc = fl.ClassCounts()
    with pytest.raises(ValueError, match=rf"^sample_weight holds {what} at index \(1,\)"):
        cc.update([0, 1, 2], sw)
    assert cc.counts.size == 0  # nothing was counted
    with pytest.raises(ValueError, match=r"class 1 has a weighted count of -1\.0"):
        fl.class_weight([0, 1, 2], sample_weight=[1.0, -1.0, 1.0])


# Index targets out of range: the loss's own message whatever the class weights.
OUT_OF_RANGE = [
    (np.zeros((2, 2, 3)), np.array([[0, 1], [2, 5]])),
    (np.zeros((2, 2, 3)), np.array([[0, 1], [2, -3]])),
    (np.zeros((2, 2, 3)), np.array([4, 1])),  # broadcast: indexed in the rows' shape
    (np.zeros((2, 3)), np.array([-100, 3])),  # the ignored label is not the bad one
    (np.zeros((2, 3)), np.array([0, 2**63 + 1], dtype=np.uint64)),
]
WEIGHTINGS = [(SOFTMAX, {"class_weight": "balanced"}), (SOFTMAX, {"class_weight": "auto"}),
              (FOCAL, {"alpha": "balanced"}), (FOCAL, {"class_weight": "balanced"})]


@pytest.mark.parametrize("policy", ["propagate", "omit"])
@pytest.mark.parametrize("loss, kw", WEIGHTINGS,
                         ids=[f"{loss.name}-{next(iter(kw))}" for loss, kw in WEIGHTINGS])
@pytest.mark.parametrize("case", range(len(OUT_OF_RANGE)))
def test_label_out_of_range_with_balanced_weights(case, loss, kw, policy):
    x, y = OUT_OF_RANGE[case]
    msg = error_of(lambda: loss(x, y, nan_policy=policy))
    assert msg.startswith("target holds class index ")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        loss(x, y, nan_policy=policy, **kw)
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        loss.grad_hess(x, y, nan_policy=policy, **kw)


def test_label_out_of_range_message_examples():
    with pytest.raises(ValueError, match=r"^target holds class index 5 at index \(1, 1\), "
                                         r"outside \[0, 3\)$"):
        SOFTMAX(np.zeros((2, 2, 3)), np.array([[0, 1], [2, 5]]), class_weight="balanced")
    with pytest.raises(ValueError, match=r"^target holds class index -3 at index \(1, 1\), "
                                         r"outside \[0, 3\)$"):
        FOCAL(np.zeros((2, 2, 3)), np.array([[0, 1], [2, -3]]), alpha="balanced")
    # fl.class_weight names its own argument, with the label's index.
    with pytest.raises(ValueError, match=r"^labels must be < n_classes=3.*got 5 at index "
                                         r"\(1, 1\)"):
        fl.class_weight(np.array([[0, 1], [2, 5]]), n_classes=3)
    with pytest.raises(ValueError, match=r"^labels must be >= 0.*got -3 at index \(2,\)"):
        fl.class_weight(np.array([0, -100, -3]), ignore_index=-100)


# --------------------------------------------------------------------------
# Labels that are not finite, not whole or too large
# --------------------------------------------------------------------------


@pytest.mark.parametrize("labels, exc, match", [
    (np.array([0.0, 1.0, np.inf]), ValueError, r"^labels must be finite.*inf at index \(2,\)"),
    (np.array([0.0, np.nan, 1.0]), ValueError, r"^labels must be finite.*nan at index \(1,\)"),
    (np.array([0.0, 1.0, 1e30]), ValueError, r"^labels must be < 16777216 \(2\*\*24\).*1e\+30"),
    (np.array([0.0, 1.0, -1e30]), ValueError, r"^labels must be >= 0.*-1e\+30"),
    (np.array([0, 2**63], dtype=np.uint64), ValueError,
     r"^labels must be < 16777216.*9223372036854775808.*n_classes="),
    (np.array([0, 1, 10**10]), ValueError,
     r"^labels must be < 16777216.*10000000000 at index \(2,\).*n_classes="),
    (np.array([0, 1, 2**24]), ValueError, r"^labels must be < 16777216"),
    (np.array([0.0, 0.5]), TypeError,
     r"^labels must hold integer class labels, got 0\.5 at index \(1,\)"),
], ids=["inf", "nan", "1e30", "-1e30", "uint64_2**63", "10**10", "2**24", "fraction"])
def test_labels_not_finite_whole_or_too_large(labels, exc, match):
    with pytest.raises(exc, match=match):
        fl.class_weight(labels)
    with pytest.raises(exc, match=match):
        fl.ClassCounts().update(labels)


def test_large_labels_with_n_classes():
    # n_classes lifts the bound on the inferred size, and bounds the labels itself.
    with pytest.raises(ValueError, match=r"^labels must be < n_classes=3.*10000000000"):
        fl.class_weight(np.array([0, 1, 10**10]), n_classes=3)
    with pytest.raises(ValueError, match=r"^labels must be < n_classes=3.*9223372036854775808"):
        fl.class_weight(np.array([0, 2**63], dtype=np.uint64), n_classes=3)
    np.testing.assert_allclose(fl.class_weight(np.array([0, 1], dtype=np.uint64), n_classes=2),
                               [1.0, 1.0])


def test_whole_float_labels_keep_working():
    y = np.array([0, 1, 1, 2, 1])
    want = fl.class_weight(y)
    np.testing.assert_array_equal(fl.class_weight(y.astype(np.float64)), want)
    np.testing.assert_array_equal(fl.class_weight(y.astype(np.float32), n_classes=3), want)
    np.testing.assert_array_equal(
        fl.class_weight(np.append(y, -100).astype(float), ignore_index=-100), want)
    assert fl.ClassCounts().update([]).counts.size == 0  # [] is float64 in NumPy


# --------------------------------------------------------------------------
# ignore_index beyond int64, bool, float
# --------------------------------------------------------------------------

IGNORE_CALLS = {
    "softmax": lambda ig: SOFTMAX(np.zeros((2, 3)), np.array([0, 1]), ignore_index=ig),
    "softmax_balanced": lambda ig: SOFTMAX(np.zeros((2, 3)), np.array([0, 1]), ignore_index=ig,
                                           class_weight="balanced"),
    "focal": lambda ig: FOCAL(np.zeros((2, 3)), np.array([0, 1]), ignore_index=ig),
    "focal_grad": lambda ig: FOCAL.grad(np.zeros((2, 3)), np.array([0, 1]), ignore_index=ig),
    "class_weight": lambda ig: fl.class_weight([0, 1, 2], ignore_index=ig),
    "ClassCounts": lambda ig: fl.ClassCounts(ignore_index=ig),
}


@pytest.mark.parametrize("value, exc", [
    (2**63, ValueError), (-(2**63) - 1, ValueError), (np.uint64(2**63), ValueError),
    (10**30, ValueError), (True, TypeError), (np.bool_(False), TypeError), (1.0, TypeError),
    (1.5, TypeError), ("1", TypeError),
], ids=["2**63", "-2**63-1", "uint64", "10**30", "True", "np.False_", "1.0", "1.5", "str"])
@pytest.mark.parametrize("call", sorted(IGNORE_CALLS))
def test_bad_ignore_index(call, value, exc):
    with pytest.raises(exc, match="^ignore_index must"):
        IGNORE_CALLS[call](value)


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), np.int64(-100), np.uint64(2)])
def test_ignore_index_int64_range_is_accepted(value):
    x = np.random.default_rng(13).normal(size=(3, 3))
    y = np.array([0, 1, 2])
    v = SOFTMAX(x, y, ignore_index=value)
    assert (v == 0).sum() == (1 if int(value) == 2 else 0)
    FOCAL(x, y, ignore_index=value, alpha="balanced")
    fl.class_weight(y, ignore_index=value)


def test_class_weight_takes_every_form_a_loss_does():
    # DESIGN.md: class_weight is None, "balanced", "auto", a dict or an array; fl.class_weight
    # resolves each to the array the loss would use.
    y = np.array([0, 1, 1, 3, 3, 3])
    np.testing.assert_array_equal(fl.class_weight(y, None), np.ones(4))
    np.testing.assert_array_equal(fl.class_weight(y, None, n_classes=6), np.ones(6))
    np.testing.assert_array_equal(fl.class_weight(y, {0: 2.5, 3: 0.5}), [2.5, 1.0, 1.0, 0.5])
    arr = np.array([0.5, 1, 2, 4], dtype=np.float32)
    got = fl.class_weight(y, arr)
    np.testing.assert_array_equal(got, arr.astype(np.float64))
    assert got.dtype == np.float64 and not np.shares_memory(got, arr)
    # The same array as the loss uses: a weighted mean with it equals one with the dict.
    z = np.random.default_rng(0).normal(size=(6, 4))
    assert fl.softmax_cross_entropy(z, y, class_weight=fl.class_weight(y, {0: 2.5, 3: 0.5}),
                                    reduction="mean") == \
        fl.softmax_cross_entropy(z, y, class_weight={0: 2.5, 3: 0.5}, reduction="mean")
    # The labels are still checked.
    with pytest.raises(ValueError, match="labels"):
        fl.class_weight(np.array([0, -3]), None)


@pytest.mark.parametrize("bad, exc, msg", [
    (np.arange(5.0), ValueError, r"mode must have shape \(4,\), got \(5,\)"),
    ({9: 1.0}, ValueError, r"mode key 9 is not a class in \[0, 4\)"),
    (np.array(["a", "b", "c", "d"]), TypeError, "mode must hold real numbers"),
    (-np.ones(4), ValueError, "mode must be finite and >= 0"),
    ("bogus", ValueError, "mode must be 'balanced', 'auto', None, a dict or an array"),
])
def test_class_weight_bad_mode_names_it(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        fl.class_weight(np.array([0, 1, 3]), bad)


def test_class_weight_forms_match_sklearn():
    sk = pytest.importorskip("sklearn.utils.class_weight")
    y = np.array([0, 1, 1, 2, 2, 2, 2])
    classes = np.arange(3)
    for mode in (None, {0: 3.0, 2: 0.25}, "balanced"):
        np.testing.assert_allclose(fl.class_weight(y, mode),
                                   sk.compute_class_weight(mode, classes=classes, y=y),
                                   rtol=1e-15)


@pytest.mark.parametrize("mode", ["balanced", "auto"])
def test_counted_weights_of_nothing_counted_are_not_an_error(mode):
    """An empty call, or one whose every sample is ignored, applies no class weight: it gives
    what the call without class weights gives (empty arrays, zeros, a NaN mean), as PyTorch
    gives for an all-ignored batch, instead of 'no labels seen'."""
    cases = [
        (SIGMOID, np.zeros((0, 2)), np.zeros((0, 2)), {"class_weight": mode}),
        (SOFTMAX, np.zeros((0, 3)), np.zeros(0, dtype=np.int64), {"class_weight": mode}),
        (SOFTMAX, np.ones((2, 3)), np.array([-100, -100]), {"class_weight": mode}),
        (fl.softmax_focal, np.zeros((0, 3)), np.zeros(0, dtype=np.int64), {"alpha": "balanced"}),
    ]
    for loss, x, t, kw in cases:
        for reduction in ("none", "sum", "mean"):
            got = loss.value_and_grad(x, t, reduction=reduction, **kw)
            plain = {k: v for k, v in kw.items() if k != "class_weight"}
            if "alpha" in plain:
                plain["alpha"] = None
            want = loss.value_and_grad(x, t, reduction=reduction, **plain)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
        assert np.isnan(loss(x, t, reduction="mean", **kw))
    # fl.class_weight itself still refuses to make weights out of nothing (scikit-learn too).
    with pytest.raises(ValueError, match="no labels seen"):
        fl.class_weight(np.zeros(0, dtype=np.int64), mode, n_classes=3)
