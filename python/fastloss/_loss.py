"""The Loss object: a loss function callable like a ufunc, carrying its derivatives.

Every registered loss is one instance of :class:`Loss`. The instance parses and checks the
loss's own keyword parameters; the compiled core (``fastloss._core``) checks the arrays,
broadcasts, converts dtypes block by block and runs the kernels without the GIL.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from . import _core

__all__ = ["Loss"]

_REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}
_NAN_POLICIES = {"propagate": 0, "raise": 1, "omit": 2}
_HESSIANS = {"exact": 0, "clip": 1, "abs": 2, "fisher": 3}
# Multiclass losses also take the gradient-boosting conventions (a factor on the exact
# diagonal): XGBoost's multi:softprob uses 2 p (1 - p), LightGBM's multiclass K/(K-1) p (1 - p).
_ROW_HESSIANS = {"exact": 0, "clip": 1, "abs": 2, "fisher": 3, "xgboost": 4, "lightgbm": 5}
_WANT_VALUE, _WANT_GRAD, _WANT_HESS = 1, 2, 4


def _code(table: Mapping[str, int], value: Any, name: str) -> int:
    try:
        return table[value]
    except (KeyError, TypeError):
        choices = ", ".join(repr(k) for k in table)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}") from None


def finite_param(value: Any, name: str, *, low: Optional[float] = None, low_open: bool = False,
                 high: Optional[float] = None) -> float:
    """A loss parameter as a float, checked: finite, and within [low, high] (or (low, ...))."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        op = ">" if low_open else ">="
        raise ValueError(f"{name} must be {op} {low}, got {value!r}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")
    return v


ParamParser = Callable[[dict], Sequence[float]]


def as_array(value: Any, name: str) -> np.ndarray:
    """value as a NumPy array (itself when it is one); a nested sequence NumPy cannot convert
    (ragged rows) is a ValueError naming the argument, None a TypeError."""
    if isinstance(value, np.ndarray):
        check_not_masked(value, name)
        return value
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        return np.asarray(value)
    except ValueError as e:
        raise ValueError(f"{name} could not be converted to an array: {e}") from None


def check_not_masked(value: Any, name: str) -> None:
    """TypeError for a masked array with masked entries: the kernels read the data under the
    mask, and a loss that silently scored masked entries would be wrong. (A masked array with
    nothing masked is read as its data.)"""
    if isinstance(value, np.ma.MaskedArray) and np.ma.getmask(value) is not np.ma.nomask \
            and np.any(np.ma.getmaskarray(value)):
        raise TypeError(f"{name} is a masked array with masked entries; pass "
                        f"{name}.filled(value), or leave the entries out with "
                        "sample_weight=~mask (or NaN and nan_policy='omit')")


def scalar_if_0d(x: Any, user: Any = None) -> Any:
    """A 0-d result as a NumPy scalar, as a ufunc returns it (not an array the caller passed
    as out=, which is returned itself); a pair (margin_ranking's) entry by entry."""
    if isinstance(x, tuple):
        users = user if isinstance(user, (tuple, list)) else (None,) * len(x)
        return tuple(scalar_if_0d(e, u) for e, u in zip(x, users))
    if isinstance(x, np.ndarray) and x.ndim == 0 and user is None:
        return x[()]
    return x


# The default of the two array arguments, so that they can also be given by keyword under
# their documented names (Loss._inputs).
_NO_ARG = object()


