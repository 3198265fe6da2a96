"""Every fastloss loss on dask arrays: ``fastloss.dask.<loss>(pred, target, ...)``.

The arrays are cut along the samples (the class axis of row-wise losses stays in one chunk);
each block runs the in-memory loss on a worker. Per-sample values, gradients and Hessians come
back as dask arrays with the blocks of ``pred``. ``reduction="sum"``/``"mean"`` give a 0-d
float64 dask array: every block contributes its float64 sum (and, for the mean, the sum of its
effective weights), and one final task adds the partial pairs (a tree beyond 512 blocks),
so the weighted mean is the in-memory ``sum(w l) / sum(w)`` over the whole array, not a mean
of block means.
``class_weight="balanced"`` (or ``"auto"``) counts the classes over all blocks first.

The wrappers are generated from ``fastloss.losses``, so a new elementwise or row-wise loss
is available here without changes. ``margin_ranking(x1, x2, y)`` broadcasts its three
operands as the in-memory loss does and returns the pair of derivatives (w.r.t. x1 and x2).
The pairwise ranking losses keep every query group inside one block: the blocks of
``scores`` are moved to the nearest group boundary (a group larger than a block makes that
block larger), given ``group=`` sizes or a non-decreasing ``qid=`` (the documents of a query
contiguous, as XGBoost requires of its ``qid``), itself an array or a dask array.

>>> import dask.array as da, fastloss.dask as fld        # doctest: +SKIP
>>> pred = da.random.random(10**9, chunks=10**7)          # doctest: +SKIP
>>> fld.squared_error(pred, 0.5, reduction="mean").compute()   # doctest: +SKIP
"""

from __future__ import annotations

import string
from functools import partial
from types import MappingProxyType
from typing import Any

import dask.array as da
import numpy as np

import fastloss as _fl

from . import _chunks
from ._binary import check_keys, compute_dtype_of
from ._ranking import group_offsets, group_weights
from ._loss import _NAN_POLICIES, _NO_ARG, _REDUCTIONS, Loss, _code

__all__ = ["SUPPORTED_KINDS", "DaskLoss", "losses"]

SUPPORTED_KINDS = ("elementwise", "rowwise", "margin_ranking", "pairwise")


def _as_dask(x, name: str):
    if isinstance(x, da.Array):
        if any(np.isnan(c) for c in x.shape):
            raise ValueError(f"{name} has unknown chunk sizes (shape {x.shape}); call "
                             f"{name}.compute_chunk_sizes() first")
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
    return da.from_array(arr, chunks="auto") if arr.ndim else da.from_array(arr)


def _broadcast_like(a, shape, chunks):
    """a broadcast to shape, in the given chunks (an axis a keeps is rechunked to them first,
    as dask's broadcast_to requires)."""
    shape = tuple(shape)
    if a.shape == shape:
        return a if a.chunks == tuple(chunks) else a.rechunk(chunks)
    off = len(shape) - a.ndim
    own = tuple((1,) if a.shape[i] == 1 and shape[off + i] != 1 else chunks[off + i]
                for i in range(a.ndim))
    return da.broadcast_to(a.rechunk(own) if a.chunks != own else a, shape, chunks=chunks)


def _check_weight_shape(sw, shape) -> None:
    """sample_weight (or None) must broadcast to the loss's shape without enlarging it."""
    if sw is None:
        return
    try:
        ok = np.broadcast_shapes(shape, sw.shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"sample_weight of shape {sw.shape} does not broadcast to the loss's "
                         f"shape {shape}")


def _is_whole(a, shape) -> bool:
    """An operand of one element broadcast along the block axes: handed whole to every block
    and broadcast there (a view), rather than broadcast by dask, whose blocks would be
    stride-0 views that travel between workers as full-size copies."""
    return a is not None and a.size == 1 and a.shape != tuple(shape)


# Parameters that may hold one value per element (broadcast against the loss's shape, or the
# scores' for a row-wise loss): sliced block by block like the operands.
_ELEMENT_PARAMS = {"sigmoid_cross_entropy": "pos_weight",
                   "multilabel_softmax_cross_entropy": "mask"}


# -- block functions (run on the workers; plain NumPy in, NumPy out) --------------------------

def _fit(a, shape):
    """An operand handed whole to every block (see _is_whole), broadcast to the block."""
    return a if a is None or a.shape == shape else np.broadcast_to(a, shape)


# Row-wise losses whose target is always a row per row (0/1 of any dtype), never indices.
_ROW_TARGETS_ONLY = frozenset({"multilabel_softmax_cross_entropy"})


def _row_target(name: str, pred, target) -> bool:
    """A row-wise target holding a row per row (probabilities, or a multilabel 0/1 row), as
    opposed to class indices (one fewer dimension, or broadcast to the rows)."""
    return target.ndim == pred.ndim and (target.dtype.kind == "f" or name in _ROW_TARGETS_ONLY)


def _fit_block(loss, pred, target, sw):
    if loss.kind == "elementwise":
        return _fit(target, pred.shape), _fit(sw, pred.shape)
    rows = pred.shape[:-1]
    prob = _row_target(loss.name, pred, target)
    return (target if prob else _fit(target, rows)), _fit(sw, rows)


