"""Class weights: 'balanced', 'auto', dicts and arrays, and a streaming class counter."""

from __future__ import annotations

import numbers
from typing import Any, Mapping, Optional

import numpy as np

__all__ = ["MAX_INFERRED_CLASSES", "ClassCounts", "check_ignore_index", "class_weight",
           "resolve_class_weight"]

_MODES = ("balanced", "auto")

# Without n_classes, the counts hold one entry per class up to the largest label (ignored labels
# included), so a label L costs 8 (L + 1) bytes before any class is known to be empty. Labels
# up to 2**24 - 1 (128 MiB of counts) are taken as classes; a larger one is far more often a
# wrong value (an id, a float sentinel) than a class, and n_classes= lifts the limit.
MAX_INFERRED_CLASSES = 2**24

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def index_text(flat: int, shape) -> str:
    """A flat position as an index into `shape`, written as the compiled core writes it."""
    return str(tuple(int(i) for i in np.unravel_index(int(flat), tuple(shape))))


def check_ignore_index(value) -> Optional[int]:
    """ignore_index as an int (or None): an integer that fits in int64, as the kernels read it.
    bool and float are refused (TypeError), as 1.0 or True is more likely a mistake than a
    class."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"ignore_index must be an int or None, got {type(value).__name__}")
    v = int(value)
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise ValueError(f"ignore_index must fit in int64 ([-2**63, 2**63 - 1]), got {v}")
    return v


class UncountableError(ValueError):
    """A counting pass met a value that has no class count (a NaN or infinite weight or
    target). resolve_class_weight names the parameter that asked for the counts."""


def check_countable(value, name: str, nan_hint: str = "") -> None:
    """UncountableError naming `name` and the first position where `value` is NaN or infinite
    (values that give no count: they would turn every class weight into NaN or 0).
    `nan_hint` is added to the message for a NaN."""
    if value is None:
        return
    a = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        flat = int(np.argmax(bad))
        nan = bool(np.isnan(a.flat[flat]))
        what = "NaN" if nan else "an infinite value"
        hint = f" ({nan_hint})" if nan and nan_hint else ""
        raise UncountableError(f"{name} holds {what} at index {index_text(flat, a.shape)}{hint}")


def _as_labels(labels, name: str = "labels") -> np.ndarray:
    """Labels as an integer or float array of whole numbers, in their own shape. A non-finite
    label is a ValueError, a fraction or a non-numeric dtype a TypeError; the range is
    checked by the caller, before any conversion could wrap a huge value."""
    y = np.asarray(labels)
    if y.dtype.kind in "biu":
        return y
    if y.dtype.kind != "f":
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.size == 0:
        return y.astype(np.int64)  # [] is float64 in NumPy: no labels, not float labels
    finite = np.isfinite(y)
    if not finite.all():
        flat = int(np.argmin(finite))
        raise ValueError(f"{name} must be finite class labels, got {y.flat[flat]} at index "
                         f"{index_text(flat, y.shape)}")
    whole = np.floor(y) == y
    if not whole.all():
        flat = int(np.argmin(whole))
        raise TypeError(f"{name} must hold integer class labels, got {y.flat[flat]} at index "
                        f"{index_text(flat, y.shape)} of dtype {y.dtype}")
    return y


class ClassCounts:
    """Accumulates (optionally weighted) class counts chunk by chunk.

    The counts hold ``n_classes`` entries, or (``n_classes=None``) the largest label seen + 1,
    ignored labels included: an ignored class inside the labels' range keeps a count of 0 and
    gets weight 0, so the weights fit a loss called with the same ``ignore_index``. An
    ignored label above empty classes (255 beside classes 0..20) lies outside the classes:
    the weights stop at the last counted class. Without ``n_classes`` the largest label must
    be below ``MAX_INFERRED_CLASSES`` (2**24). Labels and sample weights must be finite (a
    NaN gives no count).

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
        self.ignore_index = check_ignore_index(ignore_index)
        self.counts = np.zeros(self.n_classes or 0, dtype=np.float64)

    def update(self, labels, sample_weight=None) -> "ClassCounts":
        """Add one chunk of integer labels (and their sample weights)."""
        y = _as_labels(labels)
        w = None
        if sample_weight is not None:
            sw = np.asarray(sample_weight)
            if sw.dtype.kind not in "biuf":
                raise TypeError(f"sample_weight must hold real numbers, got dtype {sw.dtype}")
            try:
                w = np.broadcast_to(sw.astype(np.float64), y.shape)
            except ValueError:
                raise ValueError(f"sample_weight with shape {sw.shape} does not broadcast to the "
                                 f"labels' shape {y.shape}") from None
            try:
                check_countable(w, "sample_weight")
            except UncountableError as e:
                raise ValueError(f"{e}: a class count needs finite weights") from None
            w = w.ravel()
        shape = y.shape
        y = y.ravel()
        if y.size == 0:
            return self
        live = np.ones(y.size, dtype=bool) if self.ignore_index is None else y != self.ignore_index
        # Range first, on the labels as given (a uint64 or float label may not fit in int64).
        bad = live & (y < 0)
        if self.n_classes is not None:
            bad |= live & (y >= self.n_classes)
        else:
            bad |= y >= MAX_INFERRED_CLASSES  # ignored labels size the counts too
        if bad.any():
            flat = int(np.argmax(bad))
            v = y[flat]
            text = repr(float(v)) if y.dtype.kind == "f" else str(int(v))
            where = index_text(flat, shape)
            if v < 0:
                raise ValueError(f"labels must be >= 0 (or ignore_index), got {text} at index "
                                 f"{where}")
            if self.n_classes is not None:
                raise ValueError(f"labels must be < n_classes={self.n_classes} (or "
                                 f"ignore_index), got {text} at index {where}")
            raise ValueError(f"labels must be < {MAX_INFERRED_CLASSES} (2**24) when n_classes "
                             f"is not given, got {text} at index {where}: the counts would "
                             f"need one entry per class up to it; pass n_classes= for more "
                             f"classes")
        # Every label now lies in [0, bound) or is the ignored one (which fits in int64).
        if self.n_classes is not None:
            size = self.n_classes
        else:
            size = max(int(y.max()) + 1, self.counts.size)  # negative labels are ignored ones
        y = y[live].astype(np.intp)
        w = None if w is None else w[live]
        chunk = np.bincount(y, weights=w, minlength=size).astype(np.float64)
        if chunk.size > self.counts.size:
            grown = np.zeros(chunk.size)
            grown[: self.counts.size] = self.counts
            self.counts = grown
        self.counts[: chunk.size] += chunk
        return self

    def class_weight(self, mode: str = "balanced") -> np.ndarray:
        """The class weights of the counts seen so far (see the class's docstring for their
        length)."""
        return _weights_from_counts(self._class_counts(), mode, self.ignore_index)

    def _class_counts(self) -> np.ndarray:
        """The counts, one per class: self.counts, less an ignored label above the classes."""
        counts, ig = self.counts, self.ignore_index
        if self.n_classes is None and ig is not None and ig == counts.size - 1:
            # The ignored label is the largest one. If classes between the last counted class
            # and it are empty, it lies above the classes (as 255 in segmentation masks): the
            # weights stop at the last counted class, the only length that defines them.
            seen = np.flatnonzero(counts[:ig] != 0)
            last = int(seen[-1]) if seen.size else -1
            if last < ig - 1:
                counts = counts[: last + 1]
        return counts


