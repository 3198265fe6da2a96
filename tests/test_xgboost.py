"""fastloss.xgboost: objectives and metrics in real XGBoost training, against the built-in
logistic and softmax objectives."""

from __future__ import annotations

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")
pytest.importorskip("sklearn")

import fastloss as fl  # noqa: E402
import fastloss.xgboost as fx  # noqa: E402
from gbdt_data import (IMBALANCED_OBJECTIVES, FiniteWatch, average_precision,  # noqa: E402
                       binary, imbalanced, multiclass, sigmoid, softmax)

PARAMS = {"tree_method": "hist", "max_depth": 3, "eta": 0.3, "nthread": 1}
ROUNDS = 20


def dmatrix(X, y=None, w=None, k=None):
    # A zero base margin for both models: XGBoost would otherwise start the built-in objective
    # from an estimated intercept and a custom one from base_score.
    margin = np.zeros(len(X)) if k is None else np.zeros((len(X), k))
    return xgb.DMatrix(X, label=y, weight=w, base_margin=margin)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_sigmoid_cross_entropy_reproduces_binary_logistic(weighted):
    Xtr, ytr, Xte, yte = binary()
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(ytr)) if weighted else None
    built_in = xgb.train(dict(PARAMS, objective="binary:logistic"), dmatrix(Xtr, ytr, w), ROUNDS)
    custom = xgb.train(PARAMS, dmatrix(Xtr, ytr, w), ROUNDS,
                       obj=fx.objective("sigmoid_cross_entropy"))
    p_built_in = built_in.predict(dmatrix(Xte))
    p_custom = sigmoid(custom.predict(dmatrix(Xte), output_margin=True))
    assert np.max(np.abs(p_built_in - p_custom)) <= 1e-6
    assert np.mean((p_custom > 0.5) == yte) > 0.85


def test_softmax_cross_entropy_reproduces_multi_softprob():
    Xtr, ytr, Xte, _ = multiclass()
    params = dict(PARAMS, num_class=4)
    built_in = xgb.train(dict(params, objective="multi:softprob"), dmatrix(Xtr, ytr, k=4), ROUNDS)
    custom = xgb.train(params, dmatrix(Xtr, ytr, k=4), ROUNDS,
                       obj=fx.objective("softmax_cross_entropy"))
    margins = custom.predict(dmatrix(Xte, k=4), output_margin=True)
    assert margins.shape == (len(Xte), 4)
    assert np.max(np.abs(built_in.predict(dmatrix(Xte, k=4)) - softmax(margins))) <= 1e-6


def test_sklearn_api_with_weights_and_metric():
    Xtr, ytr, Xte, yte = binary()
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(ytr))
    common = dict(n_estimators=ROUNDS, max_depth=3, learning_rate=0.3, n_jobs=1,
                  tree_method="hist")
    built_in = xgb.XGBClassifier(**common)
    custom = xgb.XGBClassifier(objective=fx.objective("sigmoid_cross_entropy"),
                               eval_metric=fx.metric("sigmoid_cross_entropy"), **common)
    zeros_tr, zeros_te = np.zeros(len(ytr)), np.zeros(len(yte))
    built_in.fit(Xtr, ytr, sample_weight=w, base_margin=zeros_tr)
    custom.fit(Xtr, ytr, sample_weight=w, base_margin=zeros_tr, eval_set=[(Xte, yte)],
               verbose=False)
    diff = (built_in.predict_proba(Xte, base_margin=zeros_te)
            - custom.predict_proba(Xte, base_margin=zeros_te))
    assert np.max(np.abs(diff)) <= 1e-6
    recorded = custom.evals_result()["validation_0"]["sigmoid_cross_entropy"][-1]
    margins = custom.predict(Xte, output_margin=True, base_margin=zeros_te)
    assert recorded == pytest.approx(float(fl.sigmoid_cross_entropy(margins, yte,
                                                                     reduction="mean")), rel=1e-6)


def test_native_metric_matches_built_in_logloss():
    Xtr, ytr, Xte, yte = binary()
    log = {}
    xgb.train(dict(PARAMS, objective="binary:logistic", eval_metric="logloss"),
              dmatrix(Xtr, ytr), 5, evals=[(dmatrix(Xte, yte), "test")], evals_result=log,
              custom_metric=fx.metric("sigmoid_cross_entropy", from_logits=False),
              verbose_eval=False)
    # A built-in objective hands the metric probabilities, hence from_logits=False.
    np.testing.assert_allclose(log["test"]["sigmoid_cross_entropy"], log["test"]["logloss"],
                               rtol=1e-5)


