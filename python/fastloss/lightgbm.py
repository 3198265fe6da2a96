"""fastloss losses as LightGBM objectives and evaluation metrics.

``objective(loss, **params)`` returns one callable that serves both APIs:

* native: ``lightgbm.train({"objective": objective(...), ...}, train_set)`` calls it as
  ``obj(margins, dataset)``; labels and weights are read from the Dataset;
* scikit-learn: ``LGBMClassifier(objective=objective(...))`` calls it as
  ``obj(y_true, y_pred, weight, group)``.

It returns ``(grad, hess)`` of the per-sample loss (times the sample weight; LightGBM does not
apply weights to a custom objective's output) with the margins' shape: (n,), or (n, K) for
multiclass losses (``num_class=K``), the layout LightGBM >= 4 passes and accepts. ``hessian``
chooses the Hessian policy (default: ``"lightgbm"``, LightGBM's K/(K-1) p (1 - p) for
multiclass losses, ``"exact"`` otherwise) and ``hess_floor`` is a lower bound applied to every
Hessian before the weights, so that losses whose exact Hessian is zero or negative still boost.

``metric(loss, **params)`` returns ``(name, weighted mean loss, False)``, as LightGBM's
``feval``/``eval_metric`` expect (lower is better). LightGBM hands a custom metric raw margins
when the objective is custom and transformed predictions with a built-in objective: pass
``from_logits=False`` to the cross-entropy metrics in that case.

With a custom objective LightGBM starts from a margin of 0 and its scikit-learn classifier
cannot turn margins into probabilities: use ``predict(X, raw_score=True)`` and the loss's
link (sigmoid, softmax).
"""

from __future__ import annotations

from typing import Optional, Union

import lightgbm as _lgb

from ._gbdt import BoostingLoss, describe, resolve_loss
from ._loss import Loss

__all__ = ["Metric", "Objective", "metric", "objective"]


class Objective:
    """A LightGBM custom objective (native and scikit-learn APIs); see :func:`objective`."""

    def __init__(self, loss: Union[str, Loss], *, hessian: Optional[str] = None,
                 hess_floor: float = 1e-6, **params):
        self._impl = BoostingLoss(resolve_loss(loss, "lightgbm"), params, hessian=hessian,
                                  hess_floor=hess_floor, library="lightgbm")
        self.loss = self._impl.loss
        self.__name__ = self.loss.name

    def __repr__(self) -> str:
        return describe("lightgbm objective", self.loss, self._impl.params)

    def __deepcopy__(self, memo):  # immutable; LightGBM deep-copies its params
        return self

    # Four parameters: LightGBM's scikit-learn wrapper passes (labels, preds, weight, group).
    def __call__(self, a, b, weight=None, group=None):
        if isinstance(b, _lgb.Dataset):  # native: (margins, Dataset)
            return self._impl.grad_hess(a, b.get_label(), b.get_weight())
        return self._impl.grad_hess(b, a, weight)


class Metric:
    """A LightGBM custom metric (native and scikit-learn APIs); see :func:`metric`."""

    def __init__(self, loss: Union[str, Loss], **params):
        self._impl = BoostingLoss(resolve_loss(loss, "lightgbm"), params, hessian=None,
                                  hess_floor=0.0, library="lightgbm")
        self.loss = self._impl.loss
        self.__name__ = self.loss.name

    def __repr__(self) -> str:
        return describe("lightgbm metric", self.loss, self._impl.params)

    def __deepcopy__(self, memo):  # immutable
        return self

    def __call__(self, a, b, weight=None, group=None):
        if isinstance(b, _lgb.Dataset):
            return self.__name__, self._impl.value(a, b.get_label(), b.get_weight()), False
        return self.__name__, self._impl.value(b, a, weight), False


def objective(loss: Union[str, Loss], *, hessian: Optional[str] = None, hess_floor: float = 1e-6,
              **params) -> Objective:
    """The custom objective of ``loss`` (a name or a Loss) with its parameters fixed."""
    return Objective(loss, hessian=hessian, hess_floor=hess_floor, **params)


def metric(loss: Union[str, Loss], **params) -> Metric:
    """The evaluation metric ``mean loss`` of ``loss`` with its parameters fixed."""
    return Metric(loss, **params)
