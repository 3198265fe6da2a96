"""Float64 reference formulas for the margin and ranking losses.

Written from the definitions (docs/losses.md, and the papers and libraries cited there),
independently of the compiled kernels: nothing here imports fastloss. Row and pair losses
are written as plain loops over rows and pairs, the slowest and plainest form.

Elementwise entries follow tests/reference.py's REFERENCE format, so that they join the
shared matrix of tests/test_regression.py.
"""

from __future__ import annotations

import math

import numpy as np


def _sign_label(t):
    t = np.asarray(t, dtype=np.float64)
    return np.where(np.isnan(t), np.nan, np.where(t > 0, 1.0, -1.0))


def hinge(f, t, margin=1.0):
    """l = max(0, m - y f); g = -y where m - y f > 0, else 0; h = 0."""
    f = np.asarray(f, dtype=np.float64)
    y = _sign_label(t)
    with np.errstate(invalid="ignore"):
        z = margin - y * f
        value = np.where(np.isnan(z), np.nan, np.maximum(z, 0.0))
        grad = np.where(np.isnan(z), np.nan, np.where(z > 0, -y, 0.0))
        hess = np.where(np.isnan(z), np.nan, 0.0)
    return value, grad, hess


def hinge_xgboost_hess(f, t, margin=1.0):
    """XGBoost binary:hinge's Hessian: 1 where y f < margin, else FLT_MIN."""
    z = margin - _sign_label(t) * np.asarray(f, dtype=np.float64)
    return np.where(z > 0, 1.0, float(np.finfo(np.float32).tiny))


def squared_hinge(f, t, margin=1.0):
    """l = max(0, m - y f)^2; g = -2 y max(0, m - y f); h = 2 [m - y f > 0]."""
    f = np.asarray(f, dtype=np.float64)
    y = _sign_label(t)
    with np.errstate(invalid="ignore"):
        z = margin - y * f
        zp = np.where(np.isnan(z), np.nan, np.maximum(z, 0.0))
        value = zp * zp
        grad = -2.0 * y * zp
        hess = np.where(np.isnan(z), np.nan, np.where(z > 0, 2.0, 0.0))
    return value, grad, hess


def hinge_kink_distance(f, t, margin=1.0):
    return np.abs(margin - _sign_label(t) * np.asarray(f, dtype=np.float64))


def margin_ranking(x1, x2, y, margin=0.0):
    """l = max(0, m - y (x1 - x2)); (dl/dx1, dl/dx2) = (-y, y) where violated."""
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = np.asarray(x2, dtype=np.float64)
    s = _sign_label(y)
    z = margin - s * (x1 - x2)
    value = np.maximum(z, 0.0)
    g1 = np.where(z > 0, -s, 0.0)
    return value, g1, -g1


REFERENCE = {
    "hinge": {
        "fn": hinge,
        "params": {"margin": 1.0},
        "kind": "elementwise",
        "fisher": None,
        "kink_distance": hinge_kink_distance,
    },
    "squared_hinge": {
        "fn": squared_hinge,
        "params": {"margin": 1.0},
        "kind": "elementwise",
        "fisher": None,
        "kink_distance": hinge_kink_distance,
    },
}


# --------------------------------------------------------------------------
# Row losses: scores [N, K], one value per row (unweighted; callers apply weights)
# --------------------------------------------------------------------------


def multiclass_hinge(s, y, kind="crammer_singer", margin=1.0, p=1):
    """Per row (value, grad row, hess row) of the Crammer-Singer or Weston-Watkins loss."""
    s = np.asarray(s, dtype=np.float64)
    n, k = s.shape
    value = np.zeros(n)
    grad = np.zeros((n, k))
    hess = np.zeros((n, k))
    for i in range(n):
        yi = int(y[i])
        if kind == "crammer_singer":
            best, c = -math.inf, -1
            for j in range(k):
                if j != yi and s[i, j] > best:
                    best, c = s[i, j], j
            z = margin + best - s[i, yi]
            if z > 0:
                value[i] = z
                grad[i, c] += 1.0
                grad[i, yi] -= 1.0
        else:
            total = 0.0
            for j in range(k):
                if j == yi:
                    continue
                z = margin - s[i, yi] + s[i, j]
                if z > 0:
                    total += z ** p
                    d = 1.0 if p == 1 else 2.0 * z
                    grad[i, j] += d / k
                    grad[i, yi] -= d / k
                    if p == 2:
                        hess[i, j] += 2.0 / k
                        hess[i, yi] += 2.0 / k
            value[i] = total / k
    return value, grad, hess


def _softplus(a):
    return max(a, 0.0) + math.log1p(math.exp(-abs(a)))


def _sigmoid(a):
    return 1.0 / (1.0 + math.exp(-a)) if a >= 0 else math.exp(a) / (1.0 + math.exp(a))


