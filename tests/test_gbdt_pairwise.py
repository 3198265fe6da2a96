"""Pairwise ranking losses as XGBoost and LightGBM objectives: the query groups read from the
training data, the derivatives equal to fastloss's own, and real rankers trained on a small
learning-to-rank set compared with the libraries' built-in ranking objectives."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import fastloss as fl

ROUNDS = 50
XGB_PARAMS = {"tree_method": "hist", "max_depth": 3, "eta": 0.1, "nthread": 1}
LGB_PARAMS = {"num_leaves": 8, "learning_rate": 0.1, "verbose": -1, "num_threads": 1,
              "deterministic": True, "force_row_wise": True}


# -- data and ranking quality ------------------------------------------------------------------
def ltr_data(seed, n_queries=200, n_docs=10, n_features=10, noise=1.0):
    """Queries of n_docs documents; relevance 0-3 from a noisy linear function of the features
    (cut at its 50%, 80% and 95% quantiles). The coefficients are the same for every seed."""
    rng = np.random.default_rng(seed)
    beta = np.random.default_rng(123).standard_normal(n_features)
    X = rng.standard_normal((n_queries * n_docs, n_features))
    latent = X @ beta
    z = latent + noise * latent.std() * rng.standard_normal(len(X))
    relevance = np.digitize(z, np.quantile(z, [0.5, 0.8, 0.95])).astype(np.float64)
    return X, relevance, np.full(n_queries, n_docs)


def split_groups(values, sizes):
    return np.split(np.asarray(values, dtype=np.float64), np.cumsum(sizes)[:-1])


def ndcg_at(scores, relevance, sizes, k=10):
    """Mean NDCG@k over the queries with a relevant document (gain 2^rel - 1, discount
    1 / log2(rank + 1), ties in the scores broken by document order)."""
    values = []
    for s, r in zip(split_groups(scores, sizes), split_groups(relevance, sizes)):
        gain = 2.0 ** r - 1.0
        discount = 1.0 / np.log2(np.arange(2, min(k, len(r)) + 2))
        ideal = np.sort(gain)[::-1][:k] @ discount
        if ideal > 0:
            values.append(gain[np.argsort(-s, kind="stable")][:k] @ discount / ideal)
    return float(np.mean(values))


def pair_accuracy(scores, relevance, sizes):
    """Fraction of the pairs of different relevance (within a query) ordered correctly."""
    right = total = 0
    for s, r in zip(split_groups(scores, sizes), split_groups(relevance, sizes)):
        dr = np.sign(r[:, None] - r[None, :])
        ds = np.sign(s[:, None] - s[None, :])
        right += np.sum((dr > 0) & (ds > 0))
        total += np.sum(dr > 0)
    return right / total


def random_ndcg(relevance, sizes):
    rng = np.random.default_rng(7)
    return np.mean([ndcg_at(rng.standard_normal(len(relevance)), relevance, sizes)
                    for _ in range(20)])


@pytest.fixture(scope="module")
def ltr():
    Xtr, ytr, gtr = ltr_data(0)
    Xte, yte, gte = ltr_data(1)
    return Xtr, ytr, gtr, Xte, yte, gte


def check_ranking(name, scores, built_in_scores, yte, gte, train_losses):
    """Assertions shared by both libraries. Measured with XGBoost 3.2.0 and LightGBM 4.7.0:
    test NDCG@10 0.84-0.86 for fastloss's objectives and the built-in ones alike, 0.64 for
    random scores; pair accuracy 0.78-0.79 (0.5 by chance); the training loss falls to about
    half (logistic) or a third (hinge) of its first value in 50 rounds."""
    assert np.all(np.isfinite(scores))
    assert np.all(np.isfinite(train_losses))
    assert train_losses[-1] < 0.7 * train_losses[0], f"{name}: training loss {train_losses}"
    ours = ndcg_at(scores, yte, gte)
    theirs = ndcg_at(built_in_scores, yte, gte)
    chance = random_ndcg(yte, gte)
    assert ours > chance + 0.15, f"{name}: NDCG@10 {ours:.4f}, random {chance:.4f}"
    assert ours > theirs - 0.03, f"{name}: NDCG@10 {ours:.4f}, built-in {theirs:.4f}"
    assert pair_accuracy(scores, yte, gte) > 0.7


def group_weights(n_groups, seed=4):
    return np.random.default_rng(seed).uniform(0.5, 2.0, n_groups)


# -- XGBoost ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def xgb():
    return pytest.importorskip("xgboost")


@pytest.fixture(scope="module")
def fx(xgb):
    import fastloss.xgboost as fx

    return fx


def test_xgboost_pairwise_logistic_ranks_like_rank_pairwise(xgb, fx, ltr):
    Xtr, ytr, gtr, Xte, yte, gte = ltr
    dtrain = xgb.DMatrix(Xtr, ytr, group=gtr)
    built_in = xgb.train(dict(XGB_PARAMS, objective="rank:pairwise"), dtrain, ROUNDS)
    log = {}
    custom = xgb.train(XGB_PARAMS, dtrain, ROUNDS, obj=fx.objective("pairwise_logistic"),
                       evals=[(dtrain, "train")], evals_result=log,
                       custom_metric=fx.metric("pairwise_logistic"), verbose_eval=False)
    dtest = xgb.DMatrix(Xte)
    check_ranking("xgboost", custom.predict(dtest), built_in.predict(dtest), yte, gte,
                  log["train"]["pairwise_logistic"])
    # The recorded metric is fastloss's mean loss over the groups.
    margins = custom.predict(dtrain, output_margin=True)
    assert log["train"]["pairwise_logistic"][-1] == pytest.approx(
        float(fl.pairwise_logistic(margins, ytr, group=gtr, reduction="mean")), rel=1e-6)


def test_xgboost_pairwise_hinge_trains_with_a_floor(xgb, fx, ltr):
    """The hinge's exact Hessian is 0: with hess_floor=1 each leaf takes a gradient step."""
    Xtr, ytr, gtr, Xte, yte, gte = ltr
    dtrain = xgb.DMatrix(Xtr, ytr, group=gtr)
    built_in = xgb.train(dict(XGB_PARAMS, objective="rank:pairwise"), dtrain, ROUNDS)
    log = {}
    custom = xgb.train(XGB_PARAMS, dtrain, ROUNDS,
                       obj=fx.objective("pairwise_hinge", hess_floor=1.0),
                       evals=[(dtrain, "train")], evals_result=log,
                       custom_metric=fx.metric("pairwise_hinge"), verbose_eval=False)
    dtest = xgb.DMatrix(Xte)
    check_ranking("xgboost hinge", custom.predict(dtest), built_in.predict(dtest), yte, gte,
                  log["train"]["pairwise_hinge"])


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("by", ["group", "qid"])
def test_xgboost_objective_is_fastloss_grad_hess(xgb, fx, by, weighted):
    rng = np.random.default_rng(5)
    sizes = np.array([7, 1, 12, 3, 9])
    n = int(sizes.sum())
    rel = rng.integers(0, 4, n).astype(np.float64)
    margins = rng.standard_normal(n).astype(np.float32)
    w = group_weights(len(sizes)) if weighted else None
    groups = {"group": sizes} if by == "group" else {"qid": np.repeat(np.arange(5) * 3, sizes)}
    d = xgb.DMatrix(np.zeros((n, 1)), label=rel, weight=w, **groups)
    for loss, opts in [("pairwise_logistic", {}), ("pairwise_logistic", {"sigma": 2.0}),
                       ("pairwise_hinge", {"margin": 0.5}),
                       ("pairwise_logistic", {"pair_weight": "relevance_difference"})]:
        g, h = fx.objective(loss, hess_floor=1e-3, **opts)(margins, d)
        g_ref, h_ref = fl.losses[loss].grad_hess(margins, rel, group=sizes, sample_weight=w,
                                                 hessian="clip", hess_floor=1e-3, **opts)
        assert g.dtype == np.float32 and g.shape == (n,)
        np.testing.assert_array_equal(g, g_ref)
        np.testing.assert_array_equal(h, h_ref)
        value = fx.metric(loss, **opts)(margins, d)
        assert value == (loss, pytest.approx(float(fl.losses[loss](
            margins, rel, group=sizes, sample_weight=w, reduction="mean", **opts)), rel=1e-12))
    # hessian="abs" floors after the kernel and weights per document: the same numbers, as
    # pairwise_logistic's Hessian is never negative.
    g_abs, h_abs = fx.objective("pairwise_logistic", hessian="abs", hess_floor=1e-3)(margins, d)
    g_ref, h_ref = fl.pairwise_logistic.grad_hess(margins, rel, group=sizes, sample_weight=w,
                                                  hessian="clip", hess_floor=1e-3)
    np.testing.assert_allclose(g_abs, g_ref, rtol=1e-6)
    np.testing.assert_allclose(h_abs, h_ref, rtol=1e-6)
    # The single-document group has no pair: gradient 0, Hessian floor x weight.
    assert g_ref[7] == 0 and h_ref[7] == pytest.approx(1e-3 * (w[1] if weighted else 1.0))