def _call_block(name: str, method: str, pred, target, sw, kwargs, ep=None, ep_name=None):
    # The loss travels to the workers by name: every process has the same registry. ep: the
    # block's slice of a per-element parameter (_ELEMENT_PARAMS), passed as ep_name.
    loss = _fl.losses[name]
    target, sw = _fit_block(loss, pred, target, sw)
    if ep is not None:
        kwargs = dict(kwargs, **{ep_name: ep})
    try:
        return getattr(loss, method)(pred, target, sample_weight=sw, **kwargs)
    except ValueError as exc:
        # The kernels name positions within the block they were given.
        raise ValueError(f"{exc} (position within a dask block of shape {pred.shape})") from None


def _partial_block(pred, target, sw, ep, *, loss_name, kwargs, ndim, mean, cw, ignore_index,
                   omit, ep_name=None):
    loss = _fl.losses[loss_name]
    target, sw = _fit_block(loss, pred, target, sw)
    s = _call_block(loss_name, "__call__", pred, target, sw, dict(kwargs, reduction="sum"), ep,
                    ep_name)
    d = _chunks.weight_sum(loss, pred, target, sw, cw, ignore_index, omit) if mean else 0.0
    return np.array([float(s), d]).reshape((1,) * ndim + (2,))


def _count_block(pred, target, sw, *, loss_name, ndim, ignore_index, omit, n):
    loss = _fl.losses[loss_name]
    target, sw = _fit_block(loss, pred, target, sw)
    c = _chunks.class_counts(loss, pred, target, sw, ignore_index, omit, n)
    return c.reshape((1,) * ndim + (n,))


def _per_sample_block(pred, target, sw, ep, *, loss_name, method, kwargs, pack, ep_name=None):
    res = _call_block(loss_name, method, pred, target, sw, dict(kwargs, reduction="none"), ep,
                      ep_name)
    if pack is None:
        return res
    a, b = res
    if pack == "stack":
        return np.stack([a, b], axis=-1)
    if pack == "value_last":  # row-wise value_and_grad: [grad..., value]
        return np.concatenate([b, a[..., None]], axis=-1)
    return np.concatenate([a, b], axis=-1)  # row-wise grad_hess: [grad..., hess...]


def _unbroadcast(x, pshape, shape):
    """Derivatives of a broadcast pred: summed over the axes it was broadcast along (as the
    in-memory call and autograd do)."""
    if tuple(pshape) == tuple(shape):
        return x
    padded = (1,) * (len(shape) - len(pshape)) + tuple(pshape)
    axes = tuple(i for i, (p, s) in enumerate(zip(padded, shape)) if p == 1 and s != 1)
    summed = x.sum(axis=axes, keepdims=True, dtype=x.dtype) if axes else x
    return summed.reshape(pshape)


