"""Binary and multi-label losses: (logits, target) elementwise. Formulas in docs/losses.md."""

from __future__ import annotations

import numpy as np

from . import _core
from ._loss import Loss, finite_param
from ._loss import _log_scale as log_scale
from ._weights import check_countable, index_text, resolve_class_weight

_IDS = {name: i for i, name in enumerate(_core.elementwise_losses)}


def check_keys(loss_name: str, params: dict, allowed) -> None:
    for key in params:
        if key not in allowed:
            raise TypeError(f"{loss_name}() got an unexpected keyword argument {key!r}")


def compute_dtype(pred) -> np.dtype:
    """The dtype the kernels will compute in (see docs/design.md)."""
    dt = getattr(pred, "dtype", None)
    return compute_dtype_of(np.asarray(pred).dtype if dt is None else dt)


def compute_dtype_of(dtype) -> np.dtype:
    """The compute dtype of inputs of `dtype`: float32 for float32 and float16, else float64.
    By kind and size, so that a byte-swapped float32 ('>f4' on a little-endian machine), which
    the kernels compute in float32, is float32 here too."""
    dt = np.dtype(dtype)
    return np.dtype(np.float32) if dt.kind == "f" and dt.itemsize <= 4 else np.dtype(np.float64)


def check_probabilities(pred, name: str = "pred") -> None:
    """ValueError naming `name` and a position when a value lies outside [0, 1]."""
    p = np.asarray(pred)
    if p.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, integer or float), "
                        f"got dtype {p.dtype}")
    if p.size == 0:
        return
    lo, hi = np.min(p), np.max(p)
    if lo < 0 or hi > 1:
        bad = np.argmin(p) if lo < 0 else np.argmax(p)
        where = tuple(int(i) for i in np.unravel_index(bad, p.shape))
        raise ValueError(f"{name} must hold probabilities in [0, 1] when from_logits=False; "
                         f"got {p.flat[bad].item()!r} at index {where}")


def check_real(value, name: str) -> None:
    """TypeError naming `name` unless `value` holds real numbers (checked before a NumPy
    conversion could warn about, or misname, a complex, object or string array)."""
    if value is None:
        return
    kind = value.dtype.kind if isinstance(value, np.ndarray) else np.asarray(value).dtype.kind
    if kind not in "biuf":
        dt = value.dtype if isinstance(value, np.ndarray) else np.asarray(value).dtype
        raise TypeError(f"{name} must hold real numbers (bool, integer or float), got dtype {dt}")


def shape_text(shape) -> str:
    """A shape as the compiled core's messages write it: (3,), (2, 4)."""
    return str(tuple(int(v) for v in shape))


def broadcasts_to(shape, target_shape) -> bool:
    """Whether an array of `shape` broadcasts to `target_shape` without enlarging it."""
    try:
        return np.broadcast_shapes(tuple(shape), tuple(target_shape)) == tuple(target_shape)
    except ValueError:
        return False


def _loss_shape(pred_shape, target_shape, weight_shape):
    """The compiled core's broadcasting rules, with its messages: pred and target broadcast
    together; sample_weight broadcasts to their shape without enlarging it."""
    text = shape_text
    try:
        shape = np.broadcast_shapes(pred_shape, target_shape)
    except ValueError:
        raise ValueError(f"target with shape {text(target_shape)} cannot be broadcast with pred "
                         f"with shape {text(pred_shape)}") from None
    if weight_shape != ():
        if len(weight_shape) > len(shape):
            raise ValueError(f"sample_weight with shape {text(weight_shape)} has more dimensions "
                             f"than the loss shape {text(shape)}")
        if not broadcasts_to(weight_shape, shape):
            raise ValueError(f"sample_weight with shape {text(weight_shape)} does not broadcast "
                             f"to the loss shape {text(shape)}")
    return shape


