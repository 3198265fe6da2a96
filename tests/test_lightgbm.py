"""fastloss.lightgbm: objectives and metrics in real LightGBM training, against the built-in
binary and multiclass objectives."""

from __future__ import annotations

import numpy as np
import pytest

lgb = pytest.importorskip("lightgbm")
pytest.importorskip("sklearn")

import fastloss as fl  # noqa: E402
import fastloss.lightgbm as flg  # noqa: E402
from gbdt_data import (IMBALANCED_OBJECTIVES, FiniteWatch, average_precision,  # noqa: E402
                       binary, imbalanced, multiclass, sigmoid, softmax)

# boost_from_average=False: a custom objective starts from a margin of 0, so the built-in one
# must too for the two to be comparable.
PARAMS = {"num_leaves": 8, "learning_rate": 0.3, "verbose": -1, "num_threads": 1,
          "deterministic": True, "force_row_wise": True}
ROUNDS = 20


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_sigmoid_cross_entropy_reproduces_binary(weighted):
    Xtr, ytr, Xte, yte = binary()
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(ytr)) if weighted else None
    built_in = lgb.train(dict(PARAMS, objective="binary", boost_from_average=False),
                         lgb.Dataset(Xtr, ytr, weight=w), ROUNDS)
    custom = lgb.train(dict(PARAMS, objective=flg.objective("sigmoid_cross_entropy")),
                       lgb.Dataset(Xtr, ytr, weight=w), ROUNDS)
    p_custom = sigmoid(custom.predict(Xte))  # raw margins with a custom objective
    assert np.max(np.abs(built_in.predict(Xte) - p_custom)) <= 1e-6
    assert np.mean((p_custom > 0.5) == yte) > 0.85


def test_softmax_cross_entropy_reproduces_multiclass():
    Xtr, ytr, Xte, _ = multiclass()
    built_in = lgb.train(dict(PARAMS, objective="multiclass", num_class=4,
                              boost_from_average=False), lgb.Dataset(Xtr, ytr), ROUNDS)
    custom = lgb.train(dict(PARAMS, objective=flg.objective("softmax_cross_entropy"),
                            num_class=4), lgb.Dataset(Xtr, ytr), ROUNDS)
    margins = custom.predict(Xte)
    assert margins.shape == (len(Xte), 4)
    assert np.max(np.abs(built_in.predict(Xte) - softmax(margins))) <= 1e-6


def test_sklearn_api_with_weights():
    Xtr, ytr, Xte, _ = binary()
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(ytr))
    common = dict(n_estimators=ROUNDS, num_leaves=8, learning_rate=0.3, verbose=-1, n_jobs=1,
                  deterministic=True, force_row_wise=True)
    built_in = lgb.LGBMClassifier(boost_from_average=False, **common)
    custom = lgb.LGBMClassifier(objective=flg.objective("sigmoid_cross_entropy"), **common)
    built_in.fit(Xtr, ytr, sample_weight=w)
    custom.fit(Xtr, ytr, sample_weight=w)
    p_custom = sigmoid(custom.predict(Xte, raw_score=True))
    assert np.max(np.abs(built_in.predict_proba(Xte)[:, 1] - p_custom)) <= 1e-6


def test_native_metric():
    Xtr, ytr, Xte, yte = binary()
    log = {}
    train = lgb.Dataset(Xtr, ytr)
    booster = lgb.train(dict(PARAMS, objective=flg.objective("sigmoid_cross_entropy"),
                             metric="None"), train, 5,
                        valid_sets=[lgb.Dataset(Xte, yte, reference=train)], valid_names=["test"],
                        feval=flg.metric("sigmoid_cross_entropy"),
                        callbacks=[lgb.record_evaluation(log)])
    recorded = log["test"]["sigmoid_cross_entropy"][-1]
    want = float(fl.sigmoid_cross_entropy(booster.predict(Xte), yte, reduction="mean"))
    assert recorded == pytest.approx(want, rel=1e-12)
    name, value, higher_better = flg.metric("sigmoid_cross_entropy")(yte, booster.predict(Xte))
    assert (name, higher_better) == ("sigmoid_cross_entropy", False)
    assert value == pytest.approx(want, rel=1e-12)


def test_multiclass_hessian_convention():
    rng = np.random.default_rng(3)
    margins = rng.standard_normal((50, 5))
    y = rng.integers(0, 5, 50).astype(np.float64)
    g, h = flg.objective("softmax_cross_entropy")(y, margins, None)
    p = softmax(margins)
    onehot = np.eye(5)[y.astype(int)]
    np.testing.assert_allclose(g, p - onehot, atol=1e-14)
    np.testing.assert_allclose(h, np.maximum(5 / 4 * p * (1 - p), 1e-6), rtol=1e-12)
    w = rng.uniform(0.5, 2.0, 50)
    gw, hw = flg.objective("softmax_cross_entropy")(y, margins, w)
    np.testing.assert_allclose(gw, g * w[:, None], rtol=1e-14)
    np.testing.assert_allclose(hw, h * w[:, None], rtol=1e-14)


@pytest.mark.parametrize("name", ["multiclass_hinge", "crcnn_ranking"])
def test_row_losses_without_the_softmax_convention(name):
    """A row-wise loss with no hessian='lightgbm' of its own: the exact Hessian, floored."""
    rng = np.random.default_rng(4)
    margins = rng.standard_normal((30, 4))
    y = rng.integers(0, 4, 30).astype(np.float64)
    g, h = flg.objective(name)(y, margins, None)
    g_want, h_want = fl.losses[name].grad_hess(margins, y.astype(np.int64), hessian="clip",
                                               hess_floor=1e-6)
    np.testing.assert_array_equal(g, g_want)
    np.testing.assert_array_equal(h, h_want)
    with pytest.raises(ValueError, match="hessian must be one of 'exact', 'clip', 'abs'"):
        flg.objective(name, hessian="lightgbm")


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown loss"):
        flg.objective("nope")
    with pytest.raises(ValueError, match="hessian"):
        flg.objective("huber", hessian="fisher")
    with pytest.raises(ValueError, match="labels"):
        flg.objective("squared_error")(np.zeros(3), np.zeros(4), None)
    with pytest.raises(ValueError, match="weight"):
        flg.objective("squared_error")(np.zeros(4), np.zeros(4), np.ones(3))


@pytest.mark.parametrize("name, params, opts", IMBALANCED_OBJECTIVES,
                         ids=lambda v: v if isinstance(v, str) else None)
def test_class_imbalance_objectives_train_without_nan(name, params, opts):
    """Focal and p^n objectives on 2% positives: every gradient, Hessian and prediction is
    finite and the model ranks the test positives far better than chance. (How they compare
    with the cross-entropy is measured, not asserted: examples/gbdt_imbalanced.py.)"""
    Xtr, ytr, Xte, yte = imbalanced()
    obj = FiniteWatch(flg.objective(name, **opts, **params))
    booster = lgb.train(dict(PARAMS, objective=obj), lgb.Dataset(Xtr, ytr), 30)
    margins = booster.predict(Xte)
    assert obj.calls == 30 and obj.finite
    assert np.all(np.isfinite(margins))
    assert average_precision(yte, margins) > 5 * yte.mean()