def test_hessian_policies_and_floor():
    rng = np.random.default_rng(2)
    margins = (rng.standard_normal(1_000) * 30).astype(np.float32)
    y = (rng.random(1_000) < 0.5).astype(np.float32)
    d = xgb.DMatrix(np.zeros((1_000, 1)), label=y)
    g, h = fx.objective("sigmoid_cross_entropy", hess_floor=1e-3)(margins, d)
    assert g.dtype == np.float32 and h.shape == margins.shape
    assert np.min(h) >= 1e-3 * (1 - 1e-6)
    g_ref, h_ref = fl.sigmoid_cross_entropy.grad_hess(margins, y)
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(h, np.maximum(h_ref, np.float32(1e-3)))
    _, h_abs = fx.objective("absolute_error", hessian="fisher", hess_floor=0.0)(margins, d)
    np.testing.assert_array_equal(h_abs, 1.0)
    # absolute_error's exact Hessian is 0: the floor keeps boosting defined.
    _, h_abs = fx.objective("absolute_error")(margins, d)
    np.testing.assert_array_equal(h_abs, np.float32(1e-6))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown loss"):
        fx.objective("no_such_loss")
    with pytest.raises(TypeError, match="gamma"):
        fx.objective("sigmoid_cross_entropy", gamma=2.0)
    with pytest.raises(ValueError, match="hessian"):
        fx.objective("sigmoid_cross_entropy", hessian="lightgbm")
    with pytest.raises(ValueError, match="hess_floor"):
        fx.objective("sigmoid_cross_entropy", hess_floor=-1.0)
    # margin_ranking's second input never reaches an objective (pairwise ranking losses do:
    # tests/test_gbdt_pairwise.py).
    with pytest.raises(ValueError, match="elementwise, row-wise and pairwise ranking"):
        fx.objective("margin_ranking")
    obj = fx.objective("softmax_cross_entropy")
    d = xgb.DMatrix(np.zeros((10, 1)), label=np.arange(10) % 3)
    with pytest.raises(ValueError, match="num_class"):
        obj(np.zeros(10, dtype=np.float32), d)
    with pytest.raises(ValueError, match="class indices"):
        obj(np.zeros((10, 3), dtype=np.float32),
            xgb.DMatrix(np.zeros((10, 1)), label=np.full(10, 0.5)))


@pytest.mark.parametrize("name", ["multiclass_hinge", "crcnn_ranking",
                                  "multilabel_softmax_cross_entropy"])
def test_row_losses_without_the_softmax_convention(name):
    """Row-wise losses that have no hessian='xgboost' of their own default to the exact
    Hessian (floored), and train (README: the library's convention for the softmax losses,
    the exact Hessian otherwise)."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 4))
    y = np.argmax(X[:, :3] + 0.3 * rng.normal(size=(120, 3)), axis=1)
    multilabel = name == "multilabel_softmax_cross_entropy"
    label = np.eye(3)[y] if multilabel else y
    obj = fx.objective(name)
    assert obj._impl.hessian == "exact"
    margins = rng.normal(size=(120, 3)).astype(np.float32)
    g, h = obj(margins, xgb.DMatrix(X, label=label))
    g_want, h_want = fl.losses[name].grad_hess(margins, label, hessian="clip", hess_floor=1e-6)
    np.testing.assert_array_equal(g, g_want.reshape(g.shape))
    np.testing.assert_array_equal(h, h_want.reshape(h.shape))
    if not multilabel:
        booster = xgb.train({"num_class": 3, "max_depth": 2, "verbosity": 0},
                            xgb.DMatrix(X, label=label), 3, obj=obj)
        assert np.all(np.isfinite(booster.predict(xgb.DMatrix(X), output_margin=True)))
    with pytest.raises(ValueError, match="hessian must be one of 'exact', 'clip', 'abs'"):
        fx.objective(name, hessian="xgboost")


def test_hinge_objective_takes_its_xgboost_hessian():
    """hinge's own hessian="xgboost" (binary:hinge's Hessian) through the adapter."""
    rng = np.random.default_rng(6)
    margins = rng.normal(size=50).astype(np.float32)
    label = (rng.random(50) < 0.5).astype(np.float32)
    obj = fx.objective("hinge", hessian="xgboost")
    g, h = obj(margins, xgb.DMatrix(np.zeros((50, 1)), label=label))
    g_want, h_want = fl.hinge.grad_hess(margins, label, hessian="xgboost")
    np.testing.assert_array_equal(g, g_want)
    np.testing.assert_array_equal(h, np.maximum(h_want, np.float32(1e-6)))
    with pytest.raises(ValueError, match="hessian must be one of"):
        fx.objective("squared_error", hessian="xgboost")


@pytest.mark.parametrize("name, params, opts", IMBALANCED_OBJECTIVES,
                         ids=lambda v: v if isinstance(v, str) else None)
def test_class_imbalance_objectives_train_without_nan(name, params, opts):
    """Focal and p^n objectives on 2% positives: every gradient, Hessian and prediction is
    finite and the model ranks the test positives far better than chance. (How they compare
    with the cross-entropy is measured, not asserted: examples/gbdt_imbalanced.py.)"""
    Xtr, ytr, Xte, yte = imbalanced()
    obj = FiniteWatch(fx.objective(name, **opts, **params))
    booster = xgb.train(PARAMS, dmatrix(Xtr, ytr), 30, obj=obj)
    margins = booster.predict(dmatrix(Xte), output_margin=True)
    assert obj.calls == 30 and obj.finite
    assert np.all(np.isfinite(margins))
    assert average_precision(yte, margins) > 5 * yte.mean()