def _finish(total, mean):
    if not mean:
        return np.float64(total[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.float64(total[0] / total[1])


def _grad_denominator(total):
    """What the derivatives of a mean are divided by: sum(w), or inf when it is 0 (the
    in-memory derivatives are then 0)."""
    return np.float64(np.inf if total[1] == 0 else total[1])


def _divided(x, denom, dtype):
    """x / denom in float64, then in dtype: a weight total so small that its reciprocal
    overflows (below 2**-1022, or 2**-126 in float32) still gives finite derivatives, as the
    in-memory call's rescaled weights do."""
    return (x.astype(np.float64) / denom).astype(dtype)


def _sum_parts(blocks):
    """(sum of w l, sum of w) over the blocks' partials, summed pairwise in float64."""
    return np.sum(np.stack([np.asarray(b).reshape(2) for b in blocks]), axis=0)


def _apply_total(fn, blocks, *args):
    return fn(_sum_parts(blocks), *args)


# Up to this many blocks, the partial sums go to one final task (one scheduling round instead
# of a tree of them); beyond it, a tree reduction of fan-in 8 bounds the final task's inputs.
_ONE_STEP_BLOCKS = 512


def _reduced(parts, fn, *args):
    """A 0-d float64 dask array: fn((sum of w l, sum of w), *args) over every block of parts
    (blocks of partial pairs, the pair on the last axis)."""
    from dask.base import tokenize
    from dask.core import flatten
    from dask.highlevelgraph import HighLevelGraph

    if parts.npartitions > _ONE_STEP_BLOCKS:
        total = parts.sum(axis=tuple(range(parts.ndim - 1)), split_every=8)
        return total.map_blocks(fn, *args, drop_axis=0, chunks=(), dtype=np.float64,
                                meta=np.float64(0))
    name = f"fastloss-{fn.__name__}-" + tokenize(parts, fn, args)
    dsk = {(name,): (_apply_total, fn, list(flatten(parts.__dask_keys__())), *args)}
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[parts])
    return da.Array(graph, name, chunks=(), dtype=np.float64, meta=np.float64(0))


# -- the wrapper --------------------------------------------------------------------------------

class DaskLoss:
    """A fastloss loss over dask arrays, with the in-memory loss's signature minus ``out=``.

    ``reduction="none"`` (default) gives a lazy dask array; ``"sum"``/``"mean"`` a lazy 0-d
    float64 dask array. Call ``.compute()`` (or ``dask.compute(...)`` on several results at
    once) to run it, on a ``dask.distributed`` cluster if a client is active.
    """

    _KINDS = ("elementwise", "rowwise")  # the kinds this class plans; subclasses the others

    def __new__(cls, loss: Loss):
        # DaskLoss(loss) gives the planner of the loss's kind.
        if cls is DaskLoss:
            cls = _CLASSES.get(getattr(loss, "kind", None), cls)
        return super().__new__(cls)

    def __init__(self, loss: Loss):
        if loss.kind in SUPPORTED_KINDS and _fl.losses.get(loss.name) is not loss:
            # Workers look the loss up by name in their own registry.
            raise ValueError(f"{loss.name} is not a registered fastloss loss")
        self.loss = loss
        self.name = loss.name
        self.kind = loss.kind
        self.params = loss.params
        self.formula = loss.formula
        self.__name__ = loss.name
        self.__doc__ = f"{loss.name} on dask arrays (see fastloss.{loss.name}).\n\n{loss.__doc__}"

    def __repr__(self) -> str:
        return f"<fastloss.dask {self.name}>"

    # -- entry points, as the in-memory Loss ----------------------------------------------
    def __call__(self, pred=_NO_ARG, target=_NO_ARG, *extra, reduction: str = "none",
                 sample_weight=None, nan_policy: str = "propagate", **params):
        self._check_args(extra)
        pred, target, _ = self.loss._inputs(pred, target, params)
        return self._run("value", pred, target, reduction, sample_weight, nan_policy, params)

    def grad(self, pred=_NO_ARG, target=_NO_ARG, *extra, reduction: str = "none",
             sample_weight=None, nan_policy: str = "propagate", **params):
        self._check_args(extra)
        pred, target, _ = self.loss._inputs(pred, target, params)
        return self._run("grad", pred, target, reduction, sample_weight, nan_policy, params)

    def value_and_grad(self, pred=_NO_ARG, target=_NO_ARG, *extra, reduction: str = "none",
                       sample_weight=None, nan_policy: str = "propagate", **params):
        self._check_args(extra)
        pred, target, _ = self.loss._inputs(pred, target, params)
        return self._run("value_and_grad", pred, target, reduction, sample_weight, nan_policy,
                         params)

    def grad_hess(self, pred=_NO_ARG, target=_NO_ARG, *extra, reduction: str = "none",
                  sample_weight=None, nan_policy: str = "propagate", hessian: str = "exact",
                  hess_floor: float = 1e-6, **params):
        self._check_args(extra)
        pred, target, _ = self.loss._inputs(pred, target, params)
        return self._run("grad_hess", pred, target, reduction, sample_weight, nan_policy, params,
                         hessian=hessian, hess_floor=hess_floor)

    # -- planning -----------------------------------------------------------------------
    def _check_args(self, extra):
        self._check_kind()
        if extra:
            raise TypeError(f"{self.name} takes {' and '.join(self.loss.arg_names)} positionally, "
                            f"got {2 + len(extra)} positional arguments")

    def _check_kind(self):
        if self.kind not in self._KINDS:
            raise ValueError(
                f"fastloss.dask supports the kinds {', '.join(SUPPORTED_KINDS)}; {self.name} is "
                f"of kind {self.kind!r}: compute it in memory with fastloss.{self.name}")

    def _operands(self, pred, target, sample_weight):
        """(pred, target, sample_weight, index strings, output indices, full shape)."""
        first = self.loss.arg_names[0]  # "pred", "logits", or the loss's own name ("scores")
        pred = _as_dask(pred, first)
        target = _as_dask(target, "target")
        sw = None if sample_weight is None else _as_dask(sample_weight, "sample_weight")
        if self.kind == "elementwise":
            try:
                shape = np.broadcast_shapes(pred.shape, target.shape)
            except ValueError:
                raise ValueError(f"{first} of shape {pred.shape} and target of shape "
                                 f"{target.shape} do not broadcast") from None
            _check_weight_shape(sw, shape)
            lead = next((a for a in (pred, target, sw) if a is not None and a.shape == shape),
                        None)
            chunks = lead.chunks if lead is not None else da.empty(shape).chunks
            full = pred if pred.shape == shape else _broadcast_like(pred, shape, chunks)
            ind = string.ascii_lowercase[: len(shape)]
            inds = [ind, ind, ind]
            for i, a in ((1, target), (2, sw)):
                if _is_whole(a, shape):
                    inds[i] = None
                elif a is not None and a.shape != shape:
                    a = _broadcast_like(a, shape, chunks)
                    target, sw = (a, sw) if i == 1 else (target, a)
            return full, target, sw, tuple(inds), ind, shape
        if pred.ndim < 1:
            raise ValueError(f"{first} must have at least one dimension (the classes on the "
                             "last axis)")
        if len(pred.chunks[-1]) > 1:
            pred = pred.rechunk({pred.ndim - 1: -1})  # one row per block, whole
        rows = pred.shape[:-1]
        rind = string.ascii_lowercase[: len(rows)]
        if _row_target(self.name, pred, target):
            if target.shape != pred.shape:
                raise ValueError(f"target of shape {target.shape} holds a row per row and must "
                                 f"have the {first}' shape {pred.shape}")
            target = target.rechunk(pred.chunks)
            tind = rind + "z"
        else:
            if target.shape != rows:
                try:
                    if np.broadcast_shapes(target.shape, rows) != rows:
                        raise ValueError
                except ValueError:
                    raise ValueError(f"target of shape {target.shape} does not match the "
                                     f"{first}' rows {rows}") from None
                if not _is_whole(target, rows):
                    target = _broadcast_like(target, rows, pred.chunks[:-1])
            tind = None if _is_whole(target, rows) else rind
        if sw is not None and sw.shape != rows:
            try:
                if np.broadcast_shapes(sw.shape, rows) != rows:
                    raise ValueError
            except ValueError:
                raise ValueError(f"sample_weight of shape {sw.shape} does not broadcast to the "
                                 f"{first}' rows {rows}") from None
            if not _is_whole(sw, rows):
                sw = _broadcast_like(sw, rows, pred.chunks[:-1])
        sind = None if _is_whole(sw, rows) else rind
        return pred, target, sw, (rind + "z", tind, sind), rind, pred.shape

    def _resolve_params(self, pred, target, sw, inds, oind, params, omit):
        """Loss parameters for every block, with counted class weights ("balanced", "auto")
        resolved over the whole array in a first pass; returns (params, class weights for the
        denominator, ignore_index)."""
        loss = self.loss
        ignore_index = _chunks.ignore_index_of(loss, params)
        n = _chunks.n_counted(loss, pred.shape[-1] if pred.ndim else 1)
        if _chunks.counted_params(loss, params):
            ndim = len(oind)
            parts = da.blockwise(
                _count_block, oind + "n", pred, inds[0], target, inds[1],
                *((sw, inds[2]) if sw is not None else (None, None)),
                new_axes={"n": n}, adjust_chunks={c: 1 for c in oind}, dtype=np.float64,
                concatenate=True, loss_name=loss.name, ndim=ndim, ignore_index=ignore_index,
                omit=omit, n=n)
            counts = parts.sum(axis=tuple(range(ndim))).compute()
            params = _chunks.resolve_counted(loss, params, counts, n, ignore_index)
        cw = _chunks.class_weights_of(loss, params, n, ignore_index)
        if cw is not None:
            params = dict(params, class_weight=cw)
        return params, cw, ignore_index

    def _element_param(self, params, pred, ind):
        """A per-element parameter given as an array (pos_weight per label, a multilabel mask
        per row): taken out of params and returned as a dask operand of pred's shape and
        chunks (index ind), so that each block gets its own slice; (params, None, None) when
        there is none (a scalar, or a per-class [K] mask, stays a parameter)."""
        name = _ELEMENT_PARAMS.get(self.name)
        value = params.get(name) if name else None
        if value is None or isinstance(value, (str, bytes)) or np.ndim(value) == 0:
            return params, None, None
        if self.kind == "rowwise" and np.ndim(value) == 1:
            return params, None, None  # one entry per class: every block takes it whole
        a = _as_dask(value, name)
        try:
            ok = np.broadcast_shapes(a.shape, pred.shape) == tuple(pred.shape)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{name} with shape {a.shape} does not broadcast to the "
                             f"{'loss' if self.kind == 'elementwise' else 'scores'} shape "
                             f"{tuple(pred.shape)}")
        rest = {k: v for k, v in params.items() if k != name}
        return rest, _broadcast_like(a, pred.shape, pred.chunks), ind

    def _probe(self, dtype, target_dtype, has_weight, kwargs, method, row_k, row_target=False):
        """Run the in-memory loss on one synthetic sample, so that a bad parameter raises here
        and now, naming the argument, rather than later on a worker."""
        if self.kind == "elementwise":
            pred = np.zeros(1, dtype=dtype)
            target = np.zeros(1, dtype=target_dtype)
        else:
            pred = np.zeros((1, row_k), dtype=dtype)
            if row_target:
                target = np.zeros((1, row_k), dtype=target_dtype)
            else:
                target = np.zeros(1, dtype=target_dtype)
        sw = np.ones(1) if has_weight else None
        getattr(self.loss, method)(pred, target, sample_weight=sw, reduction="none", **kwargs)

    def _run(self, what, pred, target, reduction, sample_weight, nan_policy, params,
             hessian="exact", hess_floor=1e-6):
        self._check_kind()
        _code(_REDUCTIONS, reduction, "reduction")
        nan = _code(_NAN_POLICIES, nan_policy, "nan_policy")
        if what == "grad_hess" and (not isinstance(hessian, str)
                                    or hessian not in self.loss.hessian_names()):
            raise ValueError(f"hessian must be one of "
                             f"{', '.join(map(repr, self.loss.hessian_names()))}; got "
                             f"{hessian!r}")
        omit = nan == 2
        pshape = tuple(pred.shape) if isinstance(pred, da.Array) else np.shape(pred)
        pred, target, sw, inds, oind, shape = self._operands(pred, target, sample_weight)
        params, ep, ep_ind = self._element_param(params, pred, inds[0])
        params, cw, ignore_index = self._resolve_params(pred, target, sw, inds, oind, params,
                                                        omit)
        kwargs = dict(params, nan_policy=nan_policy)
        if what == "grad_hess":
            kwargs.update(hessian=hessian, hess_floor=hess_floor)
        method = {"value": "__call__", "grad": "grad", "value_and_grad": "value_and_grad",
                  "grad_hess": "grad_hess"}[what]
        self._probe(pred.dtype, target.dtype, sw is not None, kwargs, method,
                    pred.shape[-1] if pred.ndim else 1,
                    self.kind == "rowwise" and _row_target(self.name, pred, target))
        dtype = compute_dtype_of(pred.dtype)
        args = [pred, inds[0], target, inds[1]]
        args += [sw, inds[2]] if sw is not None else [None, None]
        args += [ep, ep_ind] if ep is not None else [None, None]
        ep_kw = {"ep_name": _ELEMENT_PARAMS.get(self.name)} if ep is not None else {}

        pairs = None  # the blocks' (sum of w l, sum of w), for a reduction
        if reduction != "none":
            ndim = len(oind)
            pairs = da.blockwise(
                _partial_block, oind + "p", *args, new_axes={"p": 2},
                adjust_chunks={c: 1 for c in oind}, dtype=np.float64, concatenate=True,
                loss_name=self.name, kwargs={k: v for k, v in kwargs.items()
                                        if k not in ("hessian", "hess_floor")},
                ndim=ndim, mean=reduction == "mean", cw=cw, ignore_index=ignore_index, omit=omit,
                **ep_kw)
        value = None
        if what in ("value", "value_and_grad") and pairs is not None:
            value = _reduced(pairs, _finish, reduction == "mean")
            if what == "value":
                return value

        # Per-sample results (reduction="none"), or derivatives to be scaled.
        row = self.kind == "rowwise"
        if what == "value":
            out = da.blockwise(_per_sample_block, oind, *args, dtype=dtype, concatenate=True,
                               loss_name=self.name, method="__call__", kwargs=kwargs, pack=None,
                               **ep_kw)
            return out
        if what == "grad":
            g = da.blockwise(_per_sample_block, inds[0], *args, dtype=dtype, concatenate=True,
                             loss_name=self.name, method="grad", kwargs=kwargs, pack=None, **ep_kw)
            parts = (g,)
        elif what == "value_and_grad" and reduction == "none":
            if row:
                k = shape[-1]
                packed = da.blockwise(_per_sample_block, inds[0], *args, dtype=dtype,
                                      concatenate=True, adjust_chunks={"z": k + 1},
                                      loss_name=self.name, method="value_and_grad", kwargs=kwargs,
                                      pack="value_last", **ep_kw)
                return packed[..., k], packed[..., :k]
            packed = da.blockwise(_per_sample_block, oind + "p", *args, dtype=dtype,
                                  concatenate=True, new_axes={"p": 2}, loss_name=self.name,
                                  method="value_and_grad", kwargs=kwargs, pack="stack", **ep_kw)
            return packed[..., 0], _unbroadcast(packed[..., 1], pshape, shape)
        elif what == "value_and_grad":
            g = da.blockwise(_per_sample_block, inds[0], *args, dtype=dtype, concatenate=True,
                             loss_name=self.name, method="grad", kwargs=kwargs, pack=None, **ep_kw)
            parts = (g,)
        else:  # grad_hess
            if row:
                k = shape[-1]
                packed = da.blockwise(_per_sample_block, inds[0], *args, dtype=dtype,
                                      concatenate=True, adjust_chunks={"z": 2 * k},
                                      loss_name=self.name, method="grad_hess", kwargs=kwargs,
                                      pack="concat", **ep_kw)
                parts = (packed[..., :k], packed[..., k:])
            else:
                packed = da.blockwise(_per_sample_block, oind + "p", *args, dtype=dtype,
                                      concatenate=True, new_axes={"p": 2}, loss_name=self.name,
                                      method="grad_hess", kwargs=kwargs, pack="stack", **ep_kw)
                parts = (packed[..., 0], packed[..., 1])
        if reduction == "mean":
            denom = _reduced(pairs, _grad_denominator)
            parts = tuple(_divided(p, denom, dtype) for p in parts)
        if not row:
            parts = tuple(_unbroadcast(p, pshape, shape) for p in parts)
        if what == "value_and_grad":
            return value, parts[0]
        if what == "grad":
            return parts[0]
        return parts


