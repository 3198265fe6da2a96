"""Pairwise ranking losses over groups of documents (queries).

``pairwise_logistic`` (RankNet) and ``pairwise_hinge`` sum a pair loss over every pair of
documents of a group with different relevance; a gradient and Hessian per document. Groups
come as sizes (``group=``, LightGBM's and XGBoost's ``group``) or as a query id per document
(``qid=``, sorted or not). Formulas in docs/losses.md; the engine in docs/design.md.
"""

from __future__ import annotations

import math

import numpy as np

from . import _core
from ._binary import check_keys, compute_dtype
from ._loss import _NAN_POLICIES, _REDUCTIONS, Loss, _code, as_array, finite_param

_IDS = {name: i for i, name in enumerate(_core.pairwise_losses)}
_HESSIANS = {"exact": 0, "clip": 1, "abs": 2}
_PAIR_WEIGHTS = {"uniform": 0, "relevance_difference": 1}
_VALUE_PER = ("group", "document")
_MODE_VALUE_ARRAY, _MODE_VALUE_SUM, _MODE_GRAD, _MODE_HESS = 1, 2, 4, 8
_WANT_VALUE, _WANT_GRAD, _WANT_HESS = 1, 2, 4


def _real_1d(x, name: str, n=None) -> np.ndarray:
    a = as_array(x, name)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real array, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one entry per document), got shape "
                         f"{a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} must have one entry per document ({n}), got {a.shape[0]}")
    return a


def group_offsets(n: int, group=None, qid=None):
    """(offsets, order) of the groups: the documents of group g are order[offsets[g]:
    offsets[g + 1]] (positions offsets[g]:offsets[g + 1] when order is None)."""
    if group is not None and qid is not None:
        raise ValueError("give group= (sizes) or qid= (query ids), not both")
    if group is None and qid is None:
        return np.array([0, n] if n else [0], dtype=np.int64), None
    if group is not None:
        g = group if isinstance(group, np.ndarray) else np.asarray(group)
        if g.dtype.kind not in "iu" and g.size:
            raise TypeError(f"group must hold integer group sizes, got dtype {g.dtype}")
        if g.ndim != 1:
            raise ValueError(f"group must be one-dimensional (one size per group), got shape "
                             f"{g.shape}")
        if g.size and np.min(g) < 0:
            pos = int(np.argmin(g))
            raise ValueError(f"group sizes must be >= 0, got {g[pos]} at index {pos}")
        total = int(np.sum(g, dtype=np.int64))
        if total != n:
            raise ValueError(f"group sizes sum to {total}, but scores holds {n} documents")
        offsets = np.zeros(g.size + 1, dtype=np.int64)
        if g.size:
            np.cumsum(g, out=offsets[1:])
        return offsets, None
    q = qid if isinstance(qid, np.ndarray) else np.asarray(qid)
    if q.dtype.kind not in "iu":
        raise TypeError(f"qid must hold integer query ids, got dtype {q.dtype}")
    if q.ndim != 1 or q.shape[0] != n:
        raise ValueError(f"qid must hold one query id per document ({n},), got shape {q.shape}")
    if n == 0:
        return np.zeros(1, dtype=np.int64), None
    order = None
    if not np.all(q[1:] >= q[:-1]):
        order = np.argsort(q, kind="stable").astype(np.int64, copy=False)
        q = q[order]
    cuts = np.flatnonzero(q[1:] != q[:-1]) + 1
    offsets = np.concatenate(([0], cuts, [n])).astype(np.int64)
    return offsets, order


def group_weights(sample_weight, ng: int) -> np.ndarray:
    """sample_weight as one weight per group: broadcast to (ng,) (a view), checked."""
    wa = sample_weight if isinstance(sample_weight, np.ndarray) else np.asarray(sample_weight)
    if wa.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be a real array, got dtype {wa.dtype}")
    try:
        return np.broadcast_to(wa, (ng,))
    except ValueError:
        raise ValueError(f"sample_weight holds one weight per group and must broadcast "
                         f"to ({ng},), got shape {wa.shape}") from None


