"""Float64 NumPy reference for the cross-entropy losses of fastloss.

Written from the mathematics alone (nothing here imports fastloss), with no
cleverness: logistic terms through ``np.logaddexp``, the softmax through a
log-sum-exp with the row maximum subtracted, and a plain loop over rows for
the multiclass loss.

sigmoid cross-entropy (elementwise), z the logit, t in [0, 1], P = pos_weight,
t' = t (1 - eps) + eps / 2 (binary label smoothing):

    l = P t' softplus(-z) + (1 - t') softplus(z)
    g = -P t' sigmoid(-z) + (1 - t') sigmoid(z)
    h = (P t' + 1 - t') sigmoid(z) sigmoid(-z)

and on probabilities q (from_logits=False, q clipped to [c, 1 - c]):

    l = -(P t' log q + (1 - t') log(1 - q))
    g = -P t' / q + (1 - t') / (1 - q)
    h = P t' / q^2 + (1 - t') / (1 - q)^2

A class weight [w_neg, w_pos] gives each element the factor
w_neg (1 - t) + w_pos t (t unsmoothed), which acts like a sample weight.

softmax cross-entropy (one value per row of K), q = (1 - eps) t + eps / K
with t the one-hot row of an index target or a probability row, c the class
weights, a = sum_k c_k q_k:

    l = -sum_k c_k q_k log p_k,   p = softmax(x)
    g = a p - c q
    h = a p (1 - p)                     (diagonal)

and on probabilities p (from_logits=False, p clipped below at c):

    l = -sum_k c_k q_k log p_k,   g = -c q / p,   h = c q / p^2

A log base b divides value, gradient and Hessian by ln b.

Reductions: "none" gives w l per sample, "sum" the float64 sum of w l, "mean"
that sum over D, where D is the sum of the weights that the API defines
(sample weight x class factor for the binary loss; sample weight x c[y] over
kept rows for index targets, sample weight over kept rows for probability
targets).  Gradients and Hessians are of what was returned: w g, w h, with
an extra 1 / D for "mean".

The module also carries self-checks of the reference (``test_*``), which run
without fastloss.
"""

from __future__ import annotations

import math

import numpy as np

# The default probability clip: machine epsilon of the float64 compute dtype.
F64_EPS = float(np.finfo(np.float64).eps)

__all__ = [
    "binary_class_factor",
    "binary_class_weight",
    "class_counts",
    "log_scale",
    "reduce",
    "sigmoid",
    "sigmoid_ce_terms",
    "sigmoid_cross_entropy",
    "softmax_ce_rows",
    "softmax_class_weight",
    "softmax_cross_entropy",
    "softplus",
    "weights_from_counts",
]


# --------------------------------------------------------------------------
# Scalar helpers
# --------------------------------------------------------------------------


def softplus(x):
    """log(1 + exp(x)), exact for every float64 x."""
    return np.logaddexp(0.0, np.asarray(x, dtype=np.float64))


def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow: exp(-softplus(-x))."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))


def log_scale(log_base):
    """Factor 1 / ln(b) that a log base puts on value, gradient and Hessian."""
    if log_base is None:
        return 1.0
    return 1.0 / math.log(float(log_base))


def hessian_policy(h, policy, hess_floor, n_classes=None):
    """The loss's own Hessian (before sample weights and 1/D) under a policy."""
    if policy in ("exact", "abs", "fisher"):
        # Cross-entropy Hessians are >= 0: "abs" changes nothing; "fisher" is
        # computed by the loss's own function (the expected Hessian).
        return np.abs(h) if policy == "abs" else h
    if policy == "clip":
        return np.maximum(h, hess_floor)
    if policy == "xgboost":
        return 2.0 * h
    if policy == "lightgbm":
        return h * (n_classes / (n_classes - 1.0))
    raise ValueError(f"unknown hessian policy {policy!r}")