# -- margin_ranking(x1, x2, y): three broadcast operands, a pair of derivatives ----------------

def _margin_weight_sum(x1, x2, y, sw, omit) -> float:
    """The block's share of margin_ranking's mean denominator: the sample weights (rounded to
    x1's compute dtype, as the kernel reads them), 0 where nan_policy="omit" drops a sample
    (a NaN in x1, x2, y or the weight)."""
    if sw is None and not omit:
        return float(np.prod(x1.shape, dtype=np.float64))
    w = (np.ones(x1.shape) if sw is None
         else np.asarray(sw).astype(compute_dtype_of(x1.dtype)).astype(np.float64))
    if omit:
        drop = np.isnan(x1) | np.isnan(x2) | np.isnan(y)
        if sw is not None:
            drop |= np.isnan(w)
        w = np.where(drop, 0.0, w)
    return float(np.sum(w, dtype=np.float64))


def _margin_block(x1, x2, y, sw, *, method, kwargs, pack, mean=False, omit=False):
    """One block of margin_ranking: the in-memory call; the partial pair for a reduction
    (pack="partial"), or its outputs stacked on a last axis in the widest dtype (exact for
    the narrower ones)."""
    loss = _fl.losses["margin_ranking"]
    x2, y, sw = (_fit(a, x1.shape) for a in (x2, y, sw))
    try:
        res = getattr(loss, method)(x1, x2, y, sample_weight=sw, **kwargs)
    except ValueError as exc:
        raise ValueError(f"{exc} (position within a dask block of shape {x1.shape})") from None
    if pack == "partial":
        d = _margin_weight_sum(x1, x2, y, sw, omit) if mean else 0.0
        return np.array([float(res), d]).reshape((1,) * x1.ndim + (2,))
    if pack is None:
        return res
    flat = []
    for r in (res if isinstance(res, tuple) else (res,)):
        flat += list(r) if isinstance(r, tuple) else [r]
    wide = np.result_type(*flat)
    return np.stack([np.asarray(a, dtype=wide) for a in flat], axis=-1)


