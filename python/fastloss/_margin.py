"""Margin losses: hinge, squared_hinge and margin_ranking (elementwise); multiclass_hinge,
crcnn_ranking and multilabel_softmax_cross_entropy (one value per row of [..., K] scores).

Formulas, derivatives, Hessian policies and the conventions chosen where libraries differ:
docs/losses.md.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._binary import check_keys, compute_dtype
from ._loss import (_NAN_POLICIES, _REDUCTIONS, Loss, _code, as_array, finite_param,
                    make_parser, scalar_if_0d)
from ._multiclass import check_ignore_index, class_counts, n_classes_of
from ._weights import resolve_class_weight

_IDS = {name: i for i, name in enumerate(_core.elementwise_losses)}
_ROW_IDS = {name: i for i, name in enumerate(_core.rowwise_losses)}
_WANT_VALUE, _WANT_GRAD, _WANT_HESS = 1, 2, 4
# Piecewise-linear and piecewise-quadratic losses: no expected Hessian. hinge also offers
# XGBoost's binary:hinge convention (kernel slot 3).
_PIECEWISE_HESSIANS = {"exact": 0, "clip": 1, "abs": 2}
_HINGE_HESSIANS = {"exact": 0, "clip": 1, "abs": 2, "xgboost": 3}


def _margin(value) -> float:
    return finite_param(value, "margin")


hinge = Loss(
    "hinge", family="binary", kernel_id=_IDS["hinge"], params={"margin": 1.0},
    parse=make_parser("hinge", {"margin": _margin}, {"margin": 1.0}), has_fisher=False,
    hessians=_HINGE_HESSIANS, arg_names=("scores", "target"),
    formula="max(0, m - y f), y = +-1; grad -y [y f < m]; hess 0 (xgboost: 1 or FLT_MIN)",
    doc="""Hinge loss max(0, margin - y f) of scores f against labels in {-1, +1} or {0, 1}
(0 is read as -1).

Gradient -y where y f < margin, else 0 (also at y f == margin). The exact Hessian is 0;
hessian="clip" gives hess_floor, hessian="xgboost" XGBoost's binary:hinge convention (1 where
y f < margin, else FLT_MIN). Labels outside {-1, 0, +1} raise ValueError.""")

squared_hinge = Loss(
    "squared_hinge", family="binary", kernel_id=_IDS["squared_hinge"], params={"margin": 1.0},
    parse=make_parser("squared_hinge", {"margin": _margin}, {"margin": 1.0}), has_fisher=False,
    hessians=_PIECEWISE_HESSIANS, arg_names=("scores", "target"),
    formula="max(0, m - y f)^2, y = +-1; grad -2 y max(0, m - y f); hess 2 [y f < m]",
    doc="""Squared hinge loss max(0, margin - y f)^2 of scores f against labels in {-1, +1}
or {0, 1} (0 is read as -1), as Keras' squared_hinge (per element).