def _weights_from_counts(counts: np.ndarray, mode: str, ignore_index: Optional[int] = None,
                         name: str = "class_weight") -> np.ndarray:
    """Weights from class counts. A class equal to ignore_index is left out (weight 0, not
    counted in n_classes): its samples never reach the loss."""
    counts = np.asarray(counts, dtype=np.float64)
    live = np.ones(counts.size, dtype=bool)
    if ignore_index is not None and 0 <= ignore_index < counts.size:
        live[ignore_index] = False
    k = int(live.sum())
    if k == 0 or not np.any(counts[live] != 0):
        raise ValueError(f"{name}={mode!r} is undefined: no labels seen (or all ignored)")
    empty = np.flatnonzero(live & ~(counts > 0))
    if empty.size:
        c = int(empty[0])
        why = "has no samples" if counts[c] == 0 else f"has a weighted count of {float(counts[c])}"
        raise ValueError(f"{name}={mode!r} is undefined: class {c} {why}")
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


def class_weight(labels, mode: Any = "balanced", n_classes: Optional[int] = None,
                 sample_weight=None, *, ignore_index: Optional[int] = None) -> np.ndarray:
    """Class weights from integer labels: "balanced" (n / (K n_c)) or "auto" (legacy).

    ``mode`` may also be any other form a loss's ``class_weight`` takes, resolved to the array
    the loss would use (as scikit-learn's compute_class_weight): None gives ones, a dict
    {class: weight} gives its weights and 1 for the classes it leaves out, an array of
    ``n_classes`` is checked and copied. The labels are checked all the same, and set the
    length when ``n_classes`` is not given.

    ``labels``: integers, or floats holding whole numbers, in [0, n_classes) or equal to
    ``ignore_index``. ``sample_weight`` (finite) weights the counts. Returns a float64 array of
    ``n_classes`` entries; by default the largest label + 1, ignored labels included, so that
    an ignored class gets weight 0 and the array fits the loss called with the same
    ``ignore_index`` (an ignored label above empty classes, as 255 in segmentation masks, is
    outside the classes: the array stops at the largest counted label). Without
    ``n_classes`` the largest label must be below ``MAX_INFERRED_CLASSES`` (2**24).
    ValueError for a label out of range, a non-finite label or weight, or a class with no
    samples; TypeError for labels that are not whole numbers.
    """
    if isinstance(mode, str) and mode not in _MODES:
        raise ValueError(f"mode must be 'balanced', 'auto', None, a dict or an array, got "
                         f"{mode!r}")
    cc = ClassCounts(n_classes, ignore_index=ignore_index)
    cc.update(labels, sample_weight)
    if isinstance(mode, str):
        return cc.class_weight(mode)
    k = cc._class_counts().size
    w = resolve_class_weight(mode, k, name="mode", ignore_index=ignore_index)
    return np.ones(k) if w is None else w