class _MarginRankingDask(DaskLoss):
    """margin_ranking(x1, x2, y) on dask arrays: the in-memory signature minus the out=
    buffers; derivatives come as (d/dx1, d/dx2), each of its input's shape and dtype."""

    _KINDS = ("margin_ranking",)

    def __call__(self, x1, x2, y, *, reduction: str = "none", sample_weight=None,
                 nan_policy: str = "propagate", **params):
        return self._run3("value", x1, x2, y, reduction, sample_weight, nan_policy, params)

    def grad(self, x1, x2, y, *, reduction: str = "none", sample_weight=None,
             nan_policy: str = "propagate", **params):
        return self._run3("grad", x1, x2, y, reduction, sample_weight, nan_policy, params)

    def value_and_grad(self, x1, x2, y, *, reduction: str = "none", sample_weight=None,
                       nan_policy: str = "propagate", **params):
        return self._run3("value_and_grad", x1, x2, y, reduction, sample_weight, nan_policy,
                          params)

    def grad_hess(self, x1, x2, y, *, reduction: str = "none", sample_weight=None,
                  nan_policy: str = "propagate", hessian: str = "exact",
                  hess_floor: float = 1e-6, **params):
        return self._run3("grad_hess", x1, x2, y, reduction, sample_weight, nan_policy, params,
                          hessian=hessian, hess_floor=hess_floor)

    def _run3(self, what, x1, x2, y, reduction, sample_weight, nan_policy, params,
              hessian="exact", hess_floor=1e-6):
        _code(_REDUCTIONS, reduction, "reduction")
        omit = _code(_NAN_POLICIES, nan_policy, "nan_policy") == 2
        ops = [_as_dask(x1, "x1"), _as_dask(x2, "x2"), _as_dask(y, "y")]
        sw = None if sample_weight is None else _as_dask(sample_weight, "sample_weight")
        try:
            shape = np.broadcast_shapes(*(a.shape for a in ops))
        except ValueError:
            raise ValueError(f"x1 {ops[0].shape}, x2 {ops[1].shape} and y {ops[2].shape} do "
                             "not broadcast together") from None
        _check_weight_shape(sw, shape)
        pshapes = (ops[0].shape, ops[1].shape)
        dt1, dt2 = compute_dtype_of(ops[0].dtype), compute_dtype_of(ops[1].dtype)
        kwargs = dict(params, nan_policy=nan_policy)
        if what == "grad_hess":
            kwargs.update(hessian=hessian, hess_floor=hess_floor)
        method = {"value": "__call__", "grad": "grad", "value_and_grad": "value_and_grad",
                  "grad_hess": "grad_hess"}[what]
        # A bad parameter raises here, naming it, rather than on a worker.
        one = np.zeros(1)
        getattr(self.loss, method)(one.astype(ops[0].dtype), one.astype(ops[1].dtype),
                                   one.astype(ops[2].dtype), reduction="none",
                                   sample_weight=None if sw is None else one, **kwargs)
        # Every operand in the blocks of the first full-shape one (of x1 when it has it).
        lead = next((a for a in ops + [sw] if a is not None and a.shape == shape), None)
        chunks = lead.chunks if lead is not None else da.empty(shape).chunks
        ind = string.ascii_lowercase[: len(shape)]
        args = [_broadcast_like(ops[0], shape, chunks), ind]  # x1: the blocks' shape
        for a in ops[1:] + [sw]:
            if a is None:
                args += [None, None]
            elif _is_whole(a, shape):
                args += [a, None]
            else:
                args += [_broadcast_like(a, shape, chunks), ind]

        pairs = None
        if reduction != "none":
            pairs = da.blockwise(
                _margin_block, ind + "p", *args, new_axes={"p": 2},
                adjust_chunks={c: 1 for c in ind}, dtype=np.float64, concatenate=True,
                method="__call__", kwargs=dict(params, nan_policy=nan_policy, reduction="sum"),
                pack="partial", mean=reduction == "mean", omit=omit)
            value = _reduced(pairs, _finish, reduction == "mean")
            if what == "value":
                return value
        kw = dict(kwargs, reduction="none")
        if what == "value":
            return da.blockwise(_margin_block, ind, *args, dtype=dt1, concatenate=True,
                                method="__call__", kwargs=kw, pack=None)
        # Derivatives (and the per-sample value): one pass per block, stacked on a last axis.
        dts = {"grad": [dt1, dt2], "grad_hess": [dt1, dt2, dt1, dt2],
               "value_and_grad": [dt1, dt1, dt2] if reduction == "none" else [dt1, dt2]}[what]
        m = "grad" if what == "value_and_grad" and reduction != "none" else method
        packed = da.blockwise(_margin_block, ind + "p", *args, new_axes={"p": len(dts)},
                              dtype=np.result_type(*dts), concatenate=True, method=m,
                              kwargs=kw, pack="stack")
        # Scaled and summed over x1's or x2's broadcast axes in the wider dtype, then cast
        # to the input's own (as the in-memory call sums them).
        outs = [packed[..., i] for i in range(len(dts))]
        if what == "value_and_grad" and reduction == "none":
            value = outs.pop(0).astype(dts.pop(0))
        elif what != "value_and_grad":
            value = None
        if reduction == "mean":
            denom = _reduced(pairs, _grad_denominator)
            outs = [_divided(o, denom, o.dtype) for o in outs]
        outs = [_unbroadcast(o, pshapes[i % 2], shape).astype(dt)
                for i, (o, dt) in enumerate(zip(outs, dts))]
        if what == "grad":
            return tuple(outs)
        if what == "value_and_grad":
            return value, tuple(outs)
        return tuple(outs[:2]), tuple(outs[2:])