Gradient -2 y max(0, margin - y f); Hessian 2 where y f < margin, else 0.""")


def _sum_to(full: np.ndarray, shape, dtype) -> np.ndarray:
    """The gradient of a sum w.r.t. an operand of `shape` broadcast to full.shape, in dtype."""
    if full.shape == tuple(shape):
        return full.astype(dtype, copy=False)
    off = full.ndim - len(shape)
    axes = tuple(d for d in range(full.ndim)
                 if d < off or (shape[d - off] == 1 and full.shape[d] != 1))
    # Summed in the wider of the two dtypes, then cast (a float32 running sum of many float64
    # terms would drift).
    wide = np.promote_types(full.dtype, dtype)
    return full.sum(axis=axes, dtype=wide).astype(dtype, copy=False).reshape(shape)


def _pair_out(obj, name):
    if obj is None:
        return None, None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise TypeError(f"{name} must be a pair of arrays (one per input) or None, "
                        f"got {type(obj).__name__}")
    return obj[0], obj[1]


def _real_input(a, name: str) -> np.ndarray:
    a = as_array(a, name)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, integer or float), got dtype "
                        f"{a.dtype}")
    return a


def _check_out(obj, name: str, shape, dtype: np.dtype, taken: list,
               dtype_is: str = "the computation's dtype") -> np.ndarray:
    """obj as an output array of `shape` and `dtype`, checked as the compiled core checks its
    outputs (same order, same messages): TypeError for the type or dtype, ValueError for the
    shape, a read-only array or memory shared with an entry of taken ((array, name) pairs:
    the inputs and the outputs checked before). Appends obj to taken."""
    if not isinstance(obj, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(obj).__name__}")
    if obj.dtype != dtype:  # also refuses a byte-swapped float of the right size
        raise TypeError(f"{name} must have dtype {dtype} ({dtype_is}), got {obj.dtype}")
    if obj.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {obj.shape}")
    if not obj.flags.writeable:
        raise ValueError(f"{name} is read-only")
    for other, other_name in taken:
        # The bounds test first; the exact (slower) test only where the bounds intersect.
        if np.may_share_memory(obj, other) and np.shares_memory(obj, other):
            raise ValueError(f"{name} overlaps the memory of {other_name}; pass a separate "
                             "buffer")
    taken.append((obj, name))
    return obj


def _deliver(result: np.ndarray, shape, dtype, user, fresh: bool) -> np.ndarray:
    """result (a full-shape derivative) as the derivative w.r.t. an operand of `shape`: summed
    over its broadcast axes, in dtype, written into user when given (already checked).
    fresh=False: result itself is returned elsewhere too, so this one never is (a copy)."""
    if user is result:
        return user
    r = _sum_to(result, shape, dtype)
    if user is not None:
        np.copyto(user, r)
        return user
    return r.copy() if r is result and not fresh else r


class MarginRankingLoss(Loss):
    """margin_ranking(x1, x2, y): two differentiated inputs; gradients come as a pair."""

    def __call__(self, x1, x2, y, *, reduction="none", sample_weight=None,
                 nan_policy="propagate", out=None, **params):
        v, _, _ = self._run3(x1, x2, y, _WANT_VALUE, reduction, sample_weight, nan_policy,
                             params, out, None, None, "exact", 0.0)
        return scalar_if_0d(v, out)

    def grad(self, x1, x2, y, *, reduction="none", sample_weight=None, nan_policy="propagate",
             out=None, **params):
        """(d loss / d x1, d loss / d x2), each in its own input's compute dtype."""
        _, g, _ = self._run3(x1, x2, y, _WANT_GRAD, reduction, sample_weight, nan_policy,
                             params, None, out, None, "exact", 0.0, grad_name="out")
        return scalar_if_0d(g, out)

    def value_and_grad(self, x1, x2, y, *, reduction="none", sample_weight=None,
                       nan_policy="propagate", out=None, grad_out=None, **params):
        v, g, _ = self._run3(x1, x2, y, _WANT_VALUE | _WANT_GRAD, reduction, sample_weight,
                             nan_policy, params, out, grad_out, None, "exact", 0.0)
        return scalar_if_0d(v, out), scalar_if_0d(g, grad_out)

    def grad_hess(self, x1, x2, y, *, reduction="none", sample_weight=None,
                  nan_policy="propagate", hessian="exact", hess_floor=1e-6, grad_out=None,
                  hess_out=None, **params):
        """((g1, g2), (h1, h2)): the diagonal Hessians w.r.t. x1 and x2 (equal: 0 exactly)."""
        _, g, h = self._run3(x1, x2, y, _WANT_GRAD | _WANT_HESS, reduction, sample_weight,
                             nan_policy, params, None, grad_out, hess_out, hessian, hess_floor)
        return scalar_if_0d(g, grad_out), scalar_if_0d(h, hess_out)

    def _run3(self, x1, x2, y, want, reduction, sample_weight, nan_policy, params, out,
              grad_out, hess_out, hessian, hess_floor, grad_name="grad_out"):
        red = _code(_REDUCTIONS, reduction, "reduction")
        nan = _code(_NAN_POLICIES, nan_policy, "nan_policy")
        policy = _code(self._hessians, hessian, "hessian")
        floor = finite_param(hess_floor, "hess_floor", low=0.0) if policy == 1 else 0.0
        margin = (self._parse(params) if params else self._default_values)[0]
        x1, x2, y = _real_input(x1, "x1"), _real_input(x2, "x2"), _real_input(y, "y")
        try:
            full = np.broadcast_shapes(x1.shape, x2.shape, y.shape)
        except ValueError:
            raise ValueError(f"x1 {x1.shape}, x2 {x2.shape} and y {y.shape} do not broadcast "
                             "together") from None
        pred = x1 if x1.shape == full else np.broadcast_to(x1, full)
        # The kernels compute in x1's dtype; each gradient and Hessian comes back in its own
        # input's compute dtype (a float32 x2 keeps float32 derivatives, as under autograd).
        dt1, dt2 = compute_dtype(x1), compute_dtype(x2)
        g1_out, g2_out = _pair_out(grad_out, grad_name)
        h1_out, h2_out = _pair_out(hess_out, "hess_out")
        if out is not None and not (red == 0 and want & _WANT_VALUE):
            raise ValueError("out= holds per-sample losses and is only valid with "
                             "reduction='none'")
        # Every output is checked here, before anything is computed or written: the core sees
        # only some of them (and under its own slot names), and the rest are filled by copies.
        w = sample_weight
        if w is not None and not isinstance(w, np.ndarray):
            try:
                w = np.asarray(w)
            except (TypeError, ValueError):
                w = sample_weight  # not array-like: the core names sample_weight
        taken = [(x1, "x1"), (x2, "x2"), (y, "y")]
        if isinstance(w, np.ndarray):
            taken.append((w, "sample_weight"))
        if out is not None:
            _check_out(out, "out", full, dt1, taken)
        for pair, name in ((g1_out, g2_out), grad_name), ((h1_out, h2_out), "hess_out"):
            if pair[0] is not None:
                _check_out(pair[0], f"{name}[0]", x1.shape, dt1, taken)
            if pair[1] is not None:
                _check_out(pair[1], f"{name}[1]", x2.shape, dt2, taken, "x2's compute dtype")
        # An output goes straight to the kernel when its operand was not broadcast and has the
        # kernel's dtype; otherwise the result is summed over the broadcast axes and copied.
        direct1 = x1.shape == full
        direct2 = x2.shape == full and dt2 == dt1
        v = g = h = None
        if want & _WANT_GRAD:
            # One pass writes both gradients: dl/dx2 = -dl/dx1 comes out of the Hessian slot.
            v, ga, gb = _core.elementwise(
                self._kernel_id, pred, y, w, x2, "x2", False, [margin, 1.0], red,
                (want & _WANT_VALUE) | _WANT_GRAD | _WANT_HESS, out,
                g1_out if direct1 else None, grad_name, g2_out if direct2 else None, 0, 0.0,
                nan, "x1", "y")
            g = (_deliver(ga, x1.shape, dt1, g1_out, True),
                 _deliver(gb, x2.shape, dt2, g2_out, True))
        if want & _WANT_HESS:
            _, _, hh = _core.elementwise(
                self._kernel_id, pred, y, w, x2, "x2", False, [margin, 0.0], red,
                _WANT_HESS, None, None, grad_name, h1_out if direct1 else None, policy, floor,
                nan, "x1", "y")
            # hh serves both Hessians: the second one copies it when the first kept it.
            h1 = _deliver(hh, x1.shape, dt1, h1_out, True)
            h = (h1, _deliver(hh, x2.shape, dt2, h2_out, h1 is not hh))
        elif want & _WANT_VALUE and not (want & _WANT_GRAD):
            v, _, _ = _core.elementwise(
                self._kernel_id, pred, y, w, x2, "x2", False, [margin, 0.0], red,
                _WANT_VALUE, out, None, grad_name, None, 0, 0.0, nan, "x1", "y")
        if red and v is not None:
            v = np.float64(v)
        return v, g, h


