"""Float64 NumPy reference for the class-imbalance losses of fastloss.

sigmoid_focal, softmax_focal and sigmoid_power_cross_entropy, written from
the mathematics alone (nothing here imports fastloss).  Every derivative is
analytic; ``tests/test_reference_focal_selfcheck.py`` checks gradients
against finite differences of the values and Hessians against finite
differences of the gradients.

Notation (elementwise losses):

    z        the logit, the argument differentiated (from_logits=True)
    t        the target, 0/1 or a soft label in [0, 1]
    p = sigma(z),  q = 1 - p = sigma(-z),  s = p q = dp/dz
    sp(y) = log(1 + exp(y)) (softplus),  log p = -sp(-z),  log q = -sp(z)

Everything that can underflow or overflow for |z| up to 1e4 is formed in log
space and combined only as exp(log-sum), so finite logits give finite
values, gradients and Hessians.

Reductions follow DESIGN.md: "none" gives w_i l_i, "sum" the float64 sum,
"mean" that sum over the sum of the denominator weights; gradients and
Hessians are of what was returned (w_i g_i, w_i h_i, over the denominator
for "mean").
"""

from __future__ import annotations

import math

import numpy as np

F64_EPS = float(np.finfo(np.float64).eps)
LN2 = math.log(2.0)

__all__ = [
    "log1mexp",
    "reduce_elementwise",
    "reduce_rows",
    "sigmoid_focal",
    "sigmoid_focal_terms",
    "sigmoid_power_cross_entropy",
    "sigmoid_power_prob_terms",
    "sigmoid_power_terms",
    "softmax_focal",
    "softmax_focal_rows",
    "softplus",
]


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def softplus(y):
    """log(1 + exp(y)) for every float64 y, without overflow."""
    return np.logaddexp(0.0, np.asarray(y, dtype=np.float64))


