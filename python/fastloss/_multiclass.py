"""Multiclass losses: logits [..., K] against class indices [...] or probabilities [..., K].

Formulas in docs/losses.md.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._binary import (broadcasts_to, check_keys, check_probabilities, check_real,
                      compute_dtype, log_scale, shape_text)
from ._loss import Loss, finite_param
from ._weights import (ClassCounts, check_countable, check_ignore_index, index_text,
                       resolve_class_weight)

_IDS = {name: i for i, name in enumerate(_core.rowwise_losses)}


def n_classes_of(logits, name="logits"):
    """K, the length of the class axis; at least one axis and one class are required."""
    if logits.ndim < 1:
        raise ValueError(f"{name} must have at least one dimension (the classes on the last axis)")
    k = logits.shape[-1]
    if k < 1:
        raise ValueError(f"{name} must have at least one class on the last axis, got 0")
    return k


def _check_row_shapes(full, target, sample_weight):
    """The kernel's shape rules, checked before counting classes (same messages)."""
    rows = tuple(full[:-1])
    full_t, rows_t = shape_text(full), shape_text(rows)
    if target.dtype.kind == "f":
        if target.shape != tuple(full):
            raise ValueError(f"target of dtype {target.dtype} holds probabilities and must have "
                             f"the shape of logits {full_t}, got {shape_text(target.shape)} "
                             f"(class indices must be an integer array of shape {rows_t})")
    elif not broadcasts_to(target.shape, rows):
        raise ValueError(f"target with shape {shape_text(target.shape)} holds class indices and "
                         f"must broadcast to the shape {rows_t} (logits {full_t} without the "
                         "class axis)")
    ws = np.shape(sample_weight)
    if sample_weight is not None and not broadcasts_to(ws, rows):
        raise ValueError(f"sample_weight with shape {shape_text(ws)} does not broadcast to the "
                         f"per-row shape {rows_t}")


def _check_targets(logits, t, ignore_index):
    """The kernels' target checks, with their messages, for a counting pass that runs before
    them: class indices in [0, K) or ignore_index (first bad row in C order, indexed in the
    rows' shape), probabilities in [0, 1] (NaN aside, indexed in the logits' shape)."""
    k = logits.shape[-1]
    rows = logits.shape[:-1]
    if t.dtype.kind == "f":
        with np.errstate(over="ignore"):  # the core converts too: 1e300 is inf in float32
            p = np.asarray(t, dtype=compute_dtype(logits))
        bad = (p < 0) | (p > 1)
        if bad.any():
            flat = int(np.argmax(bad))
            got = str(p.flat[flat])  # str, as the core: 2.1, not float32's 2.0999999046325684
            raise ValueError(f"target must hold probabilities in [0, 1]; got {got} at index "
                             f"{index_text(flat, p.shape)}")
        return
    if t.size == 0:
        return
    if t.dtype.kind == "u" and t.dtype.itemsize == 8 and int(t.max()) > np.iinfo(np.int64).max:
        # As the core: a uint64 index beyond int64 is named in the target's own shape.
        flat = int(np.argmax(t))
        raise ValueError(f"target holds class index {int(t.flat[flat])} at index "
                         f"{index_text(flat, t.shape)}, outside [0, {k})")
    y = np.broadcast_to(t, rows)
    bad = (y < 0) | (y >= k)
    if ignore_index is not None:
        bad &= y != ignore_index
    if bad.any():
        flat = int(np.argmax(bad))
        raise ValueError(f"target holds class index {int(y.flat[flat])} at index "
                         f"{index_text(flat, rows)}, outside [0, {k})")