margin_ranking = MarginRankingLoss(
    "margin_ranking", family="ranking", kernel_id=_IDS["margin_ranking"], params={"margin": 0.0},
    parse=make_parser("margin_ranking", {"margin": _margin}, {"margin": 0.0}), has_fisher=False,
    hessians=_PIECEWISE_HESSIANS, kind="margin_ranking", arg_names=("x1", "x2", "y"),
    formula="max(0, margin - y (x1 - x2)); grads (-y, +y) [y (x1 - x2) < margin]; hess 0",
    doc="""Margin ranking loss max(0, margin - y (x1 - x2)), as PyTorch's MarginRankingLoss;
y in {-1, +1} (or {0, 1}, 0 read as -1): y = 1 asks for x1 > x2 by at least margin.

x1, x2 and y broadcast together. .grad and .value_and_grad return the pair
(d/dx1, d/dx2) = (-y, +y) where the margin is violated (0 elsewhere, and at the kink);
grad_out= takes a pair of arrays. .grad_hess returns ((g1, g2), (h1, h2)); the exact
Hessians are 0.

dtypes: the loss is computed in x1's compute dtype (float32 for float32 and float16, else
float64) and the per-sample value comes in it; each derivative comes in the compute dtype of
the input it is taken w.r.t. (g2 and h2 follow x2, as under PyTorch's autograd). Output pairs
hold one array per input, of that input's shape and derivative dtype; every output is
checked (type, dtype, shape, writeable, no memory shared with an input or another output)
before anything is written.""")