def _real_weight(value: Any, name: str) -> float:
    """One class weight of a dict: a real scalar, as an array's entries may be (bool, integer,
    float, a 0-d array of them, numbers.Real); complex values and strings are refused."""
    if isinstance(value, numbers.Real):
        return float(value)
    v = np.asarray(value) if not isinstance(value, str) else None
    if v is None or v.ndim != 0 or v.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(v)


def resolve_class_weight(spec: Any, n_classes: int, *, counts=None, name: str = "class_weight",
                         ignore_index: Optional[int] = None) -> Optional[np.ndarray]:
    """None, "balanced"/"auto" (needs counts, a callable returning them), a dict or an array
    -> a float64 array of n_classes (or None). An UncountableError of the counting pass (a NaN
    or infinite weight or target) becomes a ValueError that names `name` too."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in _MODES:
            raise ValueError(f"{name} must be None, 'balanced', 'auto', a dict or an array; got {spec!r}")
        try:
            c = counts()
        except UncountableError as e:
            raise ValueError(f"{name}={spec!r} cannot be computed: {e}") from None
        if not np.any(np.asarray(c) != 0):
            # Nothing counted: no sample reaches the loss (an empty call, every sample ignored
            # or weighted 0), so no weight is ever applied; the call gives what it gives
            # without class weights (empty arrays, zeros, a NaN mean), not an error.
            return None
        return _weights_from_counts(c, spec, ignore_index, name)
    if isinstance(spec, Mapping):
        w = np.ones(n_classes, dtype=np.float64)
        for key, value in spec.items():
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < n_classes:
                raise ValueError(f"{name} key {key!r} is not a class in [0, {n_classes})")
            w[int(key)] = _real_weight(value, f"{name}[{key!r}]")
    else:
        w = np.asarray(spec)
        if w.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {w.dtype}")
        if w.shape != (n_classes,):
            raise ValueError(f"{name} must have shape ({n_classes},), got {w.shape}")
        w = w.astype(np.float64)  # a copy
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return w
