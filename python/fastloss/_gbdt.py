"""What the XGBoost and LightGBM adapters share: a loss turned into per-sample gradients and
Hessians (or a metric value) from the raw margins and labels a booster hands over.

Both libraries give the custom objective the raw margin: shape (n,) for one output per sample,
(n, K) for K classes (LightGBM's class-major buffer arrives as an (n, K) view). Labels come as
a float array of n (class indices for multiclass losses) or, for multi-label and probability
targets, of n * K values in row-major order.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

import fastloss as _fl

from ._loss import _HESSIANS, _ROW_HESSIANS, Loss, _code, finite_param

SUPPORTED_KINDS = ("elementwise", "rowwise")


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
            f"fastloss.{library} supports elementwise and row-wise losses; {loss.name} is of kind "
            f"{loss.kind!r}, which needs inputs a {library} objective does not receive")
    return loss


def check_params(loss: Loss, params: dict) -> None:
    for key in params:
        if key not in loss.params:
            raise TypeError(f"{loss.name}() got an unexpected keyword argument {key!r}")


class BoostingLoss:
    """grad/hess and metric values of one loss with fixed parameters."""

    def __init__(self, loss: Loss, params: dict, *, hessian: Optional[str], hess_floor: float,
                 library: str):
        check_params(loss, params)
        self.loss = loss
        self.params = dict(params)
        self.library = library
        row = loss.kind == "rowwise"
        if hessian is None:
            # The library's own convention for softmax losses (so that the built-in objective is
            # reproduced), the exact Hessian otherwise; both floored below.
            hessian = library if row else "exact"
        _code(_ROW_HESSIANS if row else _HESSIANS, hessian, "hessian")
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

    # -- results --------------------------------------------------------------------------
    def grad_hess(self, preds, labels, weight=None):
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

    def value(self, preds, labels, weight=None) -> float:
        preds = np.asarray(preds)
        y = self.target(preds, labels)
        return float(self.loss(preds, y, sample_weight=self.weight(weight, preds),
                               reduction="mean",
                               **self.params))


def describe(kind: str, loss: Loss, params: dict[str, Any]) -> str:
    ps = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"<fastloss {kind} {loss.name}({ps})>"