# -- pairwise ranking losses: every query group inside one block -----------------------------

def _blocks_of(fn, name_part, inputs, chunks, dtype):
    """A dask array whose block i is fn(block i of every input) (None passes None). The
    inputs are one-dimensional with the same number of blocks, of any lengths (blockwise
    would align their chunks instead); the result's blocks follow chunks."""
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    live = [a for a in inputs if a is not None]
    name = f"fastloss-{name_part}-" + tokenize(fn, *live, chunks)
    tail = (0,) * (len(chunks) - 1)
    dsk = {(name, i, *tail): (fn, *(None if a is None else (a.name, i) for a in inputs))
           for i in range(len(chunks[0]))}
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=live)
    return da.Array(graph, name, chunks=chunks, dtype=dtype,
                    meta=np.empty((0,) * len(chunks), dtype=dtype))


def _pick(block, *, path):
    """One output of a block function that returns nested tuples."""
    for i in path:
        block = block[i]
    return block


def _pairwise_block(scores, relevance, sizes, sw, *, loss_name, method, kwargs, mean, omit):
    """One block of whole groups. reduction="none": the in-memory call's outputs (a tuple);
    otherwise (its derivatives, the partial pair (sum, mean denominator) of shape (1, 2))."""
    loss = _fl.losses[loss_name]
    try:
        res = getattr(loss, method)(scores, relevance, group=sizes, sample_weight=sw, **kwargs)
    except ValueError as exc:
        raise ValueError(f"{exc} (position within a dask block of {scores.shape[0]} "
                         "documents)") from None
    res = res if isinstance(res, tuple) else (res,)
    if kwargs["reduction"] == "none":
        return res
    if not mean:
        d = 0.0
    elif sw is None:
        d = float(sizes.shape[0])
    else:
        # As the in-memory mean: the weights in the compute dtype, NaN ones left out by omit.
        w = np.asarray(sw).astype(compute_dtype_of(scores.dtype))
        d = float(np.sum(w[~np.isnan(w)] if omit else w, dtype=np.float64))
    valued = method in ("__call__", "value_and_grad")
    total = float(res[0]) if valued else 0.0
    return (res[1:] if valued else res), np.array([[total, d]])