class Loss:
    """A loss function with its gradient and diagonal Hessian.

    Call it like a ufunc: ``loss(pred, target, reduction="mean")``. The first argument is the
    one differentiated. Methods: :meth:`grad`, :meth:`value_and_grad`, :meth:`grad_hess`.
    """

    def __init__(self, name: str, *, family: str, kernel_id: int, params: Mapping[str, Any],
                 parse: Optional[ParamParser] = None, prepare: Optional[Callable] = None,
                 has_fisher: bool, formula: str, doc: str = "", kind: str = "elementwise",
                 hessians: Optional[Mapping[str, int]] = None,
                 arg_names: Optional[Sequence[str]] = None, post_log_base: bool = False):
        self.name = name
        self.family = family
        self.params = dict(params)
        # A loss whose kernel has no log_base of its own takes it here: value, gradient and
        # Hessian are divided by ln(log_base) after the kernel, in place (one more pass over
        # the per-sample outputs when log_base is given; none for the default).
        self._post_log_base = post_log_base
        if post_log_base:
            self.params["log_base"] = None
        self.formula = formula
        self.has_fisher = has_fisher
        self._kernel_id = kernel_id
        self._parse = parse
        # The kernel's parameter list for the defaults, parsed once (the common call).
        self._default_values = parse({}) if parse is not None else ()
        # prepare(pred, target, sample_weight, params) -> (values, aux, aux_name, factor_active)
        # for losses whose parameters depend on the data (class weights, per-element arrays).
        self._prepare = prepare
        self.kind = kind  # "elementwise" or "rowwise" (logits [..., K], one value per row)
        # The hessian= names this loss accepts, when not the family's full set, mapped to the
        # kernel's policy code (hinge maps "xgboost" onto the loss's second Hessian slot).
        self._hessians = None if hessians is None else dict(hessians)
        # The names of the positional arguments, as error messages and integrations use them.
        if arg_names is None:
            arg_names = ("logits", "target") if kind == "rowwise" else ("pred", "target")
        self.arg_names = tuple(arg_names)
        self.__doc__ = doc or formula
        self.__name__ = name
        self.__qualname__ = name

    def hessian_names(self) -> tuple:
        """The ``hessian=`` policies that :meth:`grad_hess` accepts for this loss."""
        names = self._hessians if self._hessians is not None else (
            _ROW_HESSIANS if self.kind == "rowwise" else _HESSIANS)
        if self.kind == "elementwise" and not self.has_fisher:
            names = [n for n in names if n != "fisher"]
        return tuple(names)

    def __reduce__(self):
        # Pickled by name, as NumPy pickles its ufuncs: unpickling (in another process too)
        # gives the registered object itself, fastloss.losses[name].
        return (_registered, (self.name,))

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"<fastloss.Loss {self.name}({ps})>" if ps else f"<fastloss.Loss {self.name}>"

    # -- the four entry points ------------------------------------------------------------
    def __call__(self, pred=_NO_ARG, target=_NO_ARG, *, reduction: str = "none",
                 sample_weight=None, nan_policy: str = "propagate", out=None, **params):
        """The loss: per sample (``reduction="none"``, times its weight), or its sum or mean."""
        pred, target, sample_weight = self._inputs(pred, target, params, sample_weight)
        v, _, _ = self._run(pred, target, _WANT_VALUE, reduction, sample_weight, nan_policy,
                            params, out, None, None, "exact", 0.0)
        return scalar_if_0d(v, out)

    def grad(self, pred=_NO_ARG, target=_NO_ARG, *, reduction: str = "none", sample_weight=None,
             nan_policy: str = "propagate", out=None, **params):
        """Gradient of what ``__call__`` returns, w.r.t. ``pred`` (per-sample for "none")."""
        pred, target, sample_weight = self._inputs(pred, target, params, sample_weight)
        _, g, _ = self._run(pred, target, _WANT_GRAD, reduction, sample_weight, nan_policy,
                            params, None, out, None, "exact", 0.0, grad_name="out")
        return scalar_if_0d(g, out)

    def value_and_grad(self, pred=_NO_ARG, target=_NO_ARG, *, reduction: str = "none",
                       sample_weight=None, nan_policy: str = "propagate", out=None,
                       grad_out=None, **params):
        """``(loss, gradient)`` in one pass over the data."""
        pred, target, sample_weight = self._inputs(pred, target, params, sample_weight)
        v, g, _ = self._run(pred, target, _WANT_VALUE | _WANT_GRAD, reduction, sample_weight,
                            nan_policy, params, out, grad_out, None, "exact", 0.0)
        return scalar_if_0d(v, out), scalar_if_0d(g, grad_out)

    def grad_hess(self, pred=_NO_ARG, target=_NO_ARG, *, reduction: str = "none",
                  sample_weight=None, nan_policy: str = "propagate", hessian: str = "exact",
                  hess_floor: float = 1e-6, grad_out=None, hess_out=None, **params):
        """``(gradient, diagonal Hessian)``; ``hessian`` picks the Hessian policy.

        "exact": the second derivative; "clip": max(h, hess_floor) on each sample's Hessian,
        before its sample weight and the mean's 1/sum(w) factor; "abs": |h|; "fisher": the
        expected Hessian (see docs/losses.md for each loss).
        """
        pred, target, sample_weight = self._inputs(pred, target, params, sample_weight)
        _, g, h = self._run(pred, target, _WANT_GRAD | _WANT_HESS, reduction, sample_weight,
                            nan_policy, params, None, grad_out, hess_out, hessian, hess_floor)
        return scalar_if_0d(g, grad_out), scalar_if_0d(h, hess_out)

    def _inputs(self, pred, target, params, sample_weight=None):
        """The two arrays, given positionally or by keyword: the first also by its documented
        name (``logits`` for the binary and multiclass losses, ``scores``, ...), the second by
        its own (``relevance`` for the pairwise losses); such keywords are removed from params.
        Lists and tuples become arrays here, with sample_weight's (a ragged one is a
        ValueError naming its argument, before any parameter check looks at it)."""
        names = self.arg_names if len(self.arg_names) == 2 else ("pred", "target")
        first = {names[0]} - {"pred"}
        if self.family in ("binary", "multiclass", "multilabel"):
            first.add("logits")
            if names[0] == "pred":
                names = ("logits", names[1])
        given = [k for k in sorted(first) if k in params]
        if given:
            if pred is not _NO_ARG or len(given) > 1:
                raise TypeError(f"{self.name}() got multiple values for argument {names[0]!r}")
            pred = params.pop(given[0])
        if names[1] != "target" and names[1] in params:
            if target is not _NO_ARG:
                raise TypeError(f"{self.name}() got multiple values for argument {names[1]!r}")
            target = params.pop(names[1])
        for value, name in ((pred, names[0]), (target, names[1])):
            if value is _NO_ARG:
                # A misnamed array (squared_error(logits=...)) is named too.
                unknown = [k for k in params if k not in self.params]
                extra = (f" (got an unexpected keyword argument {unknown[0]!r})" if unknown
                         else "")
                raise TypeError(f"{self.name}() missing required argument {name!r}{extra}")
        if isinstance(pred, (list, tuple, np.ma.MaskedArray)):
            pred = as_array(pred, names[0])
        if isinstance(target, (list, tuple, np.ma.MaskedArray)):
            target = as_array(target, names[1])
        if isinstance(sample_weight, (list, tuple, np.ma.MaskedArray)):
            sample_weight = as_array(sample_weight, "sample_weight")
        return pred, target, sample_weight

    def _class_split_sum(self, pred, target, **params):
        """(sum, sum over targets equal to 1, their count, whether a target is neither 0 nor
        1) of the unweighted loss, in one kernel pass (the per-class breakdown of 0/1 labels
        in ``fastloss score``). Elementwise losses only."""
        if self.kind != "elementwise":
            raise TypeError(f"{self.name} is not an elementwise loss")
        (s, s1, n1, other), _, _ = self._run(pred, target, _WANT_VALUE, "sum", None, "propagate",
                                             params, None, None, None, "exact", 0.0,
                                             class_split=True)
        return float(s), float(s1), int(n1), bool(other)

    # -- shared path ----------------------------------------------------------------------
    def _run(self, pred, target, want, reduction, sample_weight, nan_policy, params, out,
             grad_out, hess_out, hessian, hess_floor, grad_name="grad_out", class_split=False):
        if self._post_log_base and "log_base" in params:
            params = dict(params)
            scale = _log_scale(params.pop("log_base"))
            if scale == 1.0:
                return self._run(pred, target, want, reduction, sample_weight, nan_policy,
                                 params, out, grad_out, hess_out, hessian, hess_floor, grad_name,
                                 class_split)
            # The policies act on the Hessian of the scaled loss: max(s h, floor) is
            # s max(h, floor / s) and |s h| is s |h| for s > 0 (the kernel's policies leave
            # ignored rows at 0 either way).
            floor = hess_floor
            if hessian == "clip":
                floor = finite_param(hess_floor, "hess_floor", low=0.0) / scale
            v, g, h = self._run(pred, target, want, reduction, sample_weight, nan_policy, params,
                                out, grad_out, hess_out, hessian, floor, grad_name, class_split)
            if class_split:
                return (v[0] * scale, v[1] * scale, v[2], v[3]), g, h
            return _scaled(v, scale), _scaled(g, scale), _scaled(h, scale)
        red = _code(_REDUCTIONS, reduction, "reduction")
        nan = _code(_NAN_POLICIES, nan_policy, "nan_policy")
        if self.kind == "rowwise":
            return self._run_rows(pred, target, want, red, sample_weight, nan, params, out,
                                  grad_out, hess_out, hessian, hess_floor, grad_name)
        policy = _code(_HESSIANS if self._hessians is None else self._hessians, hessian,
                       "hessian")
        if hessian == "fisher" and not self.has_fisher:
            raise ValueError(f"hessian='fisher' is not defined for {self.name}; "
                             "use 'exact', 'clip' or 'abs'")
        floor = finite_param(hess_floor, "hess_floor", low=0.0) if policy == 1 else 0.0
        if self._prepare is not None:
            values, aux, aux_name, factor = self._prepare(pred, target, sample_weight, params,
                                                          omit_nan=nan == 2)
        else:
            values = self._parse(params) if params else self._default_values
            aux, aux_name, factor = None, "", False
        v, g, h = _core.elementwise(self._kernel_id, pred, target, sample_weight, aux, aux_name,
                                    factor, values, red, want, out, grad_out, grad_name, hess_out,
                                    policy, floor, nan, self.arg_names[0], self.arg_names[1],
                                    class_split)
        if class_split:
            return v, g, h
        if red and v is not None:
            v = np.float64(v)
        return v, g, h

    def _run_rows(self, logits, target, want, red, sample_weight, nan, params, out, grad_out,
                  hess_out, hessian, hess_floor, grad_name):
        if self._hessians is not None:
            _code(self._hessians, hessian, "hessian")
        code = _code(_ROW_HESSIANS, hessian, "hessian")
        floor = finite_param(hess_floor, "hess_floor", low=0.0) if code == 1 else 0.0
        logits = as_array(logits, self.arg_names[0])
        if logits.dtype.kind not in "biuf":
            # Before the parameter checks look at the shape: a TypeError naming the argument.
            raise TypeError(f"{self.arg_names[0]} must hold real numbers (bool, integer or "
                            f"float), got dtype {logits.dtype}")
        # prepare -> (values, class_weight, ignore_index[, (class_aux, class_aux_name)
        # [, target]]): class_aux is a per-class parameter array of the loss (e.g.
        # softmax_focal's alpha); a loss may also hand the kernels a converted target
        # (multilabel_softmax_cross_entropy folds its mask into the target).
        prepared = self._prepare(logits, target, sample_weight, params, omit_nan=nan == 2)
        values, class_w, ignore_index = prepared[:3]
        aux = prepared[3] if len(prepared) > 3 else None
        class_aux, class_aux_name = aux if aux is not None else (None, "class_aux")
        if len(prepared) > 4:
            target = prepared[4]
        if code in (4, 5) and not bool(params.get("from_logits", True)):
            raise ValueError(f"hessian={hessian!r} is a convention for logits; "
                             "it is not defined with from_logits=False")
        factor = 1.0
        if code == 4:
            factor = 2.0
        elif code == 5:
            k = logits.shape[-1] if logits.ndim else 1
            if k < 2:
                raise ValueError("hessian='lightgbm' needs at least 2 classes")
            factor = k / (k - 1.0)
        policy = code if code <= 3 else 0  # the GBDT conventions are exact x hess_factor
        v, g, h = _core.rowwise(self._kernel_id, logits, target, sample_weight, class_w,
                                ignore_index, values, red, want, out, grad_out, grad_name,
                                hess_out, policy, floor, factor, nan, class_aux,
                                class_aux_name, self.arg_names[0])
        if red and v is not None:
            v = np.float64(v)
        return v, g, h