def reduce(value, grad, hess, weight, denom_weight, reduction, row_axis_grad=False, dropped=None):
    """Apply sample weights and a reduction.

    value: per-sample losses (already including any class factor that is
    part of the loss); weight: the per-sample multiplier of value/grad/hess
    (sample weight x class factor); denom_weight: the per-sample weight that
    enters the mean's denominator.  grad/hess may carry a trailing class
    axis (row_axis_grad=True).  dropped: samples that are not part of the
    loss at all (ignored rows): their derivatives are 0 even when the mean's
    denominator is 0, where every other sample's are NaN.
    """
    value = np.asarray(value, dtype=np.float64)
    weight = np.broadcast_to(np.asarray(weight, dtype=np.float64), value.shape)
    wv = weight * value
    wg = None if grad is None else (weight[..., None] * grad if row_axis_grad else weight * grad)
    wh = None if hess is None else (weight[..., None] * hess if row_axis_grad else weight * hess)
    if reduction == "none":
        return wv, wg, wh
    total = float(np.sum(wv, dtype=np.float64))
    if reduction == "sum":
        return total, wg, wh
    if reduction == "mean":
        d = float(np.sum(np.broadcast_to(denom_weight, value.shape), dtype=np.float64))
        if d == 0.0:
            def undefined(a):
                if a is None:
                    return None
                a = a * math.nan
                if dropped is not None:
                    a[np.broadcast_to(dropped[..., None] if row_axis_grad else dropped, a.shape)] = 0.0
                return a

            return math.nan, undefined(wg), undefined(wh)
        return total / d, (None if wg is None else wg / d), (None if wh is None else wh / d)
    raise ValueError(f"unknown reduction {reduction!r}")


# --------------------------------------------------------------------------
# Sigmoid (binary / multi-label) cross-entropy
# --------------------------------------------------------------------------


def sigmoid_ce_terms(z, t, *, pos_weight=None, label_smoothing=0.0, from_logits=True,
                     log_base=None, clip=F64_EPS, fisher=False):
    """Unweighted elementwise (l, g, h) of the sigmoid cross-entropy, float64.

    fisher: h is the expected Hessian, t replaced by the model's probability.
    """
    z = np.asarray(z, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    p_w = np.asarray(1.0 if pos_weight is None else pos_weight, dtype=np.float64)
    z, t, p_w = np.broadcast_arrays(z, t, p_w)
    eps = float(label_smoothing)
    ts = t * (1.0 - eps) + 0.5 * eps
    with np.errstate(all="ignore"):
        if from_logits:
            s_pos = sigmoid(z)
            s_neg = sigmoid(-z)
            value = p_w * ts * softplus(-z) + (1.0 - ts) * softplus(z)
            grad = -p_w * ts * s_neg + (1.0 - ts) * s_pos
            th = s_pos * (1.0 - eps) + 0.5 * eps if fisher else ts
            hess = (p_w * th + 1.0 - th) * s_pos * s_neg
        else:
            q = np.clip(z, clip, 1.0 - clip)
            value = -(p_w * ts * np.log(q) + (1.0 - ts) * np.log1p(-q))
            grad = -p_w * ts / q + (1.0 - ts) / (1.0 - q)
            th = q * (1.0 - eps) + 0.5 * eps if fisher else ts
            hess = p_w * th / (q * q) + (1.0 - th) / ((1.0 - q) * (1.0 - q))
    s = log_scale(log_base)
    return value * s, grad * s, hess * s


def binary_class_weight(t, mode, sample_weight=None):
    """[w_neg, w_pos] from the (weighted) soft counts of the targets t."""
    t = np.asarray(t, dtype=np.float64)
    w = np.ones_like(t) if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, dtype=np.float64), t.shape)
    n_pos = float(np.sum(t * w))
    n_neg = float(np.sum((1.0 - t) * w))
    return weights_from_counts(np.array([n_neg, n_pos]), mode)


