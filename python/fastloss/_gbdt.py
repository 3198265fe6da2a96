"""What the XGBoost and LightGBM adapters share: a loss turned into per-sample gradients and
Hessians (or a metric value) from the raw margins and labels a booster hands over.

Both libraries give the custom objective the raw margin: shape (n,) for one output per sample,
(n, K) for K classes (LightGBM's class-major buffer arrives as an (n, K) view). Labels come as
a float array of n (class indices for multiclass losses) or, for multi-label and probability
targets, of n * K values in row-major order.

Pairwise ranking losses (``pairwise_logistic``, ``pairwise_hinge``) take one score and one
relevance per document and the query groups of the training data, as group sizes; each adapter
reads them (and maps its library's ranking weights to fastloss's one weight per group) and
hands them to :meth:`BoostingLoss.grad_hess` / :meth:`BoostingLoss.value`.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

import fastloss as _fl

from ._loss import Loss, _code, finite_param

SUPPORTED_KINDS = ("elementwise", "rowwise", "pairwise")


def resolve_loss(loss: Union[str, Loss], library: str) -> Loss:
    if isinstance(loss, str):
        try:
            loss = _fl.losses[loss]
        except KeyError:
            raise ValueError(f"loss: unknown loss {loss!r}; choose from "
                             f"{', '.join(sorted(_fl.losses))}") from None
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be a loss name or a fastloss.Loss, got {type(loss).__name__}")
    if loss.kind not in SUPPORTED_KINDS:
        raise ValueError(
            f"fastloss.{library} supports elementwise, row-wise and pairwise ranking losses; "
            f"{loss.name} is of kind {loss.kind!r}, which needs inputs a {library} objective "
            "does not receive")
    return loss


def check_params(loss: Loss, params: dict) -> None:
    for key in params:
        if key not in loss.params:
            raise TypeError(f"{loss.name}() got an unexpected keyword argument {key!r}")
        if loss.kind == "pairwise" and key in ("group", "qid"):
            raise TypeError(f"{loss.name}() got an unexpected keyword argument {key!r}: the "
                            "query groups are read from the training data")


def group_weight_from_documents(weight, sizes: np.ndarray, library: str) -> Optional[np.ndarray]:
    """One weight per group from one weight per document (LightGBM's ranking weights).

    fastloss weights a group's loss, and so every gradient of its documents, by one number.
    Per-document weights that are equal within each group are that number; weights that vary
    inside a group weight no loss (scaling each document's summed pair gradients by its own
    weight is not the gradient of any weighted pair loss), so they are refused rather than
    averaged. Groups without documents must be left out by the caller (they have no weight).
    """
    if weight is None:
        return None
    w = np.asarray(weight, dtype=np.float64)
    if w.size == 0:
        return None
    n = int(np.sum(sizes, dtype=np.int64))
    if w.ndim != 1 or w.size != n:
        raise ValueError(f"weight: {w.size} values for {n} documents")
    starts = np.zeros(sizes.size, dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    first = w[starts]
    expected = np.repeat(first, sizes)
    differs = (expected != w) & ~(np.isnan(expected) & np.isnan(w))
    if differs.any():
        doc = int(np.argmax(differs))
        g = int(np.searchsorted(starts, doc, side="right") - 1)
        raise ValueError(
            f"weight: fastloss's ranking losses take one weight per query group, but the "
            f"{library} weights differ inside group {g} ({float(first[g])!r} at document "
            f"{int(starts[g])}, {float(w[doc])!r} at document {doc}); give every document of a "
            "group the group's weight")
    return first


class BoostingLoss:
    """grad/hess and metric values of one loss with fixed parameters."""

    def __init__(self, loss: Loss, params: dict, *, hessian: Optional[str], hess_floor: float,
                 library: str):
        check_params(loss, params)
        self.loss = loss
        self.params = dict(params)
        self.library = library
        self.ranking = loss.kind == "pairwise"
        row = loss.kind == "rowwise"
        names = loss.hessian_names()
        if hessian is None:
            # The library's own convention where the loss has it (the softmax losses, so that
            # the built-in objective is reproduced), the exact Hessian otherwise; both floored
            # below.
            hessian = library if row and library in names else "exact"
        # The loss's own policies (hinge's "xgboost", not the multiclass "lightgbm", ...).
        _code(dict.fromkeys(names), hessian, "hessian")
        if hessian == "fisher" and not loss.has_fisher:
            raise ValueError(f"hessian='fisher' is not defined for {loss.name}; "
                             "use 'exact', 'clip' or 'abs'")
        self.hessian = hessian
        self.hess_floor = finite_param(hess_floor, "hess_floor", low=0.0)

    # -- inputs -------------------------------------------------------------------------
    def target(self, preds: np.ndarray, labels) -> np.ndarray:
        y = np.asarray(labels)
        if self.loss.kind == "elementwise":
            if y.size != preds.size:
                raise ValueError(f"labels: {y.size} values for {preds.size} predictions")
            return y.reshape(preds.shape)
        if preds.ndim != 2:
            raise ValueError(f"{self.loss.name} needs margins of shape (n_samples, n_classes); "
                             f"got shape {preds.shape} (set num_class for {self.library})")
        n, k = preds.shape
        if y.size == n:
            yi = y.reshape(n)
            if yi.dtype.kind == "f":
                if not np.all(np.floor(yi) == yi):
                    bad = int(np.argmax(np.floor(yi) != yi))
                    raise ValueError(f"labels must be class indices; got {yi[bad]!r} at {bad}")
                yi = yi.astype(np.int64)
            return yi
        if y.size == n * k:
            return y.reshape(n, k)
        raise ValueError(f"labels: {y.size} values for {n} samples of {k} classes")

    def weight(self, weight, preds: np.ndarray) -> Optional[np.ndarray]:
        """Per-sample weights (None when absent or empty, as XGBoost gives them), shaped to
        broadcast against the loss: one per row."""
        if weight is None:
            return None
        w = np.asarray(weight, dtype=np.float64)
        if w.size == 0:
            return None
        n = preds.shape[0] if preds.ndim else 1
        if w.size != n:
            raise ValueError(f"weight: {w.size} values for {n} samples")
        if self.loss.kind == "elementwise" and preds.ndim == 2:
            return w.reshape(n, 1)  # multi-label: one weight per sample, every label
        return w.reshape(n)

    def ranking_inputs(self, preds, labels, group, weight):
        """(scores, relevance, group sizes, group weights or None) of a pairwise loss; group
        holds the sizes of the query groups, weight one weight per group (or None/empty)."""
        s = np.asarray(preds)
        if s.ndim != 1:
            raise ValueError(f"{self.loss.name} needs one score per document; got margins of "
                             f"shape {s.shape} (do not set num_class)")
        y = np.asarray(labels)
        if y.size != s.size:
            raise ValueError(f"labels: {y.size} values for {s.size} documents")
        sizes = np.asarray(group)
        w = None if weight is None else np.asarray(weight, dtype=np.float64)
        if w is not None and w.size == 0:
            w = None
        if w is not None and w.size != sizes.size:
            raise ValueError(f"weight: {w.size} values for {sizes.size} query groups ("
                             f"{self.loss.name} takes one weight per group)")
        return s, y.reshape(s.shape), sizes, w

    # -- results --------------------------------------------------------------------------
    def grad_hess(self, preds, labels, weight=None, group=None):
        """Per-sample gradient and Hessian; for a pairwise loss, group holds the sizes of the
        query groups and weight one weight per group."""
        if self.ranking:
            return self._ranking_grad_hess(*self.ranking_inputs(preds, labels, group, weight))
        preds = np.asarray(preds)
        y = self.target(preds, labels)
        w = self.weight(weight, preds)
        loss = self.loss
        if self.hessian in ("exact", "clip"):
            # One pass: w * max(h, floor) straight from the kernel.
            return loss.grad_hess(preds, y, sample_weight=w, hessian="clip",
                                  hess_floor=self.hess_floor, **self.params)
        g, h = loss.grad_hess(preds, y, hessian=self.hessian, **self.params)
        np.maximum(h, self.hess_floor, out=h)
        if w is not None:
            ww = w.reshape(w.shape + (1,) * (g.ndim - w.ndim))
            g *= ww
            h *= ww
        return g, h

    def _ranking_grad_hess(self, s, y, sizes, w):
        # Per-document derivatives of the (group-weighted) sum of the pair losses.
        loss = self.loss
        if self.hessian in ("exact", "clip"):
            # One pass: the kernel floors each document's Hessian, then applies its group's
            # weight (w * max(h, floor), as for the other losses).
            return loss.grad_hess(s, y, group=sizes, sample_weight=w, hessian="clip",
                                  hess_floor=self.hess_floor, **self.params)
        g, h = loss.grad_hess(s, y, group=sizes, hessian=self.hessian, **self.params)
        np.maximum(h, self.hess_floor, out=h)
        if w is not None:
            wd = np.repeat(w, sizes).astype(g.dtype, copy=False)
            g *= wd
            h *= wd
        return g, h

    def value(self, preds, labels, weight=None, group=None) -> float:
        """The weighted mean loss: over samples, or over query groups for a pairwise loss."""
        if self.ranking:
            s, y, sizes, w = self.ranking_inputs(preds, labels, group, weight)
            return float(self.loss(s, y, group=sizes, sample_weight=w, reduction="mean",
                                   **self.params))
        preds = np.asarray(preds)
        y = self.target(preds, labels)
        return float(self.loss(preds, y, sample_weight=self.weight(weight, preds),
                               reduction="mean",
                               **self.params))


def describe(kind: str, loss: Loss, params: dict[str, Any]) -> str:
    ps = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"<fastloss {kind} {loss.name}({ps})>"
