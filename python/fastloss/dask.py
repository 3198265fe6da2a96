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
is available here without changes. Losses of other kinds (pairs across a query group, two
differentiated inputs) raise a ``ValueError`` that says so.

>>> import dask.array as da, fastloss.dask as fld        # doctest: +SKIP
>>> pred = da.random.random(10**9, chunks=10**7)          # doctest: +SKIP
>>> fld.squared_error(pred, 0.5, reduction="mean").compute()   # doctest: +SKIP
"""

from __future__ import annotations

import string
from types import MappingProxyType
from typing import Any

import dask.array as da
import numpy as np

import fastloss as _fl

from . import _chunks
from ._loss import _HESSIANS, _NAN_POLICIES, _REDUCTIONS, _ROW_HESSIANS, Loss, _code

__all__ = ["SUPPORTED_KINDS", "DaskLoss", "losses"]

SUPPORTED_KINDS = ("elementwise", "rowwise")


def _compute_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    return np.dtype(np.float32) if dt in (np.float32, np.float16) else np.dtype(np.float64)


def _as_dask(x, name: str):
    if isinstance(x, da.Array):
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
    return da.from_array(arr, chunks="auto") if arr.ndim else da.from_array(arr)


# -- block functions (run on the workers; plain NumPy in, NumPy out) --------------------------

def _call_block(name: str, method: str, pred, target, sw, kwargs):
    # The loss travels to the workers by name: every process has the same registry.
    loss = _fl.losses[name]
    try:
        return getattr(loss, method)(pred, target, sample_weight=sw, **kwargs)
    except ValueError as exc:
        # The kernels name positions within the block they were given.
        raise ValueError(f"{exc} (position within a dask block of shape {pred.shape})") from None


def _partial_block(pred, target, sw, *, loss_name, kwargs, ndim, mean, cw, ignore_index, omit):
    loss = _fl.losses[loss_name]
    s = _call_block(loss_name, "__call__", pred, target, sw, dict(kwargs, reduction="sum"))
    d = _chunks.weight_sum(loss, pred, target, sw, cw, ignore_index, omit) if mean else 0.0
    return np.array([float(s), d]).reshape((1,) * ndim + (2,))


def _count_block(pred, target, sw, *, loss_name, ndim, ignore_index, omit, n):
    c = _chunks.class_counts(_fl.losses[loss_name], pred, target, sw, ignore_index, omit, n)
    return c.reshape((1,) * ndim + (n,))


def _per_sample_block(pred, target, sw, *, loss_name, method, kwargs, pack):
    res = _call_block(loss_name, method, pred, target, sw, dict(kwargs, reduction="none"))
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


def _grad_scale(total):
    return np.float64(0.0 if total[1] == 0 else 1.0 / total[1])


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
    def __call__(self, pred, target, *extra, reduction: str = "none", sample_weight=None,
                 nan_policy: str = "propagate", **params):
        self._check_args(extra)
        return self._run("value", pred, target, reduction, sample_weight, nan_policy, params)

    def grad(self, pred, target, *extra, reduction: str = "none", sample_weight=None,
             nan_policy: str = "propagate", **params):
        self._check_args(extra)
        return self._run("grad", pred, target, reduction, sample_weight, nan_policy, params)

    def value_and_grad(self, pred, target, *extra, reduction: str = "none", sample_weight=None,
                       nan_policy: str = "propagate", **params):
        self._check_args(extra)
        return self._run("value_and_grad", pred, target, reduction, sample_weight, nan_policy,
                         params)

    def grad_hess(self, pred, target, *extra, reduction: str = "none", sample_weight=None,
                  nan_policy: str = "propagate", hessian: str = "exact",
                  hess_floor: float = 1e-6, **params):
        self._check_args(extra)
        return self._run("grad_hess", pred, target, reduction, sample_weight, nan_policy, params,
                         hessian=hessian, hess_floor=hess_floor)

    # -- planning -----------------------------------------------------------------------
    def _check_args(self, extra):
        self._check_kind()  # a loss of three arrays (margin_ranking) is refused as such
        if extra:
            raise TypeError(f"{self.name} takes pred and target positionally, "
                            f"got {2 + len(extra)} positional arguments")

    def _check_kind(self):
        if self.kind not in SUPPORTED_KINDS:
            why = ("its pairs couple the documents of a group, which dask blocks would split"
                   if self.kind == "pairwise" else
                   "it takes two differentiated inputs, which this module does not plan"
                   if self.kind == "margin_ranking" else f"kind {self.kind!r}")
            raise ValueError(
                f"fastloss.dask supports elementwise and row-wise losses; {self.name} is of kind "
                f"{self.kind!r} ({why}): compute it in memory with fastloss.{self.name}")

    def _operands(self, pred, target, sample_weight):
        """(pred, target, sample_weight, index strings, output indices, full shape)."""
        pred = _as_dask(pred, "pred")
        target = _as_dask(target, "target")
        sw = None if sample_weight is None else _as_dask(sample_weight, "sample_weight")
        if self.kind == "elementwise":
            try:
                shape = np.broadcast_shapes(pred.shape, target.shape)
            except ValueError:
                raise ValueError(f"pred of shape {pred.shape} and target of shape "
                                 f"{target.shape} do not broadcast") from None
            if sw is not None:
                try:
                    ok = np.broadcast_shapes(shape, sw.shape) == shape
                except ValueError:
                    ok = False
                if not ok:
                    raise ValueError(f"sample_weight of shape {sw.shape} does not broadcast to "
                                     f"the loss's shape {shape}")
            chunks = pred.chunks if pred.shape == shape else "auto"
            full = da.broadcast_to(pred, shape, chunks=chunks) if pred.shape != shape else pred
            chunks = full.chunks
            target = target if target.shape == shape else da.broadcast_to(target, shape,
                                                                          chunks=chunks)
            if sw is not None and sw.shape != shape:
                sw = da.broadcast_to(sw, shape, chunks=chunks)
            ind = string.ascii_lowercase[: len(shape)]
            return full, target, sw, (ind, ind, ind), ind, shape
        first = self.loss.arg_names[0]  # "logits", or the loss's own name ("scores")
        if pred.ndim < 1:
            raise ValueError(f"{first} must have at least one dimension (the classes on the "
                             "last axis)")
        if len(pred.chunks[-1]) > 1:
            pred = pred.rechunk({pred.ndim - 1: -1})  # one row per block, whole
        rows = pred.shape[:-1]
        rind = string.ascii_lowercase[: len(rows)]
        kind_t = "f" if target.dtype.kind == "f" and target.ndim == pred.ndim else "i"
        if kind_t == "f":
            if target.shape != pred.shape:
                raise ValueError(f"probability target of shape {target.shape} must have the "
                                 f"{first}' shape {pred.shape}")
            target = target.rechunk(pred.chunks)
            tind = rind + "z"
        else:
            if target.shape != rows:
                try:
                    target = da.broadcast_to(target, rows, chunks=pred.chunks[:-1])
                except ValueError:
                    raise ValueError(f"target of shape {target.shape} does not match the "
                                     f"{first}' rows {rows}") from None
            tind = rind
        if sw is not None and sw.shape != rows:
            try:
                sw = da.broadcast_to(sw, rows, chunks=pred.chunks[:-1])
            except ValueError:
                raise ValueError(f"sample_weight of shape {sw.shape} does not broadcast to the "
                                 f"{first}' rows {rows}") from None
        return pred, target, sw, (rind + "z", tind, rind), rind, pred.shape

    def _resolve_params(self, pred, target, sw, inds, params, omit):
        """Loss parameters for every block, with counted class weights ("balanced", "auto")
        resolved over the whole array in a first pass; returns (params, class weights for the
        denominator, ignore_index)."""
        loss = self.loss
        ignore_index = _chunks.ignore_index_of(loss, params)
        n = _chunks.n_counted(loss, pred.shape[-1] if pred.ndim else 1)
        if _chunks.counted_params(loss, params):
            ndim = len(inds[2])
            parts = da.blockwise(
                _count_block, inds[2] + "n", pred, inds[0], target, inds[1],
                *((sw, inds[2]) if sw is not None else (None, None)),
                new_axes={"n": n}, adjust_chunks={c: 1 for c in inds[2]}, dtype=np.float64,
                concatenate=True, loss_name=loss.name, ndim=ndim, ignore_index=ignore_index,
                omit=omit, n=n)
            counts = parts.sum(axis=tuple(range(ndim))).compute()
            params = _chunks.resolve_counted(loss, params, counts, n, ignore_index)
        cw = _chunks.class_weights_of(loss, params, n, ignore_index)
        if cw is not None:
            params = dict(params, class_weight=cw)
        return params, cw, ignore_index

    def _probe(self, dtype, target_dtype, has_weight, kwargs, method, row_k):
        """Run the in-memory loss on one synthetic sample, so that a bad parameter raises here
        and now, naming the argument, rather than later on a worker."""
        if self.kind == "elementwise":
            pred = np.zeros(1, dtype=dtype)
            target = np.zeros(1, dtype=target_dtype)
        else:
            pred = np.zeros((1, row_k), dtype=dtype)
            if np.dtype(target_dtype).kind == "f":
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
        if what == "grad_hess":
            _code(_HESSIANS if self.kind == "elementwise" else _ROW_HESSIANS, hessian, "hessian")
        omit = nan == 2
        pshape = tuple(pred.shape) if isinstance(pred, da.Array) else np.shape(pred)
        pred, target, sw, inds, oind, shape = self._operands(pred, target, sample_weight)
        params, cw, ignore_index = self._resolve_params(pred, target, sw, inds, params, omit)
        kwargs = dict(params, nan_policy=nan_policy)
        if what == "grad_hess":
            kwargs.update(hessian=hessian, hess_floor=hess_floor)
        method = {"value": "__call__", "grad": "grad", "value_and_grad": "value_and_grad",
                  "grad_hess": "grad_hess"}[what]
        self._probe(pred.dtype, target.dtype, sw is not None, kwargs, method,
                    pred.shape[-1] if pred.ndim else 1)
        dtype = _compute_dtype(pred.dtype)
        args = [pred, inds[0], target, inds[1]]
        args += [sw, inds[2]] if sw is not None else [None, None]

        pairs = None  # the blocks' (sum of w l, sum of w), for a reduction
        if reduction != "none":
            ndim = len(oind)
            pairs = da.blockwise(
                _partial_block, oind + "p", *args, new_axes={"p": 2},
                adjust_chunks={c: 1 for c in oind}, dtype=np.float64, concatenate=True,
                loss_name=self.name, kwargs={k: v for k, v in kwargs.items()
                                        if k not in ("hessian", "hess_floor")},
                ndim=ndim, mean=reduction == "mean", cw=cw, ignore_index=ignore_index, omit=omit)
        value = None
        if what in ("value", "value_and_grad") and pairs is not None:
            value = _reduced(pairs, _finish, reduction == "mean")
            if what == "value":
                return value

        # Per-sample results (reduction="none"), or derivatives to be scaled.
        row = self.kind == "rowwise"
        if what == "value":
            out = da.blockwise(_per_sample_block, oind, *args, dtype=dtype, concatenate=True,
                               loss_name=self.name, method="__call__", kwargs=kwargs, pack=None)
            return out
        if what == "grad":
            g = da.blockwise(_per_sample_block, inds[0], *args, dtype=dtype, concatenate=True,
                             loss_name=self.name, method="grad", kwargs=kwargs, pack=None)
            parts = (g,)
        elif what == "value_and_grad" and reduction == "none":
            if row:
                k = shape[-1]
                packed = da.blockwise(_per_sample_block, inds[0], *args, dtype=dtype,
                                      concatenate=True, adjust_chunks={"z": k + 1},
                                      loss_name=self.name, method="value_and_grad", kwargs=kwargs,
                                      pack="value_last")
                return packed[..., k], packed[..., :k]
            packed = da.blockwise(_per_sample_block, oind + "p", *args, dtype=dtype,
                                  concatenate=True, new_axes={"p": 2}, loss_name=self.name,
                                  method="value_and_grad", kwargs=kwargs, pack="stack")
            return packed[..., 0], _unbroadcast(packed[..., 1], pshape, shape)
        elif what == "value_and_grad":
            g = da.blockwise(_per_sample_block, inds[0], *args, dtype=dtype, concatenate=True,
                             loss_name=self.name, method="grad", kwargs=kwargs, pack=None)
            parts = (g,)
        else:  # grad_hess
            if row:
                k = shape[-1]
                packed = da.blockwise(_per_sample_block, inds[0], *args, dtype=dtype,
                                      concatenate=True, adjust_chunks={"z": 2 * k},
                                      loss_name=self.name, method="grad_hess", kwargs=kwargs,
                                      pack="concat")
                parts = (packed[..., :k], packed[..., k:])
            else:
                packed = da.blockwise(_per_sample_block, oind + "p", *args, dtype=dtype,
                                      concatenate=True, new_axes={"p": 2}, loss_name=self.name,
                                      method="grad_hess", kwargs=kwargs, pack="stack")
                parts = (packed[..., 0], packed[..., 1])
        if reduction == "mean":
            scale = _reduced(pairs, _grad_scale)
            # The scale in the compute dtype, as the kernels apply it.
            parts = tuple(p * scale.astype(dtype) for p in parts)
        if not row:
            parts = tuple(_unbroadcast(p, pshape, shape) for p in parts)
        if what == "value_and_grad":
            return value, parts[0]
        if what == "grad":
            return parts[0]
        return parts


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