def _check_out(arr, name, shape, dtype, inputs):
    if arr is None:  # from the output-buffer cache, as the compiled losses' outputs
        return _core.empty(list(shape), np.dtype(dtype) == np.float32)
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(arr).__name__}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {arr.dtype}")
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only")
    for other, oname in inputs:
        if other is not None and np.shares_memory(arr, other):
            raise ValueError(f"{name} shares memory with {oname}")
    return arr


def _contiguous(arr, pending):
    """arr itself when C-contiguous; else a contiguous array for the kernel, copied into arr
    afterwards (pending holds the pairs)."""
    if arr.flags.c_contiguous:
        return arr
    work = _core.empty(list(arr.shape), arr.dtype == np.float32)
    pending.append((arr, work))
    return work


class PairwiseLoss(Loss):
    """A pairwise ranking loss: (scores, relevance) of documents, groups by group= or qid=."""

    def _run(self, pred, target, want, reduction, sample_weight, nan_policy, params, out,
             grad_out, hess_out, hessian, hess_floor, grad_name="grad_out"):
        red = _code(_REDUCTIONS, reduction, "reduction")
        nan = _code(_NAN_POLICIES, nan_policy, "nan_policy")
        policy = _code(_HESSIANS, hessian, "hessian")
        floor = finite_param(hess_floor, "hess_floor", low=0.0) if policy == 1 else 0.0
        check_keys(self.name, params, self.params)
        values = [self._scale(params), float(_code(_PAIR_WEIGHTS,
                                                   params.get("pair_weight", "uniform"),
                                                   "pair_weight"))]
        value_per = params.get("value_per", "group")
        if value_per not in _VALUE_PER:
            raise ValueError(f"value_per must be 'group' or 'document'; got {value_per!r}")
        s = _real_1d(pred, "scores")
        n = s.shape[0]
        r = _real_1d(target, "relevance", n)
        cdt = compute_dtype(s)
        offsets, order = group_offsets(n, params.get("group"), params.get("qid"))
        ng = offsets.shape[0] - 1
        sc = np.ascontiguousarray(s, dtype=cdt)
        rc = np.ascontiguousarray(r, dtype=cdt)
        w = None
        if sample_weight is not None:
            w = np.ascontiguousarray(group_weights(sample_weight, ng), dtype=cdt)
        if nan == 1:
            for arr, name in ((sc, "scores"), (rc, "relevance"), (w, "sample_weight")):
                if arr is not None and np.isnan(arr).any():
                    pos = int(np.argmax(np.isnan(arr)))
                    raise ValueError(f"{name} contains NaN (first at index ({pos},)) and "
                                     "nan_policy='raise'")
        if red == 2:
            if w is None:
                denom = float(ng)
            else:
                denom = float(np.sum(w[~np.isnan(w)] if nan == 2 else w, dtype=np.float64))
                # A total so small that 1/denom overflows: the mean is unchanged by scaling
                # every weight by the same power of two, so scale them (exactly) to near 1.
                tiny = 2.0 ** (-100 if cdt == np.float32 else -1000)
                if 0.0 < denom < tiny:
                    k = -math.frexp(denom)[1] + 1
                    w = np.ldexp(w.astype(np.float64), k).astype(cdt)
                    denom = float(np.sum(w[~np.isnan(w)] if nan == 2 else w, dtype=np.float64))
            gscale = 0.0 if denom == 0.0 else 1.0 / denom
        else:
            gscale = 1.0
        inputs = [(pred, "scores"), (target, "relevance"), (sample_weight, "sample_weight")]
        mode = 0
        value = grad = hess = None
        per_doc = value_per == "document"
        if want & _WANT_VALUE:
            if red == 0:
                mode |= _MODE_VALUE_ARRAY
                value = _check_out(out, "out", (n,) if per_doc else (ng,), cdt, inputs)
                inputs.append((value, "out"))
            else:
                if out is not None:
                    raise ValueError("out= holds per-sample losses and is only valid with "
                                     "reduction='none'")
                mode |= _MODE_VALUE_SUM
        if want & _WANT_GRAD:
            mode |= _MODE_GRAD
            grad = _check_out(grad_out, grad_name, (n,), cdt, inputs)
            inputs.append((grad, grad_name))
        elif grad_out is not None:
            raise ValueError(f"{grad_name}= given but no gradient is computed")
        if want & _WANT_HESS:
            mode |= _MODE_HESS
            hess = _check_out(hess_out, "hess_out", (n,), cdt, inputs)
        elif hess_out is not None:
            raise ValueError("hess_out= given but no Hessian is computed")
        pending = []  # strided out= buffers: the kernel writes contiguous arrays, copied back
        kv, kg, kh = (None if a is None else _contiguous(a, pending) for a in (value, grad, hess))
        total = _core.pairwise(self._kernel_id, sc, rc, offsets, order, w, values, mode,
                               per_doc, kv, kg, kh, gscale, policy, floor, nan == 2)
        for user, work in pending:
            np.copyto(user, work)
        v = None
        if want & _WANT_VALUE:
            if red == 0:
                v = value
            elif red == 1:
                v = np.float64(total)
            else:
                v = np.float64(np.nan if denom == 0.0 else total / denom)
        return v, grad, hess