# -- one value per row of scores [..., K] ---------------------------------------------------

def _index_target(loss_name: str, target) -> None:
    t = as_array(target, "target")
    if t.dtype.kind not in "biu":
        raise TypeError(f"target of {loss_name} must hold integer class indices, got dtype "
                        f"{t.dtype}")


def _scores_ndim(logits) -> int:
    return n_classes_of(logits, "scores")


_MCH_KINDS = {"crammer_singer": 0, "weston_watkins": 1}
_MCH_PARAMS = {"kind": "crammer_singer", "margin": 1.0, "p": 1, "class_weight": None,
               "ignore_index": -100}


def _prepare_multiclass_hinge(logits, target, sample_weight, params, omit_nan=False):
    check_keys("multiclass_hinge", params, _MCH_PARAMS)
    kind = _code(_MCH_KINDS, params.get("kind", "crammer_singer"), "kind")
    margin = _margin(params.get("margin", 1.0))
    p = params.get("p", 1)
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer,
                                                             np.floating)):
        raise TypeError(f"p must be the number 1 or 2, got {type(p).__name__} {p!r}")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    if p == 2 and kind == 0:
        raise ValueError("p=2 is defined for kind='weston_watkins' only")
    ignore_index = check_ignore_index(params.get("ignore_index", -100))
    _index_target("multiclass_hinge", target)
    k = _scores_ndim(logits)
    cw = resolve_class_weight(
        params.get("class_weight"), k, ignore_index=ignore_index,
        counts=lambda: class_counts(logits, target, sample_weight, ignore_index, omit_nan))
    return [margin, 0.0, 0.0, float(kind), float(p)], cw, ignore_index


multiclass_hinge = Loss(
    "multiclass_hinge", family="multiclass", kind="rowwise", kernel_id=_ROW_IDS["multiclass_hinge"],
    params=_MCH_PARAMS, prepare=_prepare_multiclass_hinge, has_fisher=False,
    hessians=_PIECEWISE_HESSIANS, arg_names=("scores", "target"),
    formula="crammer_singer: max(0, m + max_{j != y} s_j - s_y); "
            "weston_watkins: sum_{j != y} max(0, m - s_y + s_j)^p / K",
    doc="""Multiclass hinge loss of scores s[..., K] against class indices [...].

kind="crammer_singer" (default; scikit-learn's hinge_loss, optax's multiclass_hinge_loss):
max(0, margin + max_{j != y} s_j - s_y); gradient +1 at the largest wrong score (the first
one on ties), -1 at s_y where the margin is violated.
kind="weston_watkins" (PyTorch's multi_margin_loss): sum_{j != y} max(0, margin - s_y +
s_j)^p / K, p in {1, 2}.
class_weight (None, "balanced", "auto", a dict or an array of K) multiplies a row by the
weight of its class and enters the mean's denominator; ignore_index (default -100) drops
rows. Hessian: 0 (p = 1 and crammer_singer), 2 [z_j > 0] / K for p = 2.""")


