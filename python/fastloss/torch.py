"""fastloss losses for PyTorch CPU tensors, with autograd.

``fastloss.torch.<loss>(input, target, **params)`` is the functional form and
``fastloss.torch.<CamelName>(**params)`` (e.g. ``SigmoidCrossEntropy``) the ``nn.Module``;
``fastloss.torch.Module("name", **params)`` builds the module of any registered loss.

The forward pass hands the tensors' memory to the kernels through NumPy (no copy for CPU
tensors of float32/float64) and computes the value and the gradient in one fused pass when
``input`` requires a gradient; the backward pass only scales that stored gradient by the
incoming one. Only ``input`` (the first argument) is differentiated, except for
``margin_ranking(input1, input2, target)``, which differentiates both inputs as torch's
``margin_ranking_loss`` does. The losses are differentiated once: building a graph of the
gradient (``create_graph=True``, ``torch.autograd.functional.hessian``) raises RuntimeError
instead of giving zero second derivatives; the diagonal Hessian is ``fastloss.<loss>.grad_hess``.

The pairwise ranking losses take ``(scores, relevance, group=..., qid=...)``: ``scores`` is
differentiated, ``group=`` (sizes) and ``qid=`` (one query id per document) may be tensors or
arrays, given to the function or to the module's ``forward`` (or fixed at construction).
``sample_weight`` holds one weight per group. With ``reduction="none"`` and
``value_per="group"`` (one loss per group) backward scales each document's gradient by the
incoming gradient of its group. **Decision**: with ``value_per="document"`` each pair's loss is
split between its two documents, so the exact backward needs a weight per pair, which the
per-document gradient cannot give; backward is exact, and accepted, only when the incoming
gradient is the same for every document of a group (``loss.sum()``, ``loss.mean()``, a
weight per group), and otherwise raises ValueError naming ``value_per``. For per-group
weighting use ``value_per="group"`` or ``sample_weight``.

>>> import torch
>>> import fastloss.torch as flt
>>> s = torch.tensor([2.0, 1.0, 0.0, 0.3, 0.1], dtype=torch.float64, requires_grad=True)
>>> r = torch.tensor([2, 0, 1, 1, 0])
>>> loss = flt.pairwise_hinge(s, r, group=torch.tensor([3, 2]), margin=1.5)  # mean of 3.0, 1.3
>>> loss.backward()
>>> round(loss.item(), 6), s.grad.tolist()
(2.15, [-0.5, 1.0, -0.5, -0.5, 0.5])

**Decision**: ``reduction`` defaults to ``"mean"`` here, as in ``torch.nn`` losses (the NumPy
API defaults to ``"none"``). Sample weights, class weights and every loss parameter work as in
the NumPy API; tensors given as parameters (``class_weight``, ``pos_weight``, ``group``,
``qid``) are read as arrays. float16 and bfloat16 inputs are computed in float32 and the result
cast back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as _torch

import fastloss as _fl

from ._loss import Loss
from ._ranking import group_offsets

SUPPORTED_KINDS = ("elementwise", "rowwise", "margin_ranking", "pairwise")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _check_loss(loss: Loss) -> None:
    if loss.kind not in SUPPORTED_KINDS:
        raise ValueError(f"fastloss.torch supports losses of kind {', '.join(SUPPORTED_KINDS)}; "
                         f"{loss.name} is of kind {loss.kind!r} (compute it with "
                         f"fastloss.{loss.name} on NumPy arrays)")


def _array(t, name: str) -> Any:
    """A CPU tensor as a NumPy array sharing its memory (float16/bfloat16 as float32)."""
    if not isinstance(t, _torch.Tensor):
        return t
    if t.device.type != "cpu":
        raise ValueError(f"{name} is on {t.device}; fastloss.torch computes on CPU tensors")
    if t.is_complex():
        raise TypeError(f"{name} must be real, got {t.dtype}")
    t = t.detach()
    if t.dtype in (_torch.float16, _torch.bfloat16):
        t = t.to(_torch.float32)
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    return t.numpy()


def _params(params: dict) -> dict:
    return {k: (_array(v, k) if isinstance(v, _torch.Tensor) else v) for k, v in params.items()}


def _output(value, reduction: str, dtype):
    """A forward result as a tensor: per-sample values sharing the array's memory, a reduced
    value as a 0-d tensor; cast to dtype when it is a floating dtype."""
    if reduction == "none":
        out = _torch.from_numpy(np.asarray(value))
    else:
        out = _torch.tensor(float(value), dtype=_torch.float64)
    return out.to(dtype) if dtype.is_floating_point else out


def _first_order(backward):
    """backward of a loss differentiated once. The autograd engine runs backward with grad mode
    on exactly when a graph of the derivatives is being built (create_graph=True: double
    backward, torch.autograd.functional.hessian); its result would then carry no derivative of
    its own and a second derivative would come out as zeros, so that is an error instead.
    (once_differentiable alone catches only an incoming gradient that requires grad.)"""
    def checked(ctx, *grad_outputs):
        if _torch.is_grad_enabled():
            raise RuntimeError(
                "fastloss.torch losses can be differentiated once: create_graph=True (double "
                "backward, torch.autograd.functional.hessian) is not supported; the diagonal "
                "Hessian comes from fastloss.<loss>.grad_hess")
        return backward(ctx, *grad_outputs)
    checked.__name__ = backward.__name__
    checked.__doc__ = backward.__doc__
    return checked


class _LossFunction(_torch.autograd.Function):
    """forward: the loss (and, when needed, its gradient in the same pass); backward: the
    stored gradient times the incoming one."""

    @staticmethod
    def forward(ctx, input, target, sample_weight, loss, reduction, nan_policy, params):
        x = _array(input, "input")
        t = _array(target, "target")
        w = _array(sample_weight, "sample_weight")
        kw = dict(reduction=reduction, sample_weight=w, nan_policy=nan_policy, **params)
        ctx.input_shape = None
        if reduction == "none" and loss.kind == "elementwise" and ctx.needs_input_grad[0]:
            full = np.broadcast_shapes(np.shape(x), np.shape(t))
            if w is not None:
                full = np.broadcast_shapes(full, np.shape(w))
            if full != np.shape(x):
                # A broadcast input with per-element outputs: keep one gradient per output
                # element (a stride-0 view, not a copy) and sum it after scaling in backward.
                ctx.input_shape = input.shape
                x = np.broadcast_to(x, full)
        if ctx.needs_input_grad[0]:
            value, grad = loss.value_and_grad(x, t, **kw)
            ctx.save_for_backward(_torch.from_numpy(np.ascontiguousarray(grad)))
        else:
            value = loss(x, t, **kw)
        ctx.rowwise = loss.kind == "rowwise" and reduction == "none"
        return _output(value, reduction, input.dtype)

    @staticmethod
    @_first_order
    @_torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        go = grad_output.to(grad.dtype)
        if ctx.rowwise:
            go = go.unsqueeze(-1)  # one value per row, one gradient per logit
        g = grad * go
        if ctx.input_shape is not None:
            g = g.sum_to_size(ctx.input_shape)
        return g, None, None, None, None, None, None


class _MarginRankingFunction(_torch.autograd.Function):
    """margin_ranking(input1, input2, target): both inputs differentiated, from the pair of
    gradients of one fused pass."""

    @staticmethod
    def forward(ctx, input1, input2, target, sample_weight, loss, reduction, nan_policy, params):
        x1 = _array(input1, "input1")
        x2 = _array(input2, "input2")
        t = _array(target, "target")
        w = _array(sample_weight, "sample_weight")
        kw = dict(reduction=reduction, sample_weight=w, nan_policy=nan_policy, **params)
        ctx.shapes = (input1.shape, input2.shape)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            # One gradient per element of the broadcast shape (stride-0 views, not copies);
            # backward sums each down to its input's shape after scaling.
            shapes = [np.shape(x1), np.shape(x2), np.shape(t)]
            if w is not None:
                shapes.append(np.shape(w))
            full = np.broadcast_shapes(*shapes)
            value, (g1, g2) = loss.value_and_grad(np.broadcast_to(x1, full),
                                                  np.broadcast_to(x2, full), t, **kw)
            ctx.save_for_backward(_torch.from_numpy(np.ascontiguousarray(g1)),
                                  _torch.from_numpy(np.ascontiguousarray(g2)))
        else:
            value = loss(x1, x2, t, **kw)
        # In the promoted dtype of the two inputs, as torch's loss gives it.
        return _output(value, reduction, _torch.promote_types(input1.dtype, input2.dtype))

    @staticmethod
    @_first_order
    @_torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        g1, g2 = ctx.saved_tensors
        go = grad_output.to(g1.dtype)
        d1 = (g1 * go).sum_to_size(ctx.shapes[0]) if ctx.needs_input_grad[0] else None
        d2 = (g2 * go).sum_to_size(ctx.shapes[1]) if ctx.needs_input_grad[1] else None
        return d1, d2, None, None, None, None, None, None


def _document_groups(n: int, group, qid):
    """Each document's group index (groups numbered as the loss numbers them: in the order of
    group= sizes, or of ascending qid)."""
    offsets, order = group_offsets(n, group, qid)
    sorted_groups = np.repeat(np.arange(offsets.shape[0] - 1, dtype=np.int64), np.diff(offsets))
    if order is None:
        return sorted_groups
    groups = np.empty(n, dtype=np.int64)
    groups[order] = sorted_groups
    return groups


class _PairwiseFunction(_torch.autograd.Function):
    """pairwise_logistic / pairwise_hinge: scores differentiated, from the per-document
    gradient of one fused pass; with reduction="none" backward scales each document's
    gradient by the incoming gradient of the value its pairs were summed into."""

    @staticmethod
    def forward(ctx, scores, relevance, sample_weight, loss, reduction, nan_policy, params):
        s = _array(scores, "scores")
        r = _array(relevance, "relevance")
        w = _array(sample_weight, "sample_weight")
        kw = dict(reduction=reduction, sample_weight=w, nan_policy=nan_policy, **params)
        ctx.per_value = None
        if ctx.needs_input_grad[0]:
            value, grad = loss.value_and_grad(s, r, **kw)
            saved = [_torch.from_numpy(grad)]
            if reduction == "none":
                # Checked by the call above, so this cannot fail.
                groups = _document_groups(grad.shape[0], params.get("group"),
                                          params.get("qid"))
                ctx.per_value = params.get("value_per", "group")
                saved.append(_torch.from_numpy(groups))
            ctx.save_for_backward(*saved)
        else:
            value = loss(s, r, **kw)
        return _output(value, reduction, scores.dtype)

    @staticmethod
    @_first_order
    @_torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grad, *rest = ctx.saved_tensors
        go = grad_output.to(grad.dtype)
        if ctx.per_value == "group":
            # Each document's pairs all lie in its own group: d/ds_k sum_g go_g L_g is
            # go_{group(k)} times the gradient of the unreduced sum.
            go = go[rest[0]]
        elif ctx.per_value == "document":
            # sum_k go_k L_k with L_k half of each of k's pairs: exact as go_g * grad when go is
            # the same within each group; otherwise each pair needs (go_i + go_j) / 2.
            groups = rest[0]
            if go.numel():
                # Compare each document's incoming gradient with its group's first document's
                # (NaN equal to NaN: a NaN loss passes its NaN on either way).
                n = go.shape[0]
                first = _torch.full((int(groups.max()) + 1,), n, dtype=_torch.int64)
                first.scatter_reduce_(0, groups, _torch.arange(n), "amin")
                lead = go[first[groups]]
                uneven = (go != lead) & ~(go.isnan() & lead.isnan())
                if bool(uneven.any()):
                    k = int(_torch.nonzero(uneven)[0, 0])
                    raise ValueError(
                        "backward of reduction='none' with value_per='document' needs the same "
                        "incoming gradient for every document of a group (each pair's loss is "
                        f"split between its two documents); group {int(groups[k])} gets "
                        f"different values (first at document {k}). Weight whole groups "
                        "(value_per='group', or sample_weight), or reduce the per-document "
                        "losses with .sum() or .mean()")
        return grad * go, None, None, None, None, None, None


def _check_tensors(inputs: dict, fixed: dict, differentiated: str) -> None:
    """The differentiated arguments are tensors; the others do not ask for a gradient."""
    for name, t in inputs.items():
        if not isinstance(t, _torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    for name, t in fixed.items():
        if isinstance(t, _torch.Tensor) and t.requires_grad:
            raise ValueError(f"{name} requires grad, but fastloss.torch differentiates "
                             f"{differentiated} only; detach it")


def _apply_margin_ranking(loss: Loss, input1, input2, target, sample_weight, reduction,
                          nan_policy, params):
    _check_tensors({"input1": input1, "input2": input2},
                   {"target": target, "sample_weight": sample_weight}, "input1 and input2")
    return _MarginRankingFunction.apply(input1, input2, target, sample_weight, loss, reduction,
                                        nan_policy, _params(params))


def _apply_pairwise(loss: Loss, scores, relevance, sample_weight, reduction, nan_policy,
                    params):
    _check_tensors({"scores": scores},
                   {"relevance": relevance, "sample_weight": sample_weight,
                    "group": params.get("group"), "qid": params.get("qid")}, "scores")
    return _PairwiseFunction.apply(scores, relevance, sample_weight, loss, reduction, nan_policy,
                                   _params(params))


def _apply(loss: Loss, input, target, sample_weight, reduction, nan_policy, params):
    _check_loss(loss)
    _check_tensors({"input": input}, {"target": target, "sample_weight": sample_weight},
                   "the first argument (input)")
    out = _LossFunction.apply(input, target, sample_weight, loss, reduction, nan_policy,
                              _params(params))
    return out


class Module(_torch.nn.Module):
    """The ``nn.Module`` of a fastloss loss: ``Module("huber", delta=0.5)(input, target)``."""

    def __init__(self, loss, *, reduction: str = "mean", nan_policy: str = "propagate",
                 **params):
        super().__init__()
        if isinstance(loss, str):
            if loss not in _fl.losses:
                raise ValueError(f"loss: unknown loss {loss!r}")
            loss = _fl.losses[loss]
        _check_loss(loss)
        self.loss = loss
        self.reduction = reduction
        self.nan_policy = nan_policy
        self.params = params
        for key in params:
            if key not in loss.params:
                raise TypeError(f"{loss.name}() got an unexpected keyword argument {key!r}")

    def forward(self, input, target, *rest, sample_weight=None, group=None, qid=None):
        if self.loss.kind == "pairwise":  # forward(scores, relevance, group=..., qid=...)
            params = self.params
            if group is not None or qid is not None:
                if params.get("group") is not None or params.get("qid") is not None:
                    raise TypeError(f"{self.loss.name}: the groups are given twice (to the "
                                    "module and to forward)")
                params = {**params, "group": group, "qid": qid}
        elif group is not None or qid is not None:
            raise TypeError(f"{self.loss.name} takes no group= or qid= (only the pairwise "
                            "ranking losses do)")
        if self.loss.kind == "margin_ranking":  # forward(input1, input2, target)
            if len(rest) > 1:
                raise TypeError("margin_ranking takes input1, input2, target (and sample_weight)")
            if not rest:
                raise TypeError("margin_ranking takes input1, input2 and target")
            return _apply_margin_ranking(self.loss, input, target, rest[0], sample_weight,
                                         self.reduction, self.nan_policy, self.params)
        if len(rest) > 1:
            raise TypeError(f"{self.loss.name} takes input, target and sample_weight")
        if rest:
            if sample_weight is not None:
                raise TypeError(f"{self.loss.name}: sample_weight given twice (by position "
                                "and by keyword)")
            sample_weight = rest[0]
        if self.loss.kind == "pairwise":
            return _apply_pairwise(self.loss, input, target, sample_weight, self.reduction,
                                   self.nan_policy, params)
        return _apply(self.loss, input, target, sample_weight, self.reduction, self.nan_policy,
                      self.params)

    def extra_repr(self) -> str:
        ps = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.loss.name}, reduction={self.reduction!r}" + (f", {ps}" if ps else "")


def _functional(loss: Loss):
    if loss.kind == "margin_ranking":
        def fn_mr(input1, input2, target, *, reduction: str = "mean", sample_weight=None,
                  nan_policy: str = "propagate", **params):
            return _apply_margin_ranking(loss, input1, input2, target, sample_weight, reduction,
                                         nan_policy, params)

        fn_mr.__name__ = fn_mr.__qualname__ = loss.name
        fn_mr.__doc__ = (f"{loss.name} of CPU tensors (input1, input2, target) with autograd for "
                         f"both inputs (reduction='mean' by default), as torch's "
                         f"margin_ranking_loss; see fastloss.{loss.name}.\n\n{loss.__doc__}")
        return fn_mr

    if loss.kind == "pairwise":
        def fn_pw(scores, relevance, *, group=None, qid=None, reduction: str = "mean",
                  sample_weight=None, nan_policy: str = "propagate", **params):
            return _apply_pairwise(loss, scores, relevance, sample_weight, reduction, nan_policy,
                                   {"group": group, "qid": qid, **params})

        fn_pw.__name__ = fn_pw.__qualname__ = loss.name
        fn_pw.__doc__ = (f"{loss.name} of CPU tensors (scores, relevance; groups by group= sizes "
                         f"or qid=) with autograd for scores (reduction='mean' by default, over "
                         f"groups); see fastloss.{loss.name} and the fastloss.torch module "
                         f"docstring for value_per='document'.\n\n{loss.__doc__}")
        return fn_pw

    def fn(input, target, *, reduction: str = "mean", sample_weight=None,
           nan_policy: str = "propagate", **params):
        return _apply(loss, input, target, sample_weight, reduction, nan_policy, params)

    fn.__name__ = fn.__qualname__ = loss.name
    fn.__doc__ = (f"{loss.name} of CPU tensors with autograd (reduction='mean' by default); "
                  f"see fastloss.{loss.name}.\n\n{loss.__doc__}")
    return fn


def _module_class(loss: Loss):
    def __init__(self, *, reduction: str = "mean", nan_policy: str = "propagate", **params):
        Module.__init__(self, loss, reduction=reduction, nan_policy=nan_policy, **params)

    return type(_camel(loss.name), (Module,), {
        "__init__": __init__, "__module__": __name__,
        "__doc__": f"nn.Module of fastloss.{loss.name} (reduction='mean' by default)."})


losses = {name: _functional(loss) for name, loss in _fl.losses.items()}
"""Every registered loss as an autograd-aware function of tensors, by name."""
_MODULES = {_camel(name): _module_class(loss) for name, loss in _fl.losses.items()}
globals().update(losses)
globals().update(_MODULES)
__all__ = ["Module", "losses", "SUPPORTED_KINDS", *sorted(losses), *sorted(_MODULES)]
