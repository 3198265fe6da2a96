"""Chunk-by-chunk reductions shared by fastloss.dask and ``fastloss score``.

A mean over many chunks is sum(w l) / sum(w) over the whole data, not a mean of chunk means:
each chunk contributes its loss sum and the sum of its samples' effective weights. The
effective weight of a sample follows the kernels' rules (docs/design.md, "Reductions and
weights"): sample weight x class weight, 0 for ignored rows and for samples omitted by
``nan_policy="omit"``. Class weights given as "balanced"/"auto" need counts over the whole
data; :func:`class_counts` gives one chunk's share.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ._binary import binary_counts, compute_dtype
from ._loss import Loss
from ._multiclass import check_ignore_index
from ._multiclass import class_counts as _row_counts
from ._weights import resolve_class_weight

# Parameters that take "balanced"/"auto" and must be resolved from counts over all chunks.
# alpha does so for row-wise losses only (softmax_focal's alpha="balanced").
COUNTED = {"elementwise": ("class_weight",), "rowwise": ("class_weight", "alpha")}


def ignore_index_of(loss: Loss, params: dict) -> Optional[int]:
    if loss.kind == "rowwise" and "ignore_index" in loss.params:
        return check_ignore_index(params.get("ignore_index", loss.params["ignore_index"]))
    return None


def n_counted(loss: Loss, n_classes: int) -> int:
    """Length of a class-count vector: 2 for binary losses, K for row-wise ones."""
    return 2 if loss.kind == "elementwise" else n_classes


def counted_params(loss: Loss, params: dict) -> list:
    """The parameters given as a counted mode; other strings are left for the loss to reject
    (alpha takes "balanced" only)."""
    modes = {"class_weight": ("balanced", "auto"), "alpha": ("balanced",)}
    return [k for k in COUNTED.get(loss.kind, ()) if k in loss.params
            and isinstance(params.get(k), str) and params[k] in modes[k]]


def class_counts(loss: Loss, pred, target, sample_weight, ignore_index, omit, n: int):
    """One chunk's (weighted) class counts, as a float64 vector of n."""
    if loss.kind == "elementwise":
        c = binary_counts(target, pred, sample_weight, omit)
    else:
        c = _row_counts(pred, target, sample_weight, ignore_index, omit)
    out = np.zeros(n)
    out[: min(n, c.size)] = c[:n]
    return out


def resolve_counted(loss: Loss, params: dict, counts, n: int, ignore_index) -> dict:
    """params with every counted "balanced"/"auto" replaced by its weight array."""
    params = dict(params)
    for k in counted_params(loss, params):
        params[k] = resolve_class_weight(params[k], n, counts=lambda: counts, name=k,
                                         ignore_index=ignore_index)
    return params


def class_weights_of(loss: Loss, params: dict, n: int, ignore_index) -> Optional[np.ndarray]:
    """The class-weight array that enters the mean's denominator (None without one)."""
    if "class_weight" not in loss.params or params.get("class_weight") is None:
        return None
    return resolve_class_weight(params["class_weight"], n, ignore_index=ignore_index)


def _ignored_mask(pred: np.ndarray, t: np.ndarray, ignore_index):
    """The rows of a row-wise call that ignore_index leaves out (None: none): index targets
    equal to it, probability rows whose entry at it is 1 (in the compute dtype)."""
    if ignore_index is None:
        return None
    rows = pred.shape[:-1]
    if t.dtype.kind == "f" and t.ndim == pred.ndim:
        if not 0 <= ignore_index < pred.shape[-1]:
            return None
        return np.broadcast_to(t[..., ignore_index].astype(compute_dtype(pred), copy=False),
                               rows) == 1
    return np.broadcast_to(t, rows) == ignore_index


def ignored_rows(pred, target, ignore_index) -> int:
    """How many rows of a row-wise call ignore_index leaves out (as effective_weights does)."""
    mask = _ignored_mask(np.asarray(pred), np.asarray(target), ignore_index)
    return 0 if mask is None else int(np.count_nonzero(mask))


def effective_weights(kind: str, pred, target, sample_weight, class_w, ignore_index,
                      omit: bool) -> np.ndarray:
    """Per sample (elementwise) or per row (row-wise): the weight with which it enters the
    mean's denominator, float64, rounded as the kernels round it (weights and factors are
    converted to the compute dtype first)."""
    dt = compute_dtype(pred)
    if kind == "elementwise":
        t = np.asarray(target)
        shape = np.broadcast_shapes(np.shape(pred), t.shape)
        sw = None if sample_weight is None else np.broadcast_to(
            np.asarray(sample_weight).astype(dt, copy=False), shape)
        w = np.ones(shape, dtype=dt) if sw is None else np.array(sw)
        if class_w is not None:
            # The binary class-weight factor read from the target, as the kernels apply it.
            c0, c1 = dt.type(class_w[0]), dt.type(class_w[1])
            w = w * (c0 + (c1 - c0) * t.astype(dt, copy=False))
        w = w.astype(np.float64)
        if omit:
            keep = ~(np.isnan(np.asarray(pred, dtype=dt)) | np.isnan(t.astype(dt, copy=False)))
            if sw is not None:
                keep &= ~np.isnan(sw)
            w = np.where(keep, w, 0.0)
        return w
    pred = np.asarray(pred)
    rows = pred.shape[:-1]
    t = np.asarray(target)
    w = np.ones(rows) if sample_weight is None else np.array(np.broadcast_to(
        np.asarray(sample_weight).astype(dt, copy=False), rows), dtype=np.float64)
    prob = t.ndim == pred.ndim  # a target row per row: probabilities, or multilabel 0/1
    ignored = _ignored_mask(pred, t, ignore_index)
    if prob:  # probability rows: the class weights are inside the loss
        if ignored is not None:
            w = np.where(ignored, 0.0, w)
    else:
        y = np.broadcast_to(t, rows).astype(np.int64)
        live = np.ones(rows, dtype=bool) if ignored is None else ~ignored
        w = np.where(live, w, 0.0)
        if class_w is not None:
            cw = np.asarray(class_w).astype(dt).astype(np.float64)
            w = w * cw[np.where(live, y, 0)]
    if omit:
        keep = ~np.isnan(pred).any(axis=-1)
        if prob and t.dtype.kind == "f":
            keep &= ~np.isnan(t).any(axis=-1)
        if sample_weight is not None:
            keep &= ~np.isnan(w)
        w = np.where(keep, w, 0.0)
    return w


def weight_sum(loss: Loss, pred, target, sample_weight, class_w, ignore_index, omit) -> float:
    """The chunk's share of the mean's denominator."""
    if (loss.kind == "elementwise" and sample_weight is None and class_w is None and not omit):
        return float(np.prod(np.broadcast_shapes(np.shape(pred), np.shape(target)),
                             dtype=np.float64))
    return float(np.sum(effective_weights(loss.kind, pred, target, sample_weight, class_w,
                                          ignore_index, omit), dtype=np.float64))