def log1mexp(x):
    """log(1 - exp(x)) for x <= 0.

    Maechler, "Accurately Computing log(1 - exp(-|a|))" (Rmpfr vignette,
    2012): log(-expm1(x)) for x > -ln 2, log1p(-exp(x)) otherwise.  -inf at
    x = 0.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > -LN2, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def _alpha_t(t, alpha):
    """alpha t + (1 - alpha)(1 - t); 1 where alpha is None or negative."""
    if alpha is None or float(alpha) < 0.0:
        return np.ones_like(t)
    a = float(alpha)
    return a * t + (1.0 - a) * (1.0 - t)


def _pow(log_base_value, gamma):
    """u^gamma from log u, with u^0 = 1 also where u = 0 (log u = -inf)."""
    if gamma == 0.0:
        return np.ones_like(log_base_value)
    return np.exp(gamma * log_base_value)


def reduce_elementwise(value, grad, hess, sample_weight=None, reduction="none"):
    """Weights and reduction of an elementwise loss (value, grad, hess same shape).

    "mean" divides by sum(sample_weight), N without weights: focal alpha and
    the power n are part of the loss, not weights.
    """
    value = np.asarray(value, dtype=np.float64)
    w = np.ones_like(value) if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, dtype=np.float64), value.shape)
    wv, wg = w * value, None if grad is None else w * grad
    wh = None if hess is None else w * hess
    if reduction == "none":
        return wv, wg, wh
    total = float(np.sum(wv, dtype=np.float64))
    if reduction == "sum":
        return total, wg, wh
    if reduction == "mean":
        d = float(np.sum(w, dtype=np.float64))
        if d == 0.0:
            nan = (lambda a: None if a is None else a * math.nan)
            return math.nan, nan(wg), nan(wh)
        return total / d, None if wg is None else wg / d, None if wh is None else wh / d
    raise ValueError(f"unknown reduction {reduction!r}")


# --------------------------------------------------------------------------
# sigmoid_focal
# --------------------------------------------------------------------------


def sigmoid_focal_terms(z, t, *, gamma=2.0, alpha=0.25, from_logits=True, clip=F64_EPS,
                        fisher=False):
    """Unweighted elementwise (l, g, h) of the sigmoid focal loss.

    The torchvision formula (sigmoid_focal_loss), read for soft targets:

        ce  = t sp(-z) + (1 - t) sp(z)            BCE with logits
        u   = 1 - p_t = t q + (1 - t) p           p_t = p t + q (1 - t)
        a   = alpha t + (1 - alpha)(1 - t)        (1 if alpha is None or < 0)
        l   = a ce u^gamma

    u is a sum of two non-negative terms, so it is formed without
    cancellation; log u = logaddexp(log t - sp(z), log(1 - t) - sp(-z)).

    Derivatives w.r.t. z (a is constant in z):

        ce' = p - t = (1 - t) p - t q,            ce'' = s
        u'  = (1 - 2t) s,                          u''  = (1 - 2t) s (q - p)

    With F = u^gamma, F' = gamma u^(gamma-1) u' and
    F'' = gamma (gamma-1) u^(gamma-2) u'^2 + gamma u^(gamma-1) u''.  The
    factor u^(gamma-1) diverges as u -> 0 for gamma < 1, but it always comes
    with s, and r = s / u = 1 / (t/p + (1 - t)/q) lies in [0, 1]
    (t/p + (1-t)/q >= t + 1 - t = 1).  So, with U = u^gamma and r formed as
    exp(log s - log u),

        F'  = gamma (1 - 2t) U r
        F'' = gamma (gamma - 1) (1 - 2t)^2 U r^2 + gamma (1 - 2t) U r (q - p)
        l'  = a (ce' U + ce F')  = a U [(p - t) + gamma (1 - 2t) ce r]
        l'' = a (ce'' U + 2 ce' F' + ce F'')
            = a U [s + 2 gamma (1 - 2t)(p - t) r
                   + gamma (1 - 2t) ce r ((gamma - 1)(1 - 2t) r + q - p)]

    *p_t = 1 and gamma < 1.*  For a finite logit u = 1 - p_t > 0 exactly
    (for hard targets u = sigma(-+z)), and log u is finite, so the formulas
    above hold everywhere; U = exp(gamma log u) may underflow to 0, which is
    the limit (U -> 0 and r stays in [0, 1] as p_t -> 1).  gamma = 0 gives
    U = 1 exactly (BCE times a).  For gamma > 0, l'' is negative on badly
    misclassified samples: for a hard target below p_t = 0.0177, 0.0432,
    0.0578, 0.0502 for gamma = 0.5, 1, 2, 5 (z t-signed below -4.02, -3.10,
    -2.79, -2.94), where the loss grows like |z| (1 - p_t)^gamma and the
    shrinking factor bends it down; l'' >= 0 above those points.  The
    "fisher" mixture below can be negative as well.

    from_logits=False: the argument is the probability p, clipped to
    [clip, 1 - clip]; derivatives w.r.t. p at the clipped point:

        ce  = -t log p - (1 - t) log(1 - p),  ce_p = -t/p + (1 - t)/(1 - p),
        ce_pp = t/p^2 + (1 - t)/(1 - p)^2
        u   = t (1 - p) + (1 - t) p,  u_p = 1 - 2t,  u_pp = 0
        l_p  = a (ce_p U + ce gamma (1 - 2t) u^(gamma-1))
        l_pp = a (ce_pp U + 2 ce_p gamma (1 - 2t) u^(gamma-1)
                  + ce gamma (gamma - 1) (1 - 2t)^2 u^(gamma-2))

    u >= min(p, 1 - p) >= clip, so every power is finite (gamma < 1 makes the
    derivatives large near the clip, not infinite).

    fisher=True: the expected Hessian with t ~ Bernoulli(p) (p the model's
    probability, sigma(z) or the clipped p), p H(t=1) + (1 - p) H(t=0), alpha
    included (it depends on t); it does not depend on the given t.
    """
    z, t = np.broadcast_arrays(np.asarray(z, dtype=np.float64), np.asarray(t, dtype=np.float64))
    gamma = float(gamma)
    if fisher:
        one, zero = np.ones_like(t), np.zeros_like(t)
        h1 = sigmoid_focal_terms(z, one, gamma=gamma, alpha=alpha,
                                 from_logits=from_logits, clip=clip)[2]
        h0 = sigmoid_focal_terms(z, zero, gamma=gamma, alpha=alpha,
                                 from_logits=from_logits, clip=clip)[2]
        value, grad, _ = sigmoid_focal_terms(z, t, gamma=gamma, alpha=alpha,
                                             from_logits=from_logits, clip=clip)
        with np.errstate(all="ignore"):
            p = np.exp(-softplus(-z)) if from_logits else np.clip(z, clip, 1.0 - clip)
        return value, grad, p * h1 + (1.0 - p) * h0
    a = _alpha_t(t, alpha)
    with np.errstate(all="ignore"):
        if from_logits:
            log_p, log_q = -softplus(-z), -softplus(z)
            p, q = np.exp(log_p), np.exp(log_q)
            s = np.exp(log_p + log_q)
            ce = t * softplus(-z) + (1.0 - t) * softplus(z)
            log_u = np.logaddexp(np.log(t) + log_q, np.log1p(-t) + log_p)
            big_u = _pow(log_u, gamma)
            r = np.exp(log_p + log_q - log_u)
            p_minus_t = (1.0 - t) * p - t * q
            k = 1.0 - 2.0 * t
            value = a * ce * big_u
            grad = a * big_u * (p_minus_t + gamma * k * ce * r)
            hess = a * big_u * (s + 2.0 * gamma * k * p_minus_t * r
                                + gamma * k * ce * r * ((gamma - 1.0) * k * r + q - p))
        else:
            p = np.clip(z, clip, 1.0 - clip)
            m = 1.0 - p
            ce = -(t * np.log(p) + (1.0 - t) * np.log1p(-p))
            ce_p = -t / p + (1.0 - t) / m
            ce_pp = t / (p * p) + (1.0 - t) / (m * m)
            u = t * m + (1.0 - t) * p
            k = 1.0 - 2.0 * t
            big_u = u ** gamma
            f1 = gamma * k * u ** (gamma - 1.0)
            f2 = gamma * (gamma - 1.0) * k * k * u ** (gamma - 2.0)
            value = a * ce * big_u
            grad = a * (ce_p * big_u + ce * f1)
            hess = a * (ce_pp * big_u + 2.0 * ce_p * f1 + ce * f2)
    return value, grad, hess


def _in_base(value, grad, hess, log_base):
    """The loss in log base b: l / ln b, and so its derivatives (None: natural log)."""
    if log_base is None:
        return value, grad, hess
    c = 1.0 / math.log(float(log_base))
    return value * c, grad * c, hess * c


def sigmoid_focal(z, t, *, gamma=2.0, alpha=0.25, from_logits=True, reduction="none",
                  sample_weight=None, hessian="exact", hess_floor=1e-6, clip=F64_EPS,
                  log_base=None):
    """(value, grad, hess) of a fastloss sigmoid_focal call, in float64.

    hessian: "exact", "clip" (max(h, hess_floor)), "abs" or "fisher"; the
    policy applies to the unweighted h (of the loss in log base log_base), before the
    sample weight.
    """
    value, grad, hess = _in_base(*sigmoid_focal_terms(z, t, gamma=gamma, alpha=alpha,
                                                      from_logits=from_logits, clip=clip,
                                                      fisher=hessian == "fisher"), log_base)
    hess = _policy(hess, hessian, hess_floor)
    return reduce_elementwise(value, grad, hess, sample_weight, reduction)


def _policy(h, policy, floor):
    if policy in ("exact", "fisher"):
        return h
    if policy == "clip":
        return np.maximum(h, floor)
    if policy == "abs":
        return np.abs(h)
    raise ValueError(f"unknown hessian policy {policy!r}")


# --------------------------------------------------------------------------
# sigmoid_power_cross_entropy (the p^n trick)
# --------------------------------------------------------------------------


def _expm1_minus_x(y):
    """exp(y) - 1 - y without cancellation (Taylor series for |y| < 1/2)."""
    y = np.asarray(y, dtype=np.float64)
    small = np.abs(y) < 0.5
    ys = np.where(small, y, 0.0)
    series = np.zeros_like(y)
    term = ys * ys / 2.0
    for k in range(3, 24):  # 0.5^23 / 23! ~ 5e-30: below the last bit of y^2/2
        series = series + term
        term = term * ys / k
    with np.errstate(all="ignore"):
        return np.where(small, series, np.expm1(y) - y)


def sigmoid_power_terms(z, t, *, n=2.0, fisher=False):
    """Unweighted elementwise (l, g, h) of -t log p^n - (1 - t) log(1 - p^n).

    With lam = -log p = sp(-z) >= 0 and x = p^n = exp(-n lam):

        l = n t lam - (1 - t) log1mexp(-n lam)

    log1mexp as in Maechler (2012).  When lam underflows to 0 (z above
    about 745) log(1 - x) = log(n lam) + O(lam) is taken as
    log n + log sp(-z), with log sp(-z) = -z for z > 40 (the next term is
    below exp(-40)).

    Derivatives (d lam/dz = -q, dq/dz = -s, d log(1 - x)/dz = -n q x/(1 - x)):

        l' = n [(1 - t) C - t q],      C = q x / (1 - x)
        l'' = n [(1 - t) C D + t s],   D = n q / (1 - x) - p = N / (1 - x)
        N = n q - p (1 - x) = n - (n + 1) e^-lam + e^-(n+1) lam

    C = exp(log q - n lam - log(1 - x)) is formed in log space (it tends to
    1/n as z -> +inf, where q -> 0 and 1 - x -> 0).  N >= 0 (N(0) = 0 and
    N' = (n + 1)(e^-lam - e^-(n+1)lam) >= 0), so the loss is convex in z.
    N cancels to first order for small lam; there it is written as
    E((n+1) lam) - (n + 1) E(lam) with E(y) = exp(-y) - 1 + y by series,
    whose leading terms ((n+1)^2 - (n+1)) lam^2/2 = n (n+1) lam^2/2 cancel by
    a bounded factor.  For lam < 1e-16, D = (n + 1) lam / 2 (next term
    relative O(lam)).

    n = 1 is the sigmoid cross-entropy: C = p, D = q, l' = p - t, l'' = s.

    fisher=True: the Hessian is linear in t, so its expectation under the
    model, t ~ Bernoulli(p^n), is the Hessian at t = x = p^n.
    """
    z, t = np.broadcast_arrays(np.asarray(z, dtype=np.float64), np.asarray(t, dtype=np.float64))
    n = float(n)
    with np.errstate(all="ignore"):
        lam = softplus(-z)
        log_q = -softplus(z)
        q = np.exp(log_q)
        p = np.exp(-lam)
        s = np.exp(-lam + log_q)
        a = -n * lam
        log_sp_neg = np.where(z > 40.0, -z, np.log(lam))
        tiny = a > -1e-300
        ratio = np.where(tiny, 1.0, np.expm1(a) / np.where(tiny, 1.0, a))
        log_1mx = np.where(a > -LN2, math.log(n) + log_sp_neg + np.log(ratio), np.log1p(-np.exp(a)))
        value = n * t * lam - (1.0 - t) * log_1mx
        big_c = np.exp(log_q + a - log_1mx)
        grad = n * ((1.0 - t) * big_c - t * q)
        one_mx = np.exp(log_1mx)
        n_small = _expm1_minus_x(-(n + 1.0) * lam) - (n + 1.0) * _expm1_minus_x(-lam)
        n_large = n * (-np.expm1(-lam)) - p * (-np.expm1(a))
        big_n = np.where(lam < 1.0, n_small, n_large)
        d = np.where(lam < 1e-16, 0.5 * (n + 1.0) * lam, big_n / one_mx)
        tt = np.exp(a) if fisher else t
        hess = n * ((1.0 - tt) * big_c * d + tt * s)
    return value, grad, hess


def sigmoid_power_prob_terms(q, t, *, n=2.0, clip=np.finfo(np.float64).eps, fisher=False):
    """Unweighted elementwise (l, g, h) of -t log q^n - (1 - t) log(1 - q^n) for a
    probability q (from_logits=False), clipped to [clip, 1 - clip], differentiated in q:

        l'  = -t n / q + (1 - t) n q^(n-1) / (1 - q^n)
        l'' = t n / q^2 + (1 - t) n [(n - 1) q^(n-2) (1 - q^n) + n q^(2n-2)] / (1 - q^n)^2

    1 - q^n is -expm1(n log q), without cancellation near q = 1; its log is log1p(-q^n)
    where q^n < 1/2 (Maechler 2012), without the cancellation of log(1 - small).
    fisher=True: the Hessian at t = q^n, its expectation under Bernoulli(q^n)
    (n^2 q^n / (q^2 (1 - q^n)))."""
    q, t = np.broadcast_arrays(np.asarray(q, dtype=np.float64), np.asarray(t, dtype=np.float64))
    n = float(n)
    q = np.clip(q, clip, 1.0 - clip)
    log_q = np.log(q)
    qn = np.exp(n * log_q)
    one_m = -np.expm1(n * log_q)
    log_one_m = np.where(qn < 0.5, np.log1p(-np.minimum(qn, 0.5)), np.log(one_m))
    value = -t * n * log_q - (1.0 - t) * log_one_m
    grad = -t * n / q + (1.0 - t) * n * qn / q / one_m
    hess = t * n / q ** 2 + (1.0 - t) * n * (
        (n - 1.0) * qn / q ** 2 * one_m + n * qn * qn / q ** 2) / one_m ** 2
    if fisher:
        # The Hessian at t = q^n, simplified (the substitution itself cancels near q = 1):
        # n^2 q^n / (q^2 (1 - q^n)).
        hess = n * n * qn / (q * q * one_m) + 0.0 * t
    return value, grad, hess


def sigmoid_power_cross_entropy(z, t, *, n=2.0, reduction="none", sample_weight=None,
                                hessian="exact", hess_floor=1e-6, from_logits=True, clip=None,
                                log_base=None):
    """(value, grad, hess) of a fastloss sigmoid_power_cross_entropy call."""
    if from_logits:
        value, grad, hess = sigmoid_power_terms(z, t, n=n, fisher=hessian == "fisher")
    else:
        value, grad, hess = sigmoid_power_prob_terms(
            z, t, n=n, fisher=hessian == "fisher",
            **({} if clip is None else {"clip": clip}))
    value, grad, hess = _in_base(value, grad, hess, log_base)
    hess = _policy(hess, hessian, hess_floor)
    return reduce_elementwise(value, grad, hess, sample_weight, reduction)


# --------------------------------------------------------------------------
# softmax_focal
# --------------------------------------------------------------------------


def _logsumexp(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def _alpha_vector(alpha, k):
    if alpha is None:
        return np.ones(k)
    a = np.asarray(alpha, dtype=np.float64)
    return np.full(k, float(a)) if a.ndim == 0 else a.reshape(k)


def _target_rows(target, shape, c, ignore_index):
    """(t, kept, d) of a row loss's target for inputs of `shape` [..., K], rows flattened:
    t the target rows (one-hot of an index, or the probability row), kept False for ignored
    rows (index ignore_index, or all mass on that class), d the row's weight in the mean's
    denominator before the sample weight (c[y] for indices, 1 for probability rows)."""
    k = shape[-1]
    nrows = int(np.prod(shape[:-1], dtype=np.int64))
    target = np.asarray(target)
    if target.dtype.kind in "biu":
        y = np.broadcast_to(target, shape[:-1]).reshape(-1)
        kept = y != ignore_index
        t = np.zeros((nrows, k))
        t[np.nonzero(kept)[0], y[kept]] = 1.0
        d = np.where(kept, c[np.where(kept, y, 0)], 0.0)
    else:
        t = np.broadcast_to(target.astype(np.float64), shape).reshape(-1, k)
        kept = np.ones(nrows, dtype=bool)
        if 0 <= ignore_index < k:
            kept = t[:, ignore_index] != 1.0
        d = np.where(kept, 1.0, 0.0)
    return t, kept, d


def softmax_focal_rows(x, target, *, gamma=2.0, alpha=None, class_weight=None,
                       ignore_index=-100, label_smoothing=0.0):
    """Per-row (l, g, h, d, kept) of the multiclass focal loss, rows flattened.

    For one row of logits x (K classes), p = softmax(x), log p_k = x_k - lse,
    m_k = 1 - p_k = sum_{i != k} p_i, q the (smoothed) target row
    ((1 - eps) onehot + eps/K for an index, (1 - eps) t + eps/K for a
    probability row), and w_k = alpha_k c_k q_k:

        l = sum_k w_k phi(log p_k),   phi(L) = -(1 - e^L)^gamma L

    Derivatives of phi (dp/dL = p, dm/dL = -p), with M = m^gamma and
    rho = log(p)/m = log1p(-m)/m in [-inf, -1]:

        phi'  = gamma p m^(gamma-1) L - m^gamma = M (gamma p rho - 1)
        phi'' = gamma p m^(gamma-2) [m L - (gamma - 1) p L + 2 m]
        psi   = phi'' m^2 = gamma p M [m L - (gamma - 1) p L + 2 m]

    Through the softmax, d log p_k/dx_j = delta_kj - p_j and
    d2 log p_k/dx_j^2 = -p_j m_j, so with A = sum_k w_k phi'_k

        g_j = w_j phi'_j - p_j A
        h_j = sum_k w_k phi''_k (delta_kj - p_j)^2 - p_j m_j A
            = w_j psi_j + sum_{k != j} w_k (p_j/m_k)^2 psi_k - p_j m_j A

    The second form keeps (1 - p_j)^2 = m_j^2 with phi''_j (phi'' diverges
    like m^(gamma-1) as p -> 1 when gamma < 1, psi does not), and
    p_j/m_k <= 1 for j != k.  log m_k = logsumexp_{i != k} x_i - lse is formed
    directly, so nothing underflows into 0/0 for logits of +-1e4; where
    m_k < 1/2, log p_k = log1p(-m_k) for accuracy.

    gamma = 0 gives the cross-entropy: phi' = -1, psi = 0,
    g = (sum w) p - w, h = (sum w) p (1 - p).

    d: the row's weight in the mean's denominator before the sample weight
    (c[y] for index targets, 1 for probability rows); kept: False for
    ignored rows (zero value, gradient and Hessian).
    """
    x = np.asarray(x, dtype=np.float64)
    k = x.shape[-1]
    rows = x.reshape(-1, k)
    eps = float(label_smoothing)
    gamma = float(gamma)
    c = np.ones(k) if class_weight is None else np.asarray(class_weight, dtype=np.float64)
    al = _alpha_vector(alpha, k)
    t, kept, d = _target_rows(target, x.shape, c, ignore_index)
    qt = (1.0 - eps) * t + eps / k
    w = al * c * qt * kept[:, None]
    with np.errstate(all="ignore"):
        lse = _logsumexp(rows)[:, None]
        log_p = rows - lse
        others = np.where(np.eye(k, dtype=bool)[None, :, :], -np.inf, rows[:, None, :])
        log_m = _logsumexp(others, axis=-1) - lse  # [N, K]: log sum_{i != k} p_i
        m = np.exp(log_m)
        log_p = np.where(m < 0.5, np.log1p(-m), log_p)
        p = np.exp(log_p)
        # rho = log p / m; its limit -1 where m underflows to 0.
        rho = np.where(m > 0.0, log_p / np.where(m > 0.0, m, 1.0), -1.0)
        big_m = _pow(log_m, gamma)
        phi = -big_m * log_p
        dphi = big_m * (gamma * p * rho - 1.0)
        psi = gamma * p * big_m * (m * log_p - (gamma - 1.0) * p * log_p + 2.0 * m)
        value = np.sum(np.where(w != 0.0, w * phi, 0.0), axis=1)
        big_a = np.sum(w * dphi, axis=1, keepdims=True)
        grad = w * dphi - p * big_a
        # ratio[j, k] = (p_j / m_k)^2 for j != k, 0 on the diagonal.
        ratio = np.exp(2.0 * (log_p[:, :, None] - log_m[:, None, :]))
        ratio = np.where(np.eye(k, dtype=bool)[None], 0.0, ratio)
        cross = np.einsum("njk,nk->nj", ratio, w * psi)
        hess = w * psi + cross - p * m * big_a
    grad = np.where(kept[:, None], grad, 0.0)
    hess = np.where(kept[:, None], hess, 0.0)
    value = np.where(kept, value, 0.0)
    return value, grad, hess, d, kept


def softmax_focal_prob_rows(p, target, *, gamma=2.0, alpha=None, class_weight=None,
                            ignore_index=-100, label_smoothing=0.0, clip=F64_EPS,
                            fisher=False):
    """Per-row (l, g, h, d, kept) of softmax_focal with from_logits=False, rows flattened.

    p holds probabilities, clipped to [clip, 1 - clip] and not renormalised, and
    the loss is differentiated w.r.t. them; every class is on its own:

        F(u)   = -(1 - u)^gamma log u
        F'(u)  = gamma (1 - u)^(gamma-1) log u - (1 - u)^gamma / u
        F''(u) = -gamma (gamma-1) (1 - u)^(gamma-2) log u
                 + 2 gamma (1 - u)^(gamma-1) / u + (1 - u)^gamma / u^2

    l = sum_k w_k F(p_k), g_k = w_k F'(p_k), h_k = w_k F''(p_k) with
    w = alpha c q as in softmax_focal_rows.  fisher: h with q replaced by the
    model's own expectation, (1 - eps) p_k (0 at ignore_index) + (1 - p_ig) eps/K.
    """
    p = np.asarray(p, dtype=np.float64)
    k = p.shape[-1]
    u = np.clip(p.reshape(-1, k), clip, 1.0 - clip)
    nrows = u.shape[0]
    eps = float(label_smoothing)
    gamma = float(gamma)
    c = np.ones(k) if class_weight is None else np.asarray(class_weight, dtype=np.float64)
    al = _alpha_vector(alpha, k)
    t, kept, d = _target_rows(target, p.shape, c, ignore_index)
    w = al * c * ((1.0 - eps) * t + eps / k) * kept[:, None]
    m = 1.0 - u
    lu = np.log(u)
    f = -(m ** gamma) * lu
    f1 = gamma * m ** (gamma - 1.0) * lu - m ** gamma / u
    f2 = (-gamma * (gamma - 1.0) * m ** (gamma - 2.0) * lu + 2.0 * gamma * m ** (gamma - 1.0) / u
          + m ** gamma / u ** 2)
    value = np.sum(np.where(w != 0.0, w * f, 0.0), axis=1)
    grad = np.where(w != 0.0, w * f1, 0.0)
    wh = w
    if fisher:
        pm = u.copy()
        p_ig = np.zeros(nrows)
        if 0 <= ignore_index < k:
            p_ig = u[:, ignore_index]
            pm[:, ignore_index] = 0.0
        wh = al * c * ((1.0 - eps) * pm + (1.0 - p_ig[:, None]) * eps / k) * kept[:, None]
    hess = np.where(wh != 0.0, wh * f2, 0.0)
    return value, grad, hess, d, kept


def _softmax_focal_fisher(x, target, **params):
    """Expected diagonal Hessian with the class y ~ Categorical(p), p = softmax(x).

    sum_c p_c h(x; y = c), each h computed with the row's target replaced by
    the class index c (alpha, class weights and smoothing as given); ignored
    rows stay 0.
    """
    k = x.shape[-1]
    rows = x.reshape(-1, k)
    p = np.exp(rows - _logsumexp(rows)[:, None])
    kept = softmax_focal_rows(x, target, **params)[4]
    out = np.zeros_like(rows)
    for cls in range(k):
        h = softmax_focal_rows(rows, np.full(rows.shape[0], cls), **params)[2]
        out += p[:, cls:cls + 1] * h
    return np.where(kept[:, None], out, 0.0).reshape(x.shape)


def reduce_rows(value, grad, hess, denom, sample_weight=None, reduction="none"):
    """Weights and reduction of a row-wise loss: value [N], grad/hess [N, K]."""
    value = np.asarray(value, dtype=np.float64)
    sw = np.ones_like(value) if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, dtype=np.float64), value.shape)
    wv = sw * value
    wg = sw[..., None] * grad
    wh = sw[..., None] * hess
    if reduction == "none":
        return wv, wg, wh
    total = float(np.sum(wv, dtype=np.float64))
    if reduction == "sum":
        return total, wg, wh
    if reduction == "mean":
        dsum = float(np.sum(sw * denom, dtype=np.float64))
        if dsum == 0.0:
            # No row kept: mean of nothing, nothing to learn (PyTorch's convention).
            return math.nan, np.zeros_like(wg), np.zeros_like(wh)
        return total / dsum, wg / dsum, wh / dsum
    raise ValueError(f"unknown reduction {reduction!r}")


def softmax_focal(x, target, *, gamma=2.0, alpha=None, class_weight=None, ignore_index=-100,
                  label_smoothing=0.0, reduction="none", sample_weight=None, hessian="exact",
                  hess_floor=1e-6, log_base=None, from_logits=True, clip=F64_EPS):
    """(value, grad, hess) of a fastloss softmax_focal call, in float64.

    x: logits [..., K]; target: class indices [...] or probability rows
    [..., K].  value has shape x.shape[:-1] for "none"; grad and hess the
    shape of x (hess: the diagonal).  class_weight: None or an array of K
    (inside the loss as c_k q_k, as PyTorch's cross_entropy; for an index
    without smoothing that is the sample weight c_y).  "mean" divides by
    sum(sample_weight * c[y]) over kept rows for index targets and by
    sum(sample_weight) over kept rows for probability targets.
    """
    x = np.asarray(x, dtype=np.float64)
    if not from_logits:
        opts = dict(gamma=gamma, alpha=alpha, class_weight=class_weight,
                    ignore_index=ignore_index, label_smoothing=label_smoothing, clip=clip)
        value, grad, hess, d, kept = softmax_focal_prob_rows(x, target, **opts)
        if hessian == "fisher":
            hess = softmax_focal_prob_rows(x, target, fisher=True, **opts)[2]
        value, grad, hess = _in_base(value, grad, hess, log_base)
        hess = np.where(kept[:, None], _policy(hess, hessian, hess_floor), 0.0)
        shape = x.shape[:-1]
        return reduce_rows(value.reshape(shape), grad.reshape(x.shape), hess.reshape(x.shape),
                           d.reshape(shape), sample_weight, reduction)
    value, grad, hess, d, _ = softmax_focal_rows(
        x, target, gamma=gamma, alpha=alpha, class_weight=class_weight,
        ignore_index=ignore_index, label_smoothing=label_smoothing)
    if hessian == "fisher":
        hess = _softmax_focal_fisher(x, target, gamma=gamma, alpha=alpha,
                                     class_weight=class_weight, ignore_index=ignore_index,
                                     label_smoothing=label_smoothing)
    value, grad, hess = _in_base(value, grad, hess, log_base)
    kept = softmax_focal_rows(x, target, gamma=gamma, alpha=alpha, class_weight=class_weight,
                              ignore_index=ignore_index, label_smoothing=label_smoothing)[4]
    # Ignored rows have nothing to learn: every policy leaves their Hessian at 0.
    hess = np.where(kept.reshape(x.shape[:-1])[..., None], _policy(hess, hessian, hess_floor), 0.0)
    shape = x.shape[:-1]
    return reduce_rows(value.reshape(shape), grad.reshape(x.shape), hess.reshape(x.shape),
                       d.reshape(shape), sample_weight, reduction)