def crcnn_ranking(s, y, gamma=2.0, m_pos=2.5, m_neg=0.5, other_class=None):
    """dos Santos et al. (2015): softplus(gamma (m+ - s_y)) + softplus(gamma (m- + s_c))."""
    s = np.asarray(s, dtype=np.float64)
    n, k = s.shape
    value = np.zeros(n)
    grad = np.zeros((n, k))
    hess = np.zeros((n, k))
    for i in range(n):
        yi = int(y[i])
        if other_class is None or yi != other_class:
            a = gamma * (m_pos - s[i, yi])
            value[i] += _softplus(a)
            grad[i, yi] = -gamma * _sigmoid(a)
            hess[i, yi] = gamma * gamma * _sigmoid(a) * _sigmoid(-a)
        best, c = -math.inf, -1
        for j in range(k):
            if j != yi and j != other_class and s[i, j] > best:
                best, c = s[i, j], j
        if c >= 0:
            b = gamma * (m_neg + s[i, c])
            value[i] += _softplus(b)
            grad[i, c] = gamma * _sigmoid(b)
            hess[i, c] = gamma * gamma * _sigmoid(b) * _sigmoid(-b)
    return value, grad, hess


def crcnn_predict(s, other_class=None):
    s = np.asarray(s, dtype=np.float64)
    out = np.zeros(s.shape[0], dtype=np.int64)
    for i in range(s.shape[0]):
        best, c = -math.inf, -1
        for j in range(s.shape[1]):
            if j != other_class and s[i, j] > best:
                best, c = s[i, j], j
        out[i] = other_class if (other_class is not None and (c < 0 or best < 0)) else c
    return out


def multilabel_softmax_cross_entropy(s, t, mask=None):
    """log(1 + sum (1 - t) e^s) + log(1 + sum t e^{-s}) per row, in extended precision."""
    s = np.asarray(s, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    n, k = s.shape
    m = np.ones((n, k), bool) if mask is None else np.broadcast_to(mask, (n, k))
    value = np.zeros(n)
    grad = np.zeros((n, k))
    hess = np.zeros((n, k))
    for i in range(n):
        a_terms = [(1 - t[i, j], s[i, j]) for j in range(k) if m[i, j]]
        b_terms = [(t[i, j], -s[i, j]) for j in range(k) if m[i, j]]

        def lse(terms):
            top = max([0.0] + [x for w, x in terms if w > 0])
            total = math.exp(-top) + sum(w * math.exp(x - top) for w, x in terms if w > 0)
            return top, total

        ta, sa = lse(a_terms)
        tb, sb = lse(b_terms)
        value[i] = ta + math.log(sa) + tb + math.log(sb)
        for j in range(k):
            if not m[i, j]:
                continue
            u = (1 - t[i, j]) * math.exp(s[i, j] - ta) / sa if t[i, j] < 1 else 0.0
            v = t[i, j] * math.exp(-s[i, j] - tb) / sb if t[i, j] > 0 else 0.0
            grad[i, j] = u - v
            hess[i, j] = u * (1 - u) + v * (1 - v)
    return value, grad, hess


# --------------------------------------------------------------------------
# Pairwise ranking within groups
# --------------------------------------------------------------------------


def pairwise(scores, rel, groups, kind="logistic", sigma=1.0, margin=1.0,
             pair_weight="uniform"):
    """(per-group loss, per-document loss, grad, hess) summed over the pairs of each group.

    groups: a list of index arrays (the documents of each group). Every pair with
    rel_i > rel_j contributes f(s_i - s_j) (RankNet: softplus(-sigma d); hinge:
    max(0, margin - d)); half of it is booked to each document of the pair.
    """
    scores = np.asarray(scores, dtype=np.float64)
    rel = np.asarray(rel, dtype=np.float64)
    n = scores.shape[0]
    per_group = np.zeros(len(groups))
    per_doc = np.zeros(n)
    grad = np.zeros(n)
    hess = np.zeros(n)
    for gi, idx in enumerate(groups):
        idx = list(idx)
        for a in idx:
            for b in idx:
                if not rel[a] > rel[b]:
                    continue
                w = (rel[a] - rel[b]) if pair_weight == "relevance_difference" else 1.0
                d = scores[a] - scores[b]
                if kind == "logistic":
                    f = _softplus(-sigma * d)
                    f1 = -sigma * _sigmoid(-sigma * d)
                    f2 = sigma * sigma * _sigmoid(sigma * d) * _sigmoid(-sigma * d)
                else:
                    f = max(0.0, margin - d)
                    f1 = -1.0 if margin - d > 0 else 0.0
                    f2 = 0.0
                per_group[gi] += w * f
                per_doc[a] += 0.5 * w * f
                per_doc[b] += 0.5 * w * f
                grad[a] += w * f1
                grad[b] -= w * f1
                hess[a] += w * f2
                hess[b] += w * f2
    return per_group, per_doc, grad, hess