def test_xgboost_bad_input(xgb, fx):
    n = 20
    rel = np.arange(n, dtype=np.float64) % 4
    margins = np.zeros(n, dtype=np.float32)
    obj = fx.objective("pairwise_logistic")
    with pytest.raises(ValueError, match="query groups: build the DMatrix"):
        obj(margins, xgb.DMatrix(np.zeros((n, 1)), label=rel))
    with pytest.raises(ValueError, match="query groups: build the DMatrix"):
        fx.metric("pairwise_hinge")(margins, xgb.DMatrix(np.zeros((n, 1)), label=rel))
    with pytest.raises(ValueError, match="one score per document"):
        obj(np.zeros((n, 2), dtype=np.float32),
            xgb.DMatrix(np.zeros((n, 1)), label=rel, group=[10, 10]))
    with pytest.raises(TypeError, match="read from the training data"):
        fx.objective("pairwise_logistic", group=[10, 10])
    with pytest.raises(ValueError, match="hessian"):
        fx.objective("pairwise_hinge", hessian="fisher")
    # The scikit-learn API's call, (y_true, y_pred[, sample_weight]), carries no groups.
    with pytest.raises(ValueError, match="native API"):
        obj(rel, margins)
    with pytest.raises(ValueError, match="native API"):
        fx.metric("pairwise_logistic")(rel, margins, sample_weight=np.ones(n))


