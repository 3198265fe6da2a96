"""Losses for class imbalance: focal losses and the p^n trick. Formulas in docs/losses.md."""

from __future__ import annotations

import math

import numpy as np

from . import _core
from ._binary import check_keys, check_probabilities, compute_dtype
from ._loss import Loss, finite_param
from ._multiclass import check_ignore_index, class_counts, n_classes_of
from ._weights import resolve_class_weight

_ELEM = {name: i for i, name in enumerate(_core.elementwise_losses)}
_ROWS = {name: i for i, name in enumerate(_core.rowwise_losses)}


def check_gamma(value) -> float:
    return finite_param(value, "gamma", low=0.0)


def check_from_logits(value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"from_logits must be a bool, got {type(value).__name__}")
    return bool(value)


def binary_alpha(value) -> float:
    """sigmoid_focal's alpha: None or -1 (off, returned as -1) or a number in [0, 1]."""
    if value is None:
        return -1.0
    a = finite_param(value, "alpha")
    if a == -1.0:
        return -1.0
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], None or -1 (off); got {value!r}")
    return a


# -- sigmoid_focal --------------------------------------------------------------------------

_SF_PARAMS = {"gamma": 2.0, "alpha": 0.25, "from_logits": True}


def _prepare_sigmoid_focal(pred, target, sample_weight, params, omit_nan=False):
    check_keys("sigmoid_focal", params, _SF_PARAMS)
    gamma = check_gamma(params.get("gamma", 2.0))
    alpha = binary_alpha(params.get("alpha", 0.25))
    from_logits = check_from_logits(params.get("from_logits", True))
    if not from_logits:
        check_probabilities(pred, "logits")
    clip = float(np.finfo(compute_dtype(pred)).eps)
    return [gamma, alpha, 1.0 if from_logits else 0.0, clip], None, "", False


sigmoid_focal = Loss(
    "sigmoid_focal", family="binary", arg_names=("logits", "target"),
    kernel_id=_ELEM["sigmoid_focal"], params=_SF_PARAMS,
    prepare=_prepare_sigmoid_focal, has_fisher=True, post_log_base=True,
    formula="a_t (1 - p_t)^gamma ce(z, t); p = sigmoid(z), p_t = p t + (1 - p)(1 - t), "
            "a_t = alpha t + (1 - alpha)(1 - t)",
    doc="""Sigmoid focal loss (Lin et al. 2017) of logits z against 0/1 or soft targets t.

l = a_t (1 - p_t)^gamma [t softplus(-z) + (1 - t) softplus(z)] with p = sigmoid(z),
p_t = p t + (1 - p)(1 - t) and a_t = alpha t + (1 - alpha)(1 - t) (torchvision's
sigmoid_focal_loss, extended to soft targets). alpha=None (or -1) switches the class
balance off; gamma is any real >= 0 (gamma=0 is the cross-entropy). alpha is part of the
loss, not a weight: reduction="mean" divides by the number of samples (or sum of
sample_weight). from_logits=False takes probabilities (clipped to [eps, 1 - eps]).
The exact Hessian is negative for confidently wrong samples; hessian="clip" and "abs" give
non-negative Hessians, "fisher" is its expectation under t ~ Bernoulli(p) (which can be
negative too for gamma >= 1).""")


# -- sigmoid_power_cross_entropy ------------------------------------------------------------

_SP_PARAMS = {"n": 2.0, "from_logits": True}


def _prepare_power(pred, target, sample_weight, params, omit_nan=False):
    check_keys("sigmoid_power_cross_entropy", params, _SP_PARAMS)
    n = finite_param(params.get("n", 2.0), "n", low=0.0, low_open=True)
    from_logits = check_from_logits(params.get("from_logits", True))
    if not from_logits:
        check_probabilities(pred, "logits")
    eps = float(np.finfo(compute_dtype(pred)).eps)
    return ([n, math.log(n), eps / (n + 1.0), 1.0 if from_logits else 0.0, eps], None, "",
            False)


