"""fastloss losses as XGBoost objectives and evaluation metrics.

``objective(loss, **params)`` returns one callable that serves both APIs:

* native: ``xgboost.train(params, dtrain, obj=objective(...))`` calls it as
  ``obj(margins, dtrain)``; labels and weights are read from the DMatrix;
* scikit-learn: ``XGBClassifier(objective=objective(...))`` calls it as
  ``obj(y_true, y_pred, sample_weight=...)``.

It returns ``(grad, hess)`` of the per-sample loss (times the sample weight) with the margins'
shape: (n,) for elementwise losses, (n, K) for multiclass ones (``num_class=K``), which is the
layout XGBoost >= 2 passes and accepts. ``hessian`` chooses the Hessian policy (default:
``"xgboost"``, XGBoost's 2 p (1 - p) for multiclass losses, ``"exact"`` otherwise) and
``hess_floor`` is a lower bound applied to every Hessian before the weights, so that losses
whose exact Hessian is zero or negative (focal, absolute error) still boost.

``metric(loss, **params)`` returns the weighted mean loss the same way: ``(name, value)`` for
``xgboost.train(..., custom_metric=...)``, a float for ``eval_metric=`` of the scikit-learn
API. XGBoost hands a custom metric raw margins when the objective is custom and transformed
predictions (probabilities) with a built-in objective: pass ``from_logits=False`` to the
cross-entropy metrics in that case.

Pairwise ranking losses (``pairwise_logistic``, ``pairwise_hinge``) work with the native API
only: the query groups are read from the DMatrix (built with ``group=`` or ``qid=``, sorted by
query as XGBoost requires), and the objective returns each document's gradient and Hessian of
the summed pair losses. Its weights are XGBoost's ranking weights, one per query group, which
are fastloss's ``sample_weight``; the metric is the weighted mean loss over groups. The
scikit-learn API passes no groups to a custom objective or a metric (and ``XGBRanker`` refuses
custom objectives), so a pairwise loss called that way raises ValueError.
``pairwise_hinge``'s exact Hessian is 0: every document then gets ``hess_floor``, so choose a
floor that passes XGBoost's ``min_child_weight`` (e.g. ``hess_floor=1.0``, a gradient step).

>>> dtrain = xgboost.DMatrix(X, label=relevance, qid=query_id)             # doctest: +SKIP
>>> obj = objective("pairwise_logistic")                                   # doctest: +SKIP
>>> booster = xgboost.train({"tree_method": "hist"}, dtrain, 50, obj=obj)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import xgboost as _xgb

from ._gbdt import BoostingLoss, describe, resolve_loss
from ._loss import Loss

__all__ = ["Metric", "Objective", "metric", "objective"]


def _groups(impl: BoostingLoss, d: _xgb.DMatrix):
    """The group sizes of a DMatrix, for a pairwise loss (None for the others)."""
    if not impl.ranking:
        return None
    ptr = d.get_uint_info("group_ptr")
    if ptr.size < 2:
        raise ValueError(f"{impl.loss.name} needs the query groups: build the DMatrix with "
                         "group= (group sizes) or qid= (query ids)")
    return np.diff(ptr.astype(np.int64))


def _refuse_sklearn(impl: BoostingLoss, what: str) -> None:
    if impl.ranking:
        raise ValueError(
            f"{impl.loss.name} needs the query groups, which XGBoost's scikit-learn API does not "
            f"pass to a custom {what}; use the native API (xgboost.train with a DMatrix built "
            "with group= or qid=)")


class Objective:
    """An XGBoost custom objective (native and scikit-learn APIs); see :func:`objective`."""

    def __init__(self, loss: Union[str, Loss], *, hessian: Optional[str] = None,
                 hess_floor: float = 1e-6, **params):
        self._impl = BoostingLoss(resolve_loss(loss, "xgboost"), params, hessian=hessian,
                                  hess_floor=hess_floor, library="xgboost")
        self.loss = self._impl.loss
        self.__name__ = self.loss.name

    def __repr__(self) -> str:
        return describe("xgboost objective", self.loss, self._impl.params)

    def __deepcopy__(self, memo):  # immutable; scikit-learn's clone deep-copies parameters
        return self

    def __call__(self, y_pred_or_true, dtrain_or_pred, sample_weight=None):
        if isinstance(dtrain_or_pred, _xgb.DMatrix):  # native: (margins, DMatrix)
            preds, d = y_pred_or_true, dtrain_or_pred
            return self._impl.grad_hess(preds, d.get_label(), d.get_weight(),
                                        _groups(self._impl, d))
        # scikit-learn: (y_true, y_pred, sample_weight=None)
        _refuse_sklearn(self._impl, "objective")
        return self._impl.grad_hess(dtrain_or_pred, y_pred_or_true, sample_weight)


class Metric:
    """An XGBoost custom metric (native and scikit-learn APIs); see :func:`metric`."""

    def __init__(self, loss: Union[str, Loss], **params):
        self._impl = BoostingLoss(resolve_loss(loss, "xgboost"), params, hessian=None,
                                  hess_floor=0.0, library="xgboost")
        self.loss = self._impl.loss
        self.__name__ = self.loss.name

    def __repr__(self) -> str:
        return describe("xgboost metric", self.loss, self._impl.params)

    def __deepcopy__(self, memo):  # immutable
        return self

    def __call__(self, y_pred_or_true, dtrain_or_pred, sample_weight=None):
        if isinstance(dtrain_or_pred, _xgb.DMatrix):
            d = dtrain_or_pred
            return self.__name__, self._impl.value(y_pred_or_true, d.get_label(), d.get_weight(),
                                                   _groups(self._impl, d))
        # XGBRanker calls a metric once per query group with no weight, XGBRegressor once for
        # the whole set: the two calls look alike, so neither is taken as one group.
        _refuse_sklearn(self._impl, "metric")
        return self._impl.value(dtrain_or_pred, y_pred_or_true, sample_weight)


def objective(loss: Union[str, Loss], *, hessian: Optional[str] = None, hess_floor: float = 1e-6,
              **params) -> Objective:
    """The custom objective of ``loss`` (a name or a Loss) with its parameters fixed.

    >>> obj = objective("sigmoid_focal", gamma=2.0, hessian="fisher")      # doctest: +SKIP
    >>> booster = xgboost.train({"tree_method": "hist"}, dtrain, 50, obj=obj)  # doctest: +SKIP
    """
    return Objective(loss, hessian=hessian, hess_floor=hess_floor, **params)


def metric(loss: Union[str, Loss], **params) -> Metric:
    """The evaluation metric ``mean loss`` of ``loss`` with its parameters fixed."""
    return Metric(loss, **params)