def _qid_block(q):
    """A block of qid: (sorted within, first, last, positions where the id changes)."""
    q = np.asarray(q)
    if q.dtype.kind not in "iu":
        raise TypeError(f"qid must hold integer query ids, got dtype {q.dtype}")
    if q.size == 0:
        return (True, None, None, np.zeros(0, dtype=np.int64))
    return (bool(np.all(q[1:] >= q[:-1])), q[0], q[-1],
            (np.flatnonzero(q[1:] != q[:-1]) + 1).astype(np.int64))


def _sizes_from_qid(qid, n: int) -> np.ndarray:
    """Group sizes from a non-decreasing qid: a dask array in one pass over its blocks, an
    array in memory here (not shipped to the cluster)."""
    import dask

    if not isinstance(qid, da.Array):
        qid = np.asarray(qid)
    if qid.ndim != 1 or qid.shape[0] != n:
        raise ValueError(f"qid must hold one query id per document ({n},), got shape "
                         f"{qid.shape}")
    if qid.dtype.kind not in "iu":
        raise TypeError(f"qid must hold integer query ids, got dtype {qid.dtype}")
    if isinstance(qid, da.Array):
        parts = dask.compute(*[dask.delayed(_qid_block)(b) for b in qid.to_delayed().ravel()])
        lengths = qid.chunks[0]
    else:
        parts, lengths = [_qid_block(qid)], [n]
    cuts, start, last = [], 0, None
    for part, length in zip(parts, lengths):
        ok, first, end, local = part
        if length:
            if not ok or (last is not None and first < last):
                raise ValueError(
                    "fastloss.dask needs qid non-decreasing (the documents of each query "
                    "contiguous, as XGBoost requires of qid): sort by qid first, or pass "
                    "group= sizes")
            if last is not None and first != last:
                cuts.append(np.array([start], dtype=np.int64))
            cuts.append(local + start)
            last = end
        start += length
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    bounds = np.concatenate([[0], *cuts, [n]]).astype(np.int64)
    return np.diff(bounds)