sigmoid_power_cross_entropy = Loss(
    "sigmoid_power_cross_entropy", family="binary", arg_names=("logits", "target"),
    kernel_id=_ELEM["sigmoid_power_cross_entropy"], params=_SP_PARAMS, prepare=_prepare_power,
    has_fisher=True, post_log_base=True,
    formula="-t log p^n - (1 - t) log(1 - p^n), p = sigmoid(z)",
    doc="""Binary cross-entropy on p^n, p = sigmoid(z) (the p^n trick), any real n > 0.

l = -t log p^n - (1 - t) log(1 - p^n), computed in log space (log p^n = -n softplus(-z),
log(1 - p^n) = log1mexp(n softplus(-z))), so it is finite for every finite logit. p^n starts
near 0 for a model initialised around z = 0, which suits rare positives; the decision
p^n > 1/2 is z > logit(2^(-1/n)). n=1 is sigmoid_cross_entropy. hessian="fisher" is the
Fisher information of the Bernoulli(p^n) model, n^2 (1 - p)^2 p^n / (1 - p^n).
from_logits=False takes p itself (clipped to [eps, 1 - eps], eps the dtype's machine
epsilon) and differentiates w.r.t. it; the exact Hessian in p can be negative for n < 1.""")


# -- softmax_focal --------------------------------------------------------------------------

_SMF_PARAMS = {"gamma": 2.0, "alpha": None, "class_weight": None, "label_smoothing": 0.0,
               "ignore_index": -100, "from_logits": True}


def _prepare_softmax_focal(logits, target, sample_weight, params, omit_nan=False):
    check_keys("softmax_focal", params, _SMF_PARAMS)
    from_logits = check_from_logits(params.get("from_logits", True))
    if not from_logits:
        check_probabilities(logits, "logits")
    gamma = check_gamma(params.get("gamma", 2.0))
    eps = finite_param(params.get("label_smoothing", 0.0), "label_smoothing", low=0.0, high=1.0)
    ignore_index = check_ignore_index(params.get("ignore_index", -100))
    k = n_classes_of(logits)
    counts = lambda: class_counts(logits, target, sample_weight, ignore_index, omit_nan)  # noqa: E731
    cw = resolve_class_weight(params.get("class_weight"), k, ignore_index=ignore_index,
                              counts=counts)
    alpha = params.get("alpha")
    alpha_scalar, alpha_arr = 1.0, None
    if alpha is None:
        pass
    elif isinstance(alpha, str):
        if alpha != "balanced":
            raise ValueError(f"alpha must be None, a number in [0, 1], an array of K or "
                             f"'balanced'; got {alpha!r}")
        alpha_arr = resolve_class_weight("balanced", k, ignore_index=ignore_index,
                                         counts=counts, name="alpha")
    elif np.ndim(alpha) == 0:
        alpha_scalar = finite_param(alpha, "alpha", low=0.0, high=1.0)
    else:
        a = np.asarray(alpha)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"alpha must be a real number or array, got dtype {a.dtype}")
        alpha_arr = resolve_class_weight(a, k, name="alpha")
    # from_logits=False: probabilities clipped to [eps, 1 - eps], eps the compute dtype's
    # machine epsilon (as sigmoid_focal), so that (1 - p)^(gamma - 1) stays finite.
    clip = float(np.finfo(compute_dtype(logits)).eps)
    values = [eps, 0.0, 0.0, gamma, alpha_scalar, 1.0 if from_logits else 0.0, clip]
    return values, cw, ignore_index, (alpha_arr, "alpha")


softmax_focal = Loss(
    "softmax_focal", family="multiclass", kind="rowwise", kernel_id=_ROWS["softmax_focal"],
    params=_SMF_PARAMS, prepare=_prepare_softmax_focal, has_fisher=True, post_log_base=True,
    formula="-sum_k alpha_k c_k q_k (1 - p_k)^gamma log p_k, p = softmax(x)",
    doc="""Softmax focal loss of logits x[..., K] against class indices [...] or
probabilities [..., K].

Per row: l = -sum_k alpha_k c_k q_k (1 - p_k)^gamma log p_k with p = softmax(x),
q = (1 - label_smoothing) t + label_smoothing / K, c the class weights (as in
softmax_cross_entropy: they also weight the mean for index targets) and alpha None (1), a
scalar in [0, 1], an array of K, or "balanced" (n / (K n_c) from the target's class
counts; a row with a NaN in sample_weight or its probability target is not counted).
alpha is part of the loss, not a weight. gamma=0 is the cross-entropy.
ignore_index (default -100) drops rows from the loss and the mean. The diagonal Hessian is
exact (it can be negative), "clip", "abs", "fisher" (at the model's expected target), or
"xgboost"/"lightgbm" (the exact one times 2 or K/(K-1)).""")

LOSSES = [sigmoid_focal, sigmoid_power_cross_entropy]
ROW_LOSSES = [softmax_focal]
