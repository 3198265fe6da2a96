"""Small classification data sets for the gradient-boosting adapter tests (no fastloss import)."""

from __future__ import annotations

import numpy as np


def binary(seed=0, n=3_000, weights=None):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=10, n_informative=6, random_state=seed,
                               weights=weights)
    return X[:2_000], y[:2_000].astype(np.float64), X[2_000:], y[2_000:].astype(np.float64)


def multiclass(seed=1, n=3_000, k=4):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=10, n_informative=6, n_classes=k,
                               random_state=seed)
    return X[:2_000], y[:2_000].astype(np.float64), X[2_000:], y[2_000:].astype(np.float64)


def sigmoid(m):
    return 1.0 / (1.0 + np.exp(-np.asarray(m, dtype=np.float64)))


def softmax(m):
    m = np.asarray(m, dtype=np.float64)
    e = np.exp(m - m.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def imbalanced(seed=3, n=8_000):
    """2% positives, half for training, half for testing."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=20, n_informative=8, weights=[0.98],
                               flip_y=0.01, random_state=seed)
    h = n // 2
    return X[:h], y[:h].astype(np.float64), X[h:], y[h:].astype(np.float64)


# Class-imbalance objectives trained in the boosting tests: (loss, loss params, adapter options).
IMBALANCED_OBJECTIVES = [
    ("sigmoid_focal", {"gamma": 2.0, "alpha": 0.25}, {"hessian": "exact"}),
    ("sigmoid_focal", {"gamma": 2.0, "alpha": 0.25}, {"hessian": "fisher"}),
    ("sigmoid_focal", {"gamma": 0.5, "alpha": None}, {"hessian": "clip", "hess_floor": 1e-3}),
    ("sigmoid_power_cross_entropy", {"n": 2.0}, {}),
    ("sigmoid_power_cross_entropy", {"n": 4.0}, {"hessian": "fisher"}),
]


def average_precision(y, score):
    """Average precision (area under the precision-recall steps), as scikit-learn defines it."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, score))


class FiniteWatch:
    """Wraps an objective; records whether any gradient or Hessian it returned was not finite."""

    def __init__(self, objective):
        self.objective = objective
        self.finite = True
        self.calls = 0

    def __call__(self, *args):
        g, h = self.objective(*args)
        self.finite &= bool(np.all(np.isfinite(g)) and np.all(np.isfinite(h)))
        self.calls += 1
        return g, h

    def __deepcopy__(self, memo):  # LightGBM deep-copies its parameters: keep one record
        return self