def test_xgboost_sklearn_api_refuses_pairwise(xgb, fx, ltr):
    Xtr, ytr, gtr = ltr[:3]
    model = xgb.XGBRegressor(objective=fx.objective("pairwise_logistic"), n_estimators=2)
    with pytest.raises(ValueError, match="native API"):
        model.fit(Xtr, ytr)
    # XGBRanker refuses every custom objective itself (XGBoost 2-3); should it start passing
    # the query ids, this test says so and the adapter can take them.
    with pytest.raises(ValueError, match="custom objective"):
        xgb.XGBRanker(objective=fx.objective("pairwise_logistic"))


# -- LightGBM -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lgb():
    return pytest.importorskip("lightgbm")


@pytest.fixture(scope="module")
def flg(lgb):
    import fastloss.lightgbm as flg

    return flg


@pytest.mark.parametrize("built_in", ["lambdarank", "rank_xendcg"])
def test_lightgbm_pairwise_logistic_ranks_like_built_in(lgb, flg, ltr, built_in):
    Xtr, ytr, gtr, Xte, yte, gte = ltr
    reference = lgb.train(dict(LGB_PARAMS, objective=built_in),
                          lgb.Dataset(Xtr, ytr, group=gtr), ROUNDS)
    log = {}
    train = lgb.Dataset(Xtr, ytr, group=gtr)
    custom = lgb.train(dict(LGB_PARAMS, objective=flg.objective("pairwise_logistic"),
                            metric="None"), train, ROUNDS, valid_sets=[train],
                       valid_names=["train"], feval=flg.metric("pairwise_logistic"),
                       callbacks=[lgb.record_evaluation(log)])
    check_ranking("lightgbm", custom.predict(Xte), reference.predict(Xte), yte, gte,
                  log["train"]["pairwise_logistic"])
    assert log["train"]["pairwise_logistic"][-1] == pytest.approx(
        float(fl.pairwise_logistic(custom.predict(Xtr), ytr, group=gtr, reduction="mean")),
        rel=1e-12)


def test_lightgbm_pairwise_hinge_trains_with_a_floor(lgb, flg, ltr):
    Xtr, ytr, gtr, Xte, yte, gte = ltr
    reference = lgb.train(dict(LGB_PARAMS, objective="lambdarank"),
                          lgb.Dataset(Xtr, ytr, group=gtr), ROUNDS)
    log = {}
    train = lgb.Dataset(Xtr, ytr, group=gtr)
    custom = lgb.train(dict(LGB_PARAMS, objective=flg.objective("pairwise_hinge", hess_floor=1.0),
                            metric="None"), train, ROUNDS, valid_sets=[train],
                       valid_names=["train"], feval=flg.metric("pairwise_hinge"),
                       callbacks=[lgb.record_evaluation(log)])
    check_ranking("lightgbm hinge", custom.predict(Xte), reference.predict(Xte), yte, gte,
                  log["train"]["pairwise_hinge"])