class _PairwiseDask(DaskLoss):
    """A pairwise ranking loss on dask arrays: (scores, relevance) of documents, query groups
    by group= sizes or a non-decreasing qid=; per-document derivatives in the blocks that
    keep each group whole, per-group values in blocks of groups."""

    _KINDS = ("pairwise",)

    def __call__(self, scores, relevance, *extra, reduction: str = "none", sample_weight=None,
                 nan_policy: str = "propagate", **params):
        self._check_args(extra)
        return self._run2("__call__", scores, relevance, reduction, sample_weight, nan_policy,
                          params)

    def grad(self, scores, relevance, *extra, reduction: str = "none", sample_weight=None,
             nan_policy: str = "propagate", **params):
        self._check_args(extra)
        return self._run2("grad", scores, relevance, reduction, sample_weight, nan_policy,
                          params)

    def value_and_grad(self, scores, relevance, *extra, reduction: str = "none",
                       sample_weight=None, nan_policy: str = "propagate", **params):
        self._check_args(extra)
        return self._run2("value_and_grad", scores, relevance, reduction, sample_weight,
                          nan_policy, params)

    def grad_hess(self, scores, relevance, *extra, reduction: str = "none", sample_weight=None,
                  nan_policy: str = "propagate", hessian: str = "exact",
                  hess_floor: float = 1e-6, **params):
        self._check_args(extra)
        return self._run2("grad_hess", scores, relevance, reduction, sample_weight, nan_policy,
                          params, hessian=hessian, hess_floor=hess_floor)

    def _groups(self, n: int, group, qid) -> np.ndarray:
        """The group sizes (int64), checked as the in-memory loss checks them."""
        if group is not None and qid is not None:
            raise ValueError("give group= (sizes) or qid= (query ids), not both")
        if qid is not None:
            return _sizes_from_qid(_as_dask(qid, "qid") if isinstance(qid, da.Array)
                                   else qid, n)
        if isinstance(group, da.Array):
            group = group.compute()  # one size per group: far fewer than the documents
        offsets, _ = group_offsets(n, group=group)
        return np.diff(offsets)

    def _run2(self, method, scores, relevance, reduction, sample_weight, nan_policy, params,
              hessian="exact", hess_floor=1e-6):
        red = _code(_REDUCTIONS, reduction, "reduction")
        omit = _code(_NAN_POLICIES, nan_policy, "nan_policy") == 2
        if method == "grad_hess":
            _code(self.loss._hessians, hessian, "hessian")
        check_keys(self.name, params, self.loss.params)
        params = dict(params)
        group, qid = params.pop("group", None), params.pop("qid", None)
        s = _as_dask(scores, "scores")
        r = _as_dask(relevance, "relevance")
        if s.ndim != 1:
            raise ValueError(f"scores must be one-dimensional (one entry per document), got "
                             f"shape {s.shape}")
        n = s.shape[0]
        if r.ndim != 1 or r.shape[0] != n:
            raise ValueError(f"relevance must have one entry per document ({n}), got shape "
                             f"{r.shape}")
        sizes = self._groups(n, group, qid)
        ng = sizes.shape[0]
        w = None
        if sample_weight is not None:
            w = group_weights(sample_weight.compute() if isinstance(sample_weight, da.Array)
                              else sample_weight, ng)
        kwargs = dict(params, nan_policy=nan_policy)
        if method == "grad_hess":
            kwargs.update(hessian=hessian, hess_floor=hess_floor)
        # A bad parameter raises here, naming it, rather than on a worker.
        getattr(self.loss, method)(np.zeros(2, dtype=s.dtype), np.zeros(2, dtype=r.dtype),
                                   group=[2], sample_weight=None if w is None else [1.0],
                                   **kwargs)

        # Blocks of whole groups: each block end of scores moved up to the next group start.
        offsets = np.zeros(ng + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        ends = np.cumsum(s.chunks[0])[:-1] if n else np.zeros(0, dtype=np.int64)
        ends = offsets[np.searchsorted(offsets, ends, side="left")] if ng else ends
        ends = np.unique(np.concatenate([ends[(ends > 0) & (ends < n)], [n]])).astype(np.int64)
        doc_chunks = (tuple(int(x) for x in np.diff(np.concatenate([[0], ends]))),)
        # Group g goes to the block where it starts (trailing empty groups to the last one).
        owner = np.minimum(np.searchsorted(ends, offsets[:-1], side="right"), len(ends) - 1)
        per_block = np.bincount(owner, minlength=len(ends))
        grp_chunks = (tuple(int(x) for x in per_block),)
        s = s.rechunk(doc_chunks)
        r = r.rechunk(doc_chunks)
        sizes_d = da.from_array(sizes, chunks=grp_chunks)
        w_d = None if w is None else da.from_array(np.ascontiguousarray(w), chunks=grp_chunks)

        dtype = compute_dtype_of(s.dtype)
        kw = dict(kwargs, reduction="none" if red == 0 else "sum")
        fn = partial(_pairwise_block, loss_name=self.name, method=method, kwargs=kw,
                     mean=red == 2, omit=omit)
        packed = _blocks_of(fn, f"{self.name}-{method}", [s, r, sizes_d, w_d], doc_chunks,
                            object)
        per_doc = params.get("value_per", "group") == "document"

        def output(path, chunks, dt):
            return _blocks_of(partial(_pick, path=path), f"{self.name}-out", [packed], chunks,
                              dt)

        if red == 0:
            vchunks = doc_chunks if per_doc else grp_chunks  # a loss per document or group
            outs = {"__call__": [vchunks], "grad": [doc_chunks],
                    "value_and_grad": [vchunks, doc_chunks],
                    "grad_hess": [doc_chunks, doc_chunks]}[method]
            res = tuple(output((i,), c, dtype) for i, c in enumerate(outs))
            return res[0] if method in ("__call__", "grad") else res
        nb = len(doc_chunks[0])
        pairs = output((1,), ((1,) * nb, (2,)), np.float64)
        value = _reduced(pairs, _pairwise_finish, red == 2)
        if method == "__call__":
            return value
        outs = [output((0, i), doc_chunks, dtype)
                for i in range(2 if method == "grad_hess" else 1)]
        if red == 2:
            denom = _reduced(pairs, _grad_denominator)
            outs = [_divided(o, denom, dtype) for o in outs]
        if method == "grad":
            return outs[0]
        if method == "value_and_grad":
            return value, outs[0]
        return tuple(outs)


def _pairwise_finish(total, mean):
    if not mean:
        return np.float64(total[0])
    return np.float64(np.nan if total[1] == 0 else total[0] / total[1])


_CLASSES = {"margin_ranking": _MarginRankingDask, "pairwise": _PairwiseDask}


def _build() -> MappingProxyType[str, DaskLoss]:
    return MappingProxyType({name: DaskLoss(loss) for name, loss in _fl.losses.items()})


losses = _build()
"""Every registered loss as a :class:`DaskLoss`, by name."""


def __getattr__(name: str) -> Any:
    try:
        return losses[name]
    except KeyError:
        raise AttributeError(f"module 'fastloss.dask' has no attribute {name!r}") from None


def __dir__():
    return sorted(list(globals()) + list(losses))