def binary_class_factor(t, class_weight, sample_weight=None):
    """The factor w_neg (1 - t) + w_pos t of each element (ones for None)."""
    t = np.asarray(t, dtype=np.float64)
    if class_weight is None:
        return np.ones_like(t)
    if isinstance(class_weight, str):
        w_neg, w_pos = binary_class_weight(t, class_weight, sample_weight)
    elif isinstance(class_weight, dict):
        w_neg, w_pos = float(class_weight.get(0, 1.0)), float(class_weight.get(1, 1.0))
    else:
        w_neg, w_pos = (float(v) for v in class_weight)
    return w_neg * (1.0 - t) + w_pos * t


def sigmoid_cross_entropy(z, t, *, reduction="none", sample_weight=None, hessian="exact",
                          hess_floor=1e-6, nan_policy="propagate", pos_weight=None,
                          class_weight=None, label_smoothing=0.0, from_logits=True, log_base=None,
                          clip=F64_EPS):
    """(value, grad, hess) of a fastloss call, computed in float64.

    z must already have the broadcast shape of the call (gradients are per
    element); ``clip`` is the probability clip of the compute dtype.
    """
    z = np.asarray(z, dtype=np.float64)
    shape = np.broadcast_shapes(z.shape, np.shape(t), np.shape(1.0 if pos_weight is None else pos_weight))
    t = np.broadcast_to(np.asarray(t, dtype=np.float64), shape)
    z = np.broadcast_to(z, shape)
    sw = np.ones(shape) if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, dtype=np.float64), shape)
    value, grad, hess = sigmoid_ce_terms(z, t, pos_weight=pos_weight, label_smoothing=label_smoothing,
                                         from_logits=from_logits, log_base=log_base, clip=clip, fisher=hessian == "fisher")
    hess = hessian_policy(hess, hessian, hess_floor)
    if nan_policy == "omit":
        bad = np.isnan(z) | np.isnan(t) | np.isnan(sw)
        t_counts = np.where(bad, 0.0, t)
        sw = np.where(bad, 0.0, sw)
        factor = binary_class_factor(t_counts, class_weight, sw)
        value, grad, hess = (np.where(bad, 0.0, a) for a in (value, grad, hess))
        factor = np.where(bad, 0.0, factor)
    else:
        factor = binary_class_factor(t, class_weight, sw if sample_weight is not None else None)
    weight = sw * factor
    return reduce(value, grad, hess, weight, weight, reduction)


# --------------------------------------------------------------------------
# Class weights from counts
# --------------------------------------------------------------------------


def weights_from_counts(counts, mode):
    """"balanced": n / (K n_c); "auto": proportional to 1 / n_c, summing to K."""
    counts = np.asarray(counts, dtype=np.float64)
    k = counts.size
    if np.any(counts <= 0):
        raise ValueError("a class has no samples")
    if mode == "balanced":
        return counts.sum() / (k * counts)
    if mode == "auto":
        inv = 1.0 / counts
        return inv * (k / inv.sum())
    raise ValueError(f"unknown mode {mode!r}")


def class_counts(labels, n_classes, sample_weight=None, ignore_index=None):
    """(Weighted) count of each class among integer labels, by a plain loop."""
    labels = np.asarray(labels)
    w = np.ones(labels.size) if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, dtype=np.float64), labels.shape).reshape(-1)
    labels = labels.reshape(-1)
    counts = np.zeros(n_classes)
    for y, wi in zip(labels.tolist(), w.tolist()):
        if ignore_index is not None and y == ignore_index:
            continue
        counts[int(y)] += wi
    return counts


def softmax_class_weight(target, n_classes, mode, sample_weight=None, ignore_index=-100,
                         rows_shape=None):
    """Class weights of the softmax loss: counts of index targets (weighted,
    ignored rows dropped) or column sums of probability targets."""
    target = np.asarray(target)
    if target.dtype.kind == "f":
        t = target.reshape(-1, n_classes).astype(np.float64)
        if sample_weight is not None:
            w = np.broadcast_to(np.asarray(sample_weight, dtype=np.float64), target.shape[:-1])
            t = t * w.reshape(-1, 1)
        return weights_from_counts(t.sum(axis=0), mode)
    if rows_shape is not None:
        target = np.broadcast_to(target, rows_shape)
        if sample_weight is not None:
            sample_weight = np.broadcast_to(sample_weight, rows_shape)
    return weights_from_counts(class_counts(target, n_classes, sample_weight, ignore_index), mode)