def class_counts(logits, target, sample_weight, ignore_index, omit_nan=False):
    """Per-class (weighted) counts of index or probability targets, for 'balanced'/'auto'.

    The targets are checked first, with the kernels' messages. Rows whose probability target
    is all on ignore_index do not count, nor rows with a NaN in sample_weight or in a
    probability target (a NaN has no class; nan_policy "propagate" gives such a row a NaN
    loss, "raise" refuses the call), nor with omit_nan those with a NaN in logits. An
    infinite sample weight gives no count: UncountableError.
    """
    for value, name in ((target, "target"), (sample_weight, "sample_weight")):
        check_real(value, name)
    k = logits.shape[-1]
    t = np.asarray(target)
    rows = logits.shape[:-1]
    _check_row_shapes(logits.shape, t, sample_weight)
    _check_targets(logits, t, ignore_index)
    w = None if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, dtype=np.float64), rows).reshape(-1)
    n_rows = int(np.prod(rows, dtype=np.int64))
    keep = np.ones(n_rows, dtype=bool)
    if omit_nan:
        keep &= ~np.isnan(np.asarray(logits, dtype=np.float64)).reshape(-1, k).any(axis=1)
    if w is not None:
        keep &= ~np.isnan(w)
    if t.dtype.kind == "f":  # (infinite probabilities were refused above)
        keep &= ~np.isnan(t.astype(np.float64)).reshape(-1, k).any(axis=1)
    if w is not None:  # an infinite weight is not left out
        check_countable(np.where(keep, w, 0.0).reshape(rows), "sample_weight")
    if keep.all():
        keep = None
    if t.dtype.kind == "f":
        t = np.asarray(t, dtype=np.float64).reshape(-1, k)
        rw = np.ones(t.shape[0]) if w is None else w.copy()
        if keep is not None:
            rw[~keep] = 0.0
            t = np.where(keep[:, None], t, 0.0)
        if ignore_index is not None and 0 <= ignore_index < k:
            rw[t[:, ignore_index] == 1.0] = 0.0
        counts = (t * rw[:, None]).sum(axis=0)
        if ignore_index is not None and 0 <= ignore_index < k:
            counts[ignore_index] = 0.0
        return counts
    y = np.broadcast_to(t, rows).reshape(-1)
    if keep is not None:
        y = y[keep]
        w = None if w is None else w[keep]
    cc = ClassCounts(k, ignore_index=ignore_index)
    cc.update(y, w)
    return cc.counts


_SMCE_PARAMS = {"class_weight": None, "label_smoothing": 0.0, "ignore_index": -100,
                "from_logits": True, "log_base": None}


def _prepare_softmax_ce(logits, target, sample_weight, params, omit_nan=False):
    check_keys("softmax_cross_entropy", params, _SMCE_PARAMS)
    eps = finite_param(params.get("label_smoothing", 0.0), "label_smoothing", low=0.0, high=1.0)
    ignore_index = check_ignore_index(params.get("ignore_index", -100))
    from_logits = params.get("from_logits", True)
    if not isinstance(from_logits, (bool, np.bool_)):
        raise TypeError(f"from_logits must be a bool, got {type(from_logits).__name__}")
    scale = log_scale(params.get("log_base"))
    k = n_classes_of(logits)
    cw = resolve_class_weight(
        params.get("class_weight"), k, ignore_index=ignore_index,
        counts=lambda: class_counts(logits, target, sample_weight, ignore_index, omit_nan))
    if not from_logits:
        check_probabilities(logits, "logits")
    clip = float(np.finfo(compute_dtype(logits)).eps)
    values = [eps, 0.0, 0.0, 1.0 if from_logits else 0.0, clip, scale]
    return values, cw, ignore_index


softmax_cross_entropy = Loss(
    "softmax_cross_entropy", family="multiclass", kind="rowwise",
    kernel_id=_IDS["softmax_cross_entropy"], params=_SMCE_PARAMS,
    prepare=_prepare_softmax_ce, has_fisher=True,
    formula="sum_k c_k q_k (-log softmax(x)_k), q = (1 - eps) t + eps / K; grad a p - c q",
    doc="""Softmax cross-entropy of logits x[..., K] against class indices [...] (any
integer dtype) or probabilities [..., K].

Per row: l = sum_k c_k q_k (-log p_k) with p = softmax(x), q = (1 - label_smoothing) t +
label_smoothing / K and c the class weights (None, "balanced", "auto", a dict or an array
of K). Gradient a p - c q with a = sum_k c_k q_k; diagonal Hessian a p (1 - p), doubled by
hessian="xgboost", times K / (K - 1) with hessian="lightgbm". ignore_index (default -100,
as PyTorch) drops rows from the loss and the mean. from_logits=False takes probabilities
(clipped below at the dtype's machine epsilon). log_base scales everything by
1 / ln(log_base): H((1, 0, 0), (0.5, 0.4, 0.1)) is 0.693147 in nats, 0.30103 with
log_base=10. "balanced"/"auto" count the call's targets; a row with a NaN in sample_weight
or in its probability target has no class and is not counted.""")

LOSSES = [softmax_cross_entropy]
