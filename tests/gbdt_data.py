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