def binary_counts(target, pred, sample_weight, omit_nan=False):
    """(negatives, positives) of soft or hard binary targets over the loss's shape.

    The targets are checked first, with the kernel's message: in [0, 1] (NaN aside). Samples
    with a NaN in target or sample_weight do not count (a NaN has no class; nan_policy
    "propagate" gives such a sample a NaN loss, "raise" refuses the call), nor with omit_nan
    those with a NaN in pred. An infinite sample weight gives no count: UncountableError.
    """
    for value, name in ((pred, "logits"), (target, "target"), (sample_weight, "sample_weight")):
        check_real(value, name)
    t = np.asarray(target, dtype=np.float64)
    shape = _loss_shape(np.shape(pred), t.shape, np.shape(sample_weight))
    with np.errstate(over="ignore"):  # as the kernel, in the compute dtype: 1 + 1e-10 is 1
        tc = np.asarray(target, dtype=compute_dtype(pred))
    if ((tc < 0) | (tc > 1)).any():
        flat = int(np.argmax((t < 0) | (t > 1)))  # the kernel's message reads float64
        raise ValueError(f"target must hold probabilities in [0, 1]; got {float(t.flat[flat])} "
                         f"at index {index_text(flat, t.shape)}")
    t = np.broadcast_to(t, shape)
    w = None if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, dtype=np.float64), shape)
    keep = ~np.isnan(t)
    if omit_nan:
        keep &= ~np.isnan(np.asarray(pred, dtype=np.float64))
    if w is not None:
        keep &= ~np.isnan(w)
        check_countable(np.where(keep, w, 0.0), "sample_weight")  # inf is not left out
    if not keep.all():
        t = np.where(keep, t, 0.0)
        w = keep.astype(np.float64) if w is None else np.where(keep, w, 0.0)
    if w is None:
        pos = float(np.sum(t))
        total = float(t.size)
    else:
        pos = float(np.sum(t * w))
        total = float(np.sum(w))
    return np.array([total - pos, pos])


_SCE_PARAMS = {"pos_weight": None, "class_weight": None, "label_smoothing": 0.0,
               "from_logits": True, "log_base": None}


def _prepare_sigmoid_ce(pred, target, sample_weight, params, omit_nan=False):
    check_keys("sigmoid_cross_entropy", params, _SCE_PARAMS)
    eps = finite_param(params.get("label_smoothing", 0.0), "label_smoothing", low=0.0, high=1.0)
    from_logits = params.get("from_logits", True)
    if not isinstance(from_logits, (bool, np.bool_)):
        raise TypeError(f"from_logits must be a bool, got {type(from_logits).__name__}")
    scale = log_scale(params.get("log_base"))
    pos_weight = params.get("pos_weight")
    pw_one = pos_weight is None
    if pos_weight is None:
        pos_weight = 1.0
    else:
        pw = np.asarray(pos_weight)
        if pw.dtype.kind not in "biuf":
            raise TypeError(f"pos_weight must be a real number or array, got dtype {pw.dtype}")
        if pw.size and not (np.all(np.isfinite(pw)) and np.min(pw) >= 0):
            raise ValueError("pos_weight must be finite and >= 0")
        pos_weight = pw
        pw_one = pw.ndim == 0 and float(pw) == 1.0
    cw = resolve_class_weight(params.get("class_weight"), 2,
                              counts=lambda: binary_counts(target, pred, sample_weight, omit_nan))
    w_neg, w_pos = (1.0, 1.0) if cw is None else (float(cw[0]), float(cw[1]))
    clip = float(np.finfo(compute_dtype(pred)).eps)
    if not from_logits:
        check_probabilities(pred, "logits")
    # [6]: P is 1 everywhere, so that the kernel may run its plain loop (when the rest agree)
    values = [w_neg, w_pos, eps, 1.0 if from_logits else 0.0, clip, scale, 1.0 if pw_one else 0.0]
    return values, pos_weight, "pos_weight", cw is not None


sigmoid_cross_entropy = Loss(
    "sigmoid_cross_entropy", family="binary", arg_names=("logits", "target"),
    kernel_id=_IDS["sigmoid_cross_entropy"],
    params=_SCE_PARAMS, prepare=_prepare_sigmoid_ce, has_fisher=True,
    formula="P t softplus(-z) + (1 - t) softplus(z); grad sigmoid(z) - t (P = 1); hess p (1 - p)",
    doc="""Binary / multi-label cross-entropy on logits z (or probabilities, from_logits=False).

l = P t' softplus(-z) + (1 - t') softplus(z) with t' = t (1 - label_smoothing) +
label_smoothing / 2 and P = pos_weight (scalar or array broadcast like PyTorch's
BCEWithLogitsLoss). class_weight: None, "balanced", "auto", {0: w_neg, 1: w_pos} or
[w_neg, w_pos]; a sample's class weight w_neg (1 - t) + w_pos t multiplies its loss and
enters the mean's denominator ("balanced"/"auto" count the call's targets; a sample with a
NaN target or sample weight has no class and is not counted).
log_base scales value and derivatives by 1 / ln(log_base).
from_logits=False takes probabilities, clipped to [eps, 1 - eps] with eps the dtype's
machine epsilon.""")

LOSSES = [sigmoid_cross_entropy]