class _Logistic(PairwiseLoss):
    def _scale(self, params):
        return finite_param(params.get("sigma", 1.0), "sigma", low=0.0, low_open=True)


class _Hinge(PairwiseLoss):
    def _scale(self, params):
        return finite_param(params.get("margin", 1.0), "margin")


_COMMON = {"group": None, "qid": None, "pair_weight": "uniform", "value_per": "group"}

pairwise_logistic = _Logistic(
    "pairwise_logistic", family="ranking", kind="pairwise",
    kernel_id=_IDS["pairwise_logistic"], params={"sigma": 1.0, **_COMMON},
    parse=lambda p: [], has_fisher=False, hessians=_HESSIANS,
    arg_names=("scores", "relevance"),
    formula="sum over pairs rel_i > rel_j of a group: w_ij softplus(-sigma (s_i - s_j))",
    doc="""RankNet's pairwise logistic loss within groups: for every pair of documents of a
group with rel_i > rel_j, softplus(-sigma (s_i - s_j)) (times |rel_i - rel_j| with
pair_weight="relevance_difference").

Groups: group= sizes (LightGBM's and XGBoost's group), or qid= one query id per document
(sorted or not; groups then follow ascending qid), or neither (one group). Per-document
gradient and Hessian (sums over each document's pairs). reduction="none" gives one loss per
group (value_per="group") or per document (value_per="document": each pair's loss split
evenly between its two documents); "mean" is over groups. sample_weight: one per group.""")

pairwise_hinge = _Hinge(
    "pairwise_hinge", family="ranking", kind="pairwise",
    kernel_id=_IDS["pairwise_hinge"], params={"margin": 1.0, **_COMMON},
    parse=lambda p: [], has_fisher=False, hessians=_HESSIANS,
    arg_names=("scores", "relevance"),
    formula="sum over pairs rel_i > rel_j of a group: w_ij max(0, margin - (s_i - s_j))",
    doc="""Pairwise hinge loss within groups: for every pair of documents of a group with
rel_i > rel_j, max(0, margin - (s_i - s_j)) (times |rel_i - rel_j| with
pair_weight="relevance_difference"). Groups, reductions and weights as pairwise_logistic.
Exact Hessian 0 (hessian="clip" gives hess_floor).""")

LOSSES = [pairwise_logistic, pairwise_hinge]