# --------------------------------------------------------------------------
# Softmax cross-entropy
# --------------------------------------------------------------------------


def softmax_ce_rows(x, target, *, class_weight=None, label_smoothing=0.0, ignore_index=-100,
                    from_logits=True, log_base=None, clip=F64_EPS, fisher=False):
    """Per-row (l, g, h, d, kept) for logits x[..., K] (rows flattened).

    fisher: h is the expected Hessian, the target distribution q replaced by its
    expectation under the model, (1 - eps) p + eps / K.

    l (N,), g and h (N, K) unweighted by sample weights; d (N,) the weight of
    the row in the mean's denominator before the sample weight (c[y] for index
    targets, 1 for probability targets, 0 for ignored rows).
    """
    x = np.asarray(x, dtype=np.float64)
    k = x.shape[-1]
    rows = x.reshape(-1, k)
    n = rows.shape[0]
    target = np.asarray(target)
    index_targets = target.dtype.kind in "biu"
    if index_targets:
        y_all = np.broadcast_to(target, x.shape[:-1]).reshape(-1)
    else:
        t_all = np.broadcast_to(target.astype(np.float64), x.shape).reshape(-1, k)
    c = np.ones(k) if class_weight is None else np.asarray(class_weight, dtype=np.float64)
    eps = float(label_smoothing)
    value = np.zeros(n)
    grad = np.zeros((n, k))
    hess = np.zeros((n, k))
    denom = np.zeros(n)
    kept = np.ones(n, dtype=bool)
    for i in range(n):
        if index_targets:
            y = int(y_all[i])
            if y == ignore_index:
                kept[i] = False
                continue
            t = np.zeros(k)
            t[y] = 1.0
            d = c[y]
        else:
            t = t_all[i]
            if 0 <= ignore_index < k and t[ignore_index] == 1.0:
                kept[i] = False
                continue
            d = 1.0
        q = (1.0 - eps) * t + eps / k
        cq = c * q
        with np.errstate(all="ignore"):
            if from_logits:
                r = rows[i]
                m = np.max(r)
                log_p = r - (m + np.log(np.sum(np.exp(r - m))))
                p = np.exp(log_p)
                a = np.sum(cq)
                value[i] = -np.sum(cq * log_p)
                grad[i] = a * p - cq
                a_h = np.sum(c * ((1.0 - eps) * p + eps / k)) if fisher else a
                hess[i] = a_h * p * (1.0 - p)
            else:
                p = np.maximum(rows[i], clip)
                value[i] = -np.sum(cq * np.log(p))
                grad[i] = -cq / p
                cq_h = c * ((1.0 - eps) * p + eps / k) if fisher else cq
                hess[i] = cq_h / (p * p)
        denom[i] = d
    s = log_scale(log_base)
    return value * s, grad * s, hess * s, denom, kept