_CRCNN_PARAMS = {"gamma": 2.0, "m_pos": 2.5, "m_neg": 0.5, "other_class": None,
                 "class_weight": None, "ignore_index": -100}


def _check_class(value, k: int, name: str):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if not 0 <= int(value) < k:
        raise ValueError(f"{name} must be a class in [0, {k}), got {value!r}")
    return int(value)


def _prepare_crcnn(logits, target, sample_weight, params, omit_nan=False):
    check_keys("crcnn_ranking", params, _CRCNN_PARAMS)
    gamma = finite_param(params.get("gamma", 2.0), "gamma", low=0.0, low_open=True)
    m_pos = finite_param(params.get("m_pos", 2.5), "m_pos")
    m_neg = finite_param(params.get("m_neg", 0.5), "m_neg")
    ignore_index = check_ignore_index(params.get("ignore_index", -100))
    _index_target("crcnn_ranking", target)
    k = _scores_ndim(logits)
    other = _check_class(params.get("other_class"), k, "other_class")
    cw = resolve_class_weight(
        params.get("class_weight"), k, ignore_index=ignore_index,
        counts=lambda: class_counts(logits, target, sample_weight, ignore_index, omit_nan))
    values = [gamma, 0.0, 0.0, m_pos, m_neg, 0.0 if other is None else 1.0,
              0.0 if other is None else float(other)]
    return values, cw, ignore_index


crcnn_ranking = Loss(
    "crcnn_ranking", family="ranking", kind="rowwise", kernel_id=_ROW_IDS["crcnn_ranking"],
    params=_CRCNN_PARAMS, prepare=_prepare_crcnn, has_fisher=False,
    hessians=_PIECEWISE_HESSIANS, arg_names=("scores", "target"),
    formula="softplus(gamma (m_pos - s_y)) + softplus(gamma (m_neg + s_c)), "
            "c = the best-scoring wrong class",
    doc="""The ranking loss of dos Santos, Xiang and Zhou (ACL 2015, "Classifying Relations by
Ranking with Convolutional Neural Networks") on scores s[..., K] and class indices [...]:

log(1 + exp(gamma (m_pos - s_y))) + log(1 + exp(gamma (m_neg + s_c))), c the highest-scoring
wrong class (the first on ties). With other_class set, rows of that class keep only the
second term and the Other column never competes as c (predict with fl.crcnn_predict).
class_weight and ignore_index as multiclass_hinge.""")


def crcnn_predict(scores, other_class=None):
    """Class predictions for crcnn_ranking scores [..., K]: the highest-scoring class (the
    first on ties); with other_class set, the Other column is left out and Other is predicted
    where every other score is negative (dos Santos et al., 2015)."""
    s = as_array(scores, "scores")
    if s.dtype.kind not in "biuf":
        raise TypeError(f"scores must be a real array, got dtype {s.dtype}")
    k = _scores_ndim(s)
    other = _check_class(other_class, k, "other_class")
    if other is None:
        return np.argmax(s, axis=-1)
    if k == 1:
        return np.full(s.shape[:-1], other, dtype=np.intp)
    # The best class without the Other column, from the two slices on either side of it
    # (no copy of the scores).
    parts = []
    if other > 0:
        lo = s[..., :other]
        parts.append((np.max(lo, axis=-1), np.argmax(lo, axis=-1)))
    if other < k - 1:
        hi = s[..., other + 1:]
        parts.append((np.max(hi, axis=-1), np.argmax(hi, axis=-1) + other + 1))
    best, idx = parts[0]
    if len(parts) == 2:
        take_hi = parts[1][0] > best  # ties keep the lower index
        best = np.where(take_hi, parts[1][0], best)
        idx = np.where(take_hi, parts[1][1], idx)
    return np.where(best < 0, other, idx).astype(np.intp, copy=False)


_MLSCE_PARAMS = {"mask": None}


