"""Gradient boosting on an imbalanced binary problem with fastloss objectives.

    python examples/gbdt_imbalanced.py            # XGBoost and LightGBM, whichever is installed

Data: scikit-learn's make_classification, 2% positives, 20 features (8 informative), 20,000
training and 20,000 test samples, label noise flip_y=0.01. Every model: 100 rounds, depth-3
trees (LightGBM: 8 leaves), learning rate 0.1, starting from a margin of 0. Objectives: the
sigmoid cross-entropy, the same with class_weight="balanced", the focal loss (gamma=2,
alpha=0.25) with its exact Hessian (floored at hess_floor) and with its Fisher (expected)
Hessian, and the p^n trick (n=2, 4). Reported on the test split: average precision (AP,
threshold-free), F1 at the model's own decision threshold (probability 0.5: sigmoid(z) > 0.5,
or p^n > 0.5 for the p^n trick), the log-loss of the model's probability, and whether any
gradient, Hessian or prediction was not finite.
"""

from __future__ import annotations

import argparse
import sys

import fastloss as fl
import numpy as np

ROUNDS = 100
OBJECTIVES = [
    ("sigmoid_cross_entropy", {}, {}),
    ("sigmoid_cross_entropy", {"class_weight": "balanced"}, {}),
    ("sigmoid_focal", {"gamma": 2.0, "alpha": 0.25}, {"hessian": "exact"}),
    ("sigmoid_focal", {"gamma": 2.0, "alpha": 0.25}, {"hessian": "fisher"}),
    ("sigmoid_power_cross_entropy", {"n": 2.0}, {}),
    ("sigmoid_power_cross_entropy", {"n": 4.0}, {}),
]


def data(seed=0, n=40_000):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=20, n_informative=8, weights=[0.98],
                               flip_y=0.01, random_state=seed)
    half = n // 2
    return X[:half], y[:half].astype(np.float64), X[half:], y[half:].astype(np.float64)


def probability(name, params, margins):
    p = 1.0 / (1.0 + np.exp(-margins))
    return p ** params.get("n", 1.0) if name == "sigmoid_power_cross_entropy" else p


class Watch:
    """Wraps an objective and records whether it ever returned a non-finite value."""

    def __init__(self, objective):
        self.objective = objective
        self.finite = True
        self.__name__ = objective.__name__

    def __call__(self, *args):
        g, h = self.objective(*args)
        self.finite &= bool(np.all(np.isfinite(g)) and np.all(np.isfinite(h)))
        return g, h


def train_xgboost(name, params, opts, Xtr, ytr, Xte, rounds=ROUNDS):
    import fastloss.xgboost as fx
    import xgboost as xgb

    obj = Watch(fx.objective(name, **opts, **params))
    dtrain = xgb.DMatrix(Xtr, label=ytr, base_margin=np.zeros(len(ytr)))
    booster = xgb.train({"tree_method": "hist", "max_depth": 3, "eta": 0.1, "nthread": 1},
                        dtrain, rounds, obj=obj)
    margins = booster.predict(xgb.DMatrix(Xte, base_margin=np.zeros(len(Xte))),
                              output_margin=True)
    return margins.astype(np.float64), obj.finite


def train_lightgbm(name, params, opts, Xtr, ytr, Xte, rounds=ROUNDS):
    import fastloss.lightgbm as flg
    import lightgbm as lgb

    obj = Watch(flg.objective(name, **opts, **params))
    booster = lgb.train({"objective": obj, "num_leaves": 8, "learning_rate": 0.1, "verbose": -1,
                         "num_threads": 1, "deterministic": True, "force_row_wise": True},
                        lgb.Dataset(Xtr, ytr), rounds)
    return booster.predict(Xte).astype(np.float64), obj.finite


def scores(name, params, margins, yte):
    from sklearn.metrics import average_precision_score, f1_score

    finite = bool(np.all(np.isfinite(margins)))
    if not finite:
        return {"ap": float("nan"), "f1": float("nan"), "logloss": float("nan"), "finite": False}
    p = probability(name, params, margins)
    pc = np.clip(p, 1e-15, 1 - 1e-15)
    logloss = float(-np.mean(yte * np.log(pc) + (1 - yte) * np.log(1 - pc)))
    return {"ap": float(average_precision_score(yte, margins)),
            "f1": float(f1_score(yte, p > 0.5, zero_division=0.0)),
            "logloss": logloss, "finite": finite}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", choices=("xgboost", "lightgbm"), action="append",
                        help="train with this library only (repeatable; default: every "
                             "installed one)")
    args = parser.parse_args(argv)
    Xtr, ytr, Xte, yte = data()
    print(f"fastloss {fl.__version__}; {len(ytr):,} training / {len(yte):,} test samples, "
          f"{ytr.mean():.1%} / {yte.mean():.1%} positives; {ROUNDS} rounds")
    libraries = []
    for lib, train in (("xgboost", train_xgboost), ("lightgbm", train_lightgbm)):
        if args.library and lib not in args.library:
            continue
        try:
            __import__(lib)
        except ImportError:
            continue
        libraries.append((lib, train))
    print("| library | objective | AP | F1 at p = 0.5 | log-loss | all finite |")
    print("|---|---|---|---|---|---|")
    for lib, train in libraries:
        for name, params, opts in OBJECTIVES:
            margins, finite = train(name, params, opts, Xtr, ytr, Xte)
            s = scores(name, params, margins, yte)
            label = name + "".join(f", {k}={v}" for k, v in {**params, **opts}.items())
            print(f"| {lib} | {label} | {s['ap']:.3f} | {s['f1']:.3f} | {s['logloss']:.4f} | "
                  f"{'yes' if finite and s['finite'] else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