def test_lgbm_ranker_with_weights_and_metric(lgb, flg, ltr):
    """LGBMRanker passes (y_true, y_pred, weight, group): the same model as the native API,
    with per-document weights constant within each group taken as the group weights."""
    Xtr, ytr, gtr, Xte, yte, gte = ltr
    w = np.repeat(group_weights(len(gtr)), gtr)
    common = dict(n_estimators=20, num_leaves=8, learning_rate=0.1, verbose=-1, n_jobs=1,
                  deterministic=True, force_row_wise=True)
    ranker = lgb.LGBMRanker(objective=flg.objective("pairwise_logistic"), **common)
    # LightGBM 4.7 deprecates eval_set for eval_X/eval_y, which older versions lack.
    if "eval_X" in inspect.signature(lgb.LGBMRanker.fit).parameters:
        evals = {"eval_X": (Xte,), "eval_y": (yte,)}
    else:
        evals = {"eval_set": [(Xte, yte)]}
    ranker.fit(Xtr, ytr, group=gtr, sample_weight=w, eval_group=[gte],
               eval_metric=flg.metric("pairwise_logistic"), **evals)
    native = lgb.train(dict(LGB_PARAMS, objective=flg.objective("pairwise_logistic")),
                       lgb.Dataset(Xtr, ytr, group=gtr, weight=w), 20)
    np.testing.assert_allclose(ranker.predict(Xte), native.predict(Xte), rtol=1e-12)
    recorded = ranker.evals_result_["valid_0"]["pairwise_logistic"][-1]
    assert recorded == pytest.approx(float(fl.pairwise_logistic(
        ranker.predict(Xte), yte, group=gte, reduction="mean")), rel=1e-12)
    assert ndcg_at(ranker.predict(Xte), yte, gte) > random_ndcg(yte, gte) + 0.15


def test_lightgbm_objective_is_fastloss_grad_hess(lgb, flg):
    rng = np.random.default_rng(6)
    sizes = np.array([7, 0, 12, 3, 9])  # an empty group: no documents, left out
    n = int(sizes.sum())
    rel = rng.integers(0, 4, n).astype(np.float64)
    scores = rng.standard_normal(n)
    gw = group_weights(len(sizes))
    kept = sizes > 0
    for loss, opts in [("pairwise_logistic", {}), ("pairwise_hinge", {"margin": 2.0})]:
        obj = flg.objective(loss, hess_floor=1e-3, **opts)
        for w in (None, np.repeat(gw, sizes)):
            g, h = obj(rel, scores, w, sizes)  # scikit-learn's call
            w_ref = None if w is None else gw[kept]
            g_ref, h_ref = fl.losses[loss].grad_hess(scores, rel, group=sizes[kept],
                                                     sample_weight=w_ref, hessian="clip",
                                                     hess_floor=1e-3, **opts)
            np.testing.assert_array_equal(g, g_ref)
            np.testing.assert_array_equal(h, h_ref)
            name, value, higher_better = flg.metric(loss, **opts)(rel, scores, w, sizes)
            assert (name, higher_better) == (loss, False)
            assert value == pytest.approx(float(fl.losses[loss](
                scores, rel, group=sizes[kept], sample_weight=w_ref, reduction="mean",
                **opts)), rel=1e-12)
    # The native call reads the same from a constructed Dataset.
    X = rng.standard_normal((n, 3))
    train = lgb.Dataset(X, rel, group=sizes, weight=np.repeat(gw, sizes),
                        params={"verbose": -1, "min_data_in_bin": 1}).construct()
    g, h = flg.objective("pairwise_logistic")(scores, train)
    g_ref, h_ref = fl.pairwise_logistic.grad_hess(
        scores, rel, group=sizes[kept], sample_weight=gw[kept].astype(np.float32),
        hessian="clip", hess_floor=1e-6)  # LightGBM stores weights as float32
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(h, h_ref)


def test_lightgbm_bad_input(lgb, flg):
    n = 20
    rel = np.arange(n, dtype=np.float64) % 4
    scores = np.zeros(n)
    obj = flg.objective("pairwise_logistic")
    with pytest.raises(ValueError, match="query groups"):
        obj(rel, scores, None, None)  # LGBMRegressor: no group
    with pytest.raises(ValueError, match="query groups"):
        flg.metric("pairwise_logistic")(rel, scores, None, None)
    train = lgb.Dataset(np.random.default_rng(0).standard_normal((n, 2)), rel,
                        params={"verbose": -1, "min_data_in_bin": 1}).construct()
    with pytest.raises(ValueError, match="query groups"):
        obj(scores, train)
    with pytest.raises(ValueError, match="differ inside group 1"):
        obj(rel, scores, np.r_[np.ones(10), np.ones(9), 2.0], np.array([10, 10]))
    with pytest.raises(ValueError, match="sum to 19"):
        obj(rel, scores, None, np.array([10, 9]))
    with pytest.raises(ValueError, match="weight: 2 values for 20 documents"):
        obj(rel, scores, np.ones(2), np.array([10, 10]))
    with pytest.raises(TypeError, match="read from the training data"):
        flg.objective("pairwise_hinge", qid=np.zeros(n, dtype=int))
    with pytest.raises(TypeError, match="group must hold integer group sizes"):
        obj(rel, scores, None, np.array([10.0, 10.0]))
    with pytest.raises(ValueError, match="one score per document.*num_class"):
        obj(np.r_[rel, rel], np.zeros((n, 2)), None, np.array([10, 10]))