def _log_scale(log_base) -> float:
    """1 / ln(log_base); None or e gives 1. A base at or below 1 is refused: it would turn the
    loss into one that falls as the error grows (below 1) or is undefined (1)."""
    if log_base is None:
        return 1.0
    b = finite_param(log_base, "log_base", low=1.0, low_open=True)
    return 1.0 / math.log(b)


def _scaled(x, scale: float):
    """x times scale: a float64 scalar, or an array scaled in place in its own dtype (the
    caller's out= buffer included)."""
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        np.multiply(x, x.dtype.type(scale), out=x)
        return x
    if isinstance(x, np.generic):  # a scalar of the compute dtype keeps it
        return x.dtype.type(x * x.dtype.type(scale))
    return np.float64(x * scale)


def make_parser(loss_name: str, spec: Mapping[str, Callable[[Any], float]],
                defaults: Mapping[str, Any]) -> ParamParser:
    """A parser turning keyword parameters into the kernel's ordered float list."""
    names = list(spec)

    def parse(params: dict) -> Sequence[float]:
        for key in params:
            if key not in spec:
                raise TypeError(f"{loss_name}() got an unexpected keyword argument {key!r}")
        return [spec[k](params.get(k, defaults[k])) for k in names]

    return parse


def _registered(name: str) -> "Loss":
    """The registered loss of that name (what a pickled Loss restores to)."""
    from . import losses

    return losses[name]