def _check_unit_interval(t: np.ndarray, upper: bool) -> None:
    """ValueError naming target, its value and position, where a target is < 0 (or > 1 with
    upper). One pass over t (two with upper); NaN is left to nan_policy (fmin/fmax skip it)."""
    if not t.size:
        return
    lo = np.fmin.reduce(t, axis=None)
    hi = np.fmax.reduce(t, axis=None) if upper else 1
    if lo < 0 or hi > 1:
        # The error path only: the first offending position in C order.
        bad = int(np.argmax((t < 0) | (t > 1) if upper else t < 0))
        where = tuple(int(i) for i in np.unravel_index(bad, t.shape))
        raise ValueError(f"target must hold probabilities in [0, 1]; got {float(t.flat[bad])!r} "
                         f"at index {where}")


def _prepare_multilabel(logits, target, sample_weight, params, omit_nan=False):
    check_keys("multilabel_softmax_cross_entropy", params, _MLSCE_PARAMS)
    _scores_ndim(logits)
    t = as_array(target, "target")
    if t.dtype.kind not in "biuf":
        raise TypeError(f"target must be a real array of 0/1 labels or probabilities, got dtype "
                        f"{t.dtype}")
    if t.shape != logits.shape:
        raise ValueError(f"target must have the shape of scores {logits.shape} (one label per "
                         f"class), got {t.shape}")
    signed = t.dtype.kind in "if"
    cdt = compute_dtype(logits)
    if t.dtype != cdt:
        t = t.astype(cdt)
    mask = params.get("mask")
    mk = None
    if mask is not None:
        mk = mask if isinstance(mask, np.ndarray) else np.asarray(mask)
        if mk.dtype.kind != "b":
            raise TypeError(f"mask must be a boolean array, got dtype {mk.dtype}")
        try:
            np.broadcast_shapes(mk.shape, logits.shape)
        except ValueError:
            raise ValueError(f"mask with shape {mk.shape} does not broadcast to the shape of "
                             f"scores {logits.shape}") from None
        if np.broadcast_shapes(mk.shape, logits.shape) != logits.shape:
            raise ValueError(f"mask with shape {mk.shape} would enlarge scores {logits.shape}")
    # The kernels read a target of -1 as an absent class and check the others for [0, 1]
    # after their pass: a -1 given as a label is refused here, before anything runs. A mask
    # replaces the labels it masks out, so with one the whole range is checked here. (Bool
    # and unsigned labels cannot be negative: no pass over them without a mask.)
    if signed or mk is not None:
        _check_unit_interval(t, upper=mk is not None)
    class_w = None
    if mk is not None:
        # An absent class is a target of -1 for the kernels.
        t = np.where(mk, t, cdt.type(-1))
    return [0.0] * 7, class_w, None, None, t


multilabel_softmax_cross_entropy = Loss(
    "multilabel_softmax_cross_entropy", family="multilabel", kind="rowwise",
    kernel_id=_ROW_IDS["multilabel_softmax_cross_entropy"], params=_MLSCE_PARAMS,
    prepare=_prepare_multilabel, has_fisher=False, hessians=_PIECEWISE_HESSIANS,
    arg_names=("scores", "target"), post_log_base=True,
    formula="log(1 + sum_k (1 - t_k) e^{s_k}) + log(1 + sum_k t_k e^{-s_k})",
    doc="""Multi-label softmax cross-entropy on raw scores s[..., K] and 0/1 (or soft)
targets t[..., K]: log(1 + sum_{negatives} e^{s_i}) + log(1 + sum_{positives} e^{-s_j}).

A class is predicted present where its score is > 0. Soft targets t in [0, 1] weight each
class's two terms by 1 - t and t. mask (bool, broadcast to the scores' shape): False marks
classes that are absent from a row (no label): they take part in neither term and get 0
gradient and Hessian. Gradient u - v, Hessian u (1 - u) + v (1 - v) with
u = (1 - t) e^{s} / (1 + sum (1 - t) e^{s}), v = t e^{-s} / (1 + sum t e^{-s}).""")

LOSSES = [hinge, squared_hinge, margin_ranking, multiclass_hinge, crcnn_ranking,
          multilabel_softmax_cross_entropy]