def softmax_cross_entropy(x, target, *, reduction="none", sample_weight=None, hessian="exact",
                          hess_floor=1e-6, nan_policy="propagate", class_weight=None,
                          label_smoothing=0.0, ignore_index=-100, from_logits=True,
                          log_base=None, clip=F64_EPS):
    """(value, grad, hess) of a fastloss call, computed in float64.

    value has shape x.shape[:-1] for "none"; grad and hess have x's shape.
    class_weight may be None, an array of K, a dict or "balanced"/"auto".
    """
    x = np.asarray(x, dtype=np.float64)
    k = x.shape[-1]
    rows_shape = x.shape[:-1]
    sw = np.ones(rows_shape) if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, dtype=np.float64), rows_shape)
    target = np.asarray(target)
    index_targets = target.dtype.kind in "biu"
    bad_rows = np.zeros(rows_shape, dtype=bool)
    if nan_policy == "omit":
        bad_rows = np.isnan(x).any(axis=-1) | np.isnan(sw)
        if not index_targets:
            bad_rows |= np.isnan(np.broadcast_to(target, x.shape)).any(axis=-1)
    if isinstance(class_weight, str):
        if index_targets:
            y = np.broadcast_to(target, rows_shape)
            keep = ~bad_rows
            cw = weights_from_counts(class_counts(y[keep], k, sw[keep], ignore_index), class_weight)
        else:
            t = np.broadcast_to(target.astype(np.float64), x.shape)[~bad_rows]
            cw = weights_from_counts((t * sw[~bad_rows][:, None]).sum(axis=0), class_weight)
    elif isinstance(class_weight, dict):
        cw = np.ones(k)
        for key, v in class_weight.items():
            cw[key] = v
    else:
        cw = class_weight
    if nan_policy == "omit" and bad_rows.any():
        target = np.broadcast_to(target, rows_shape if index_targets else x.shape).copy()
        x = x.copy()
        x[bad_rows] = 0.0
        if index_targets:
            target[bad_rows] = 0
        else:
            target[bad_rows] = 1.0 / k
    value, grad, hess, denom, kept = softmax_ce_rows(
        x, target, class_weight=cw, label_smoothing=label_smoothing, ignore_index=ignore_index,
        from_logits=from_logits, log_base=log_base, clip=clip, fisher=hessian == "fisher")
    hess = hessian_policy(hess, hessian, hess_floor, n_classes=k)
    value = value.reshape(rows_shape)
    grad = grad.reshape(x.shape)
    hess = hess.reshape(x.shape)
    denom = denom.reshape(rows_shape)
    if bad_rows.any():
        value = np.where(bad_rows, 0.0, value)
        grad = np.where(bad_rows[..., None], 0.0, grad)
        hess = np.where(bad_rows[..., None], 0.0, hess)
        sw = np.where(bad_rows, 0.0, sw)
    dropped = ~kept.reshape(rows_shape) | bad_rows
    return reduce(value, grad, hess, sw, sw * denom, reduction, row_axis_grad=True, dropped=dropped)


# --------------------------------------------------------------------------
# Self-checks of the reference (no fastloss needed)
# --------------------------------------------------------------------------


def _central_diff(f, x, step):
    """4th-order central difference of a scalar function along every coordinate."""
    x = np.array(x, dtype=np.float64)
    out = np.zeros_like(x)
    flat = x.reshape(-1)
    o = out.reshape(-1)
    for i in range(flat.size):
        v = flat[i]
        vals = []
        for m in (-2, -1, 1, 2):
            flat[i] = v + m * step
            vals.append(f(x))
        flat[i] = v
        o[i] = (vals[0] - 8.0 * vals[1] + 8.0 * vals[2] - vals[3]) / (12.0 * step)
    return out


def test_sigmoid_terms_naive():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, 50)
    t = rng.uniform(0, 1, 50)
    s = 1.0 / (1.0 + np.exp(-z))
    naive = -(2.0 * t * np.log(s) + (1 - t) * np.log(1 - s))
    value, grad, hess = sigmoid_ce_terms(z, t, pos_weight=2.0)
    np.testing.assert_allclose(value, naive, rtol=1e-12)
    np.testing.assert_allclose(grad, -2.0 * t * (1 - s) + (1 - t) * s, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hess, (2.0 * t + 1 - t) * s * (1 - s), rtol=1e-12)


