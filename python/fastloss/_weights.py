"""Class weights: 'balanced', 'auto', dicts and arrays, and a streaming class counter."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

__all__ = ["class_weight", "ClassCounts", "resolve_class_weight"]

_MODES = ("balanced", "auto")


def _as_labels(labels, name: str = "labels") -> np.ndarray:
    y = np.asarray(labels)
    if y.dtype.kind not in "biu":
        if y.dtype.kind == "f" and y.size and np.all(np.floor(y) == y):
            y = y.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    return y


class ClassCounts:
    """Accumulates (optionally weighted) class counts chunk by chunk.

    >>> cc = ClassCounts(3)
    >>> _ = cc.update([0, 1, 1]).update([2, 1])
    >>> cc.counts.tolist()
    [1.0, 3.0, 1.0]
    >>> cc.class_weight("balanced").round(4).tolist()
    [1.6667, 0.5556, 1.6667]
    """

    def __init__(self, n_classes: Optional[int] = None, *, ignore_index: Optional[int] = None):
        if n_classes is not None:
            if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
                raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
        self.n_classes = None if n_classes is None else int(n_classes)
        self.ignore_index = ignore_index
        self.counts = np.zeros(self.n_classes or 0, dtype=np.float64)

    def update(self, labels, sample_weight=None) -> "ClassCounts":
        """Add one chunk of integer labels (and their sample weights)."""
        y = _as_labels(labels).ravel()
        w = None
        if sample_weight is not None:
            w = np.broadcast_to(np.asarray(sample_weight, dtype=np.float64), np.shape(labels)).ravel()
        if self.ignore_index is not None:
            keep = y != self.ignore_index
            y = y[keep]
            w = None if w is None else w[keep]
        if y.size:
            lo, hi = int(y.min()), int(y.max())
            if lo < 0:
                pos = int(np.argmin(y))
                raise ValueError(f"labels must be >= 0, got {lo} at position {pos}")
            if self.n_classes is not None and hi >= self.n_classes:
                pos = int(np.argmax(y))
                raise ValueError(f"labels must be < n_classes={self.n_classes}, got {hi} at position {pos}")
            size = self.n_classes if self.n_classes is not None else max(hi + 1, self.counts.size)
            chunk = np.bincount(y, weights=w, minlength=size).astype(np.float64)
            if chunk.size > self.counts.size:
                grown = np.zeros(chunk.size)
                grown[: self.counts.size] = self.counts
                self.counts = grown
            self.counts[: chunk.size] += chunk
        return self

    def class_weight(self, mode: str = "balanced") -> np.ndarray:
        """The class weights of the counts seen so far."""
        return _weights_from_counts(self.counts, mode, self.ignore_index)


def _weights_from_counts(counts: np.ndarray, mode: str, ignore_index: Optional[int] = None,
                         name: str = "class_weight") -> np.ndarray:
    """Weights from class counts. A class equal to ignore_index is left out (weight 0, not
    counted in n_classes): its samples never reach the loss."""
    counts = np.asarray(counts, dtype=np.float64)
    live = np.ones(counts.size, dtype=bool)
    if ignore_index is not None and 0 <= ignore_index < counts.size:
        live[ignore_index] = False
    k = int(live.sum())
    if k == 0:
        raise ValueError(f"{name}: no labels seen")
    empty = np.flatnonzero(live & ~(counts > 0))
    if empty.size:
        raise ValueError(f"{name}={mode!r} is undefined: class {int(empty[0])} has no samples")
    w = np.zeros(counts.size)
    c = counts[live]
    if mode == "balanced":
        # scikit-learn's "balanced": n_samples / (n_classes * n_c).
        w[live] = c.sum() / (k * c)
    elif mode == "auto":
        # The legacy scikit-learn "auto": proportional to 1 / n_c, scaled to sum to n_classes.
        inv = 1.0 / c
        w[live] = inv * (k / inv.sum())
    else:
        raise ValueError(f"class_weight mode must be 'balanced' or 'auto', got {mode!r}")
    return w


def class_weight(labels, mode: str = "balanced", n_classes: Optional[int] = None,
                 sample_weight=None, *, ignore_index: Optional[int] = None) -> np.ndarray:
    """Class weights from integer labels: "balanced" (n / (K n_c)) or "auto" (legacy).

    ``sample_weight`` weights the counts. Returns a float64 array of ``n_classes`` (default:
    max label + 1).
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be 'balanced' or 'auto', got {mode!r}")
    cc = ClassCounts(n_classes, ignore_index=ignore_index)
    cc.update(labels, sample_weight)
    return cc.class_weight(mode)


def resolve_class_weight(spec: Any, n_classes: int, *, counts=None, name: str = "class_weight",
                         ignore_index: Optional[int] = None) -> Optional[np.ndarray]:
    """None, "balanced"/"auto" (needs counts, a callable returning them), a dict or an array
    -> a float64 array of n_classes (or None)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in _MODES:
            raise ValueError(f"{name} must be None, 'balanced', 'auto', a dict or an array; got {spec!r}")
        return _weights_from_counts(counts(), spec, ignore_index, name)
    if isinstance(spec, Mapping):
        w = np.ones(n_classes, dtype=np.float64)
        for key, value in spec.items():
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < n_classes:
                raise ValueError(f"{name} key {key!r} is not a class in [0, {n_classes})")
            w[int(key)] = float(value)
    else:
        w = np.asarray(spec, dtype=np.float64)
        if w.shape != (n_classes,):
            raise ValueError(f"{name} must have shape ({n_classes},), got {w.shape}")
        w = w.copy()
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return w