def test_sigmoid_terms_derivatives():
    rng = np.random.default_rng(2)
    for from_logits in (True, False):
        z = rng.normal(0, 2, 20) if from_logits else rng.uniform(0.1, 0.9, 20)
        t = rng.uniform(0, 1, 20)
        kw = {"pos_weight": 1.7, "label_smoothing": 0.2, "from_logits": from_logits, "log_base": 2}
        _, grad, hess = sigmoid_ce_terms(z, t, **kw)
        step = 1e-3 if from_logits else 1e-4

        def value_sum(v, t=t, kw=kw):
            return float(np.sum(sigmoid_ce_terms(v, t, **kw)[0]))

        def grad_sum(v, t=t, kw=kw):
            return float(np.sum(sigmoid_ce_terms(v, t, **kw)[1]))

        g_fd = _central_diff(value_sum, z, step)
        h_fd = _central_diff(grad_sum, z, step)
        np.testing.assert_allclose(grad, g_fd, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(hess, h_fd, rtol=1e-7, atol=1e-9)


def test_sigmoid_extreme_logits():
    value, grad, hess = sigmoid_ce_terms(np.array([-1e4, 1e4, 30.0]), np.array([1.0, 0.0, 1.0]))
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))
    assert value[0] == 1e4 and value[1] == 1e4
    assert abs(grad[2] / (-1.0 / (1.0 + math.exp(30.0))) - 1.0) < 1e-14


def test_softmax_rows_naive():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2, (6, 4))
    y = np.array([0, 3, 1, 2, 2, 0])
    c = np.array([0.5, 2.0, 1.0, 3.0])
    value, grad, hess, denom, kept = softmax_ce_rows(x, y, class_weight=c, label_smoothing=0.1)
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    q = 0.9 * np.eye(4)[y] + 0.1 / 4
    np.testing.assert_allclose(value, -(c * q * np.log(p)).sum(axis=1), rtol=1e-12)
    a = (c * q).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(grad, a * p - c * q, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hess, a * p * (1 - p), rtol=1e-12)
    np.testing.assert_array_equal(denom, c[y])
    assert kept.all()


def test_softmax_rows_derivatives():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 2, (3, 5))
    t = rng.dirichlet(np.ones(5), size=3)
    kw = {"class_weight": rng.uniform(0.5, 2, 5), "label_smoothing": 0.3, "log_base": 10}
    _, grad, hess, _, _ = softmax_ce_rows(x, t, **kw)
    g_fd = _central_diff(lambda v: float(np.sum(softmax_ce_rows(v, t, **kw)[0])), x, 1e-3)
    np.testing.assert_allclose(grad, g_fd, rtol=1e-8, atol=1e-10)
    for j in range(5):
        def gj(v, j=j):
            return float(np.sum(softmax_ce_rows(v, t, **kw)[1][:, j]))
        fd = _central_diff(gj, x, 1e-3)[:, j]
        np.testing.assert_allclose(hess[:, j], fd, rtol=1e-7, atol=1e-10)


def test_softmax_textbook():
    probs = np.array([[0.5, 0.4, 0.1]])
    assert abs(softmax_ce_rows(probs, np.array([0]), from_logits=False)[0][0] - 0.693147) < 1e-6
    v10 = softmax_ce_rows(probs, np.array([[1.0, 0.0, 0.0]]), from_logits=False, log_base=10)[0][0]
    assert abs(v10 - 0.30103) < 1e-5


def test_softmax_ignore_and_mean():
    x = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0], [3.0, -1.0, 2.0]])
    y = np.array([1, -100, 2])
    c = np.array([1.0, 2.0, 4.0])
    value, grad, hess = softmax_cross_entropy(x, y, class_weight=c, reduction="mean")
    rows, _, _, _, kept = softmax_ce_rows(x, y, class_weight=c)
    assert not kept[1] and rows[1] == 0.0
    assert value == (rows[0] + rows[2]) / (2.0 + 4.0)
    assert np.all(grad[1] == 0.0) and np.all(hess[1] == 0.0)


def test_weights_from_counts():
    np.testing.assert_allclose(weights_from_counts([1, 3, 1], "balanced"), [5 / 3, 5 / 9, 5 / 3])
    w = weights_from_counts([1, 3, 1], "auto")
    np.testing.assert_allclose(w.sum(), 3.0)
    np.testing.assert_allclose(w / w[0], [1.0, 1 / 3, 1.0])
