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

Pairwise ranking losses (``pairwise_logistic``, ``pairwise_hinge``) read the query groups
from the Dataset (``group=`` sizes) or, in the scikit-learn API, from the ``group`` that
``LGBMRanker.fit(X, y, group=...)`` passes; the objective returns each document's gradient and
Hessian of the summed pair losses, the metric the weighted mean loss over groups. LightGBM's
weights are one per document, fastloss's ranking weights one per group: **decision**, the
documents of a group must share one weight, which is the group's (weights that differ inside a
group raise ValueError: scaling each document's pair gradients by its own weight, as
LightGBM's lambdarank does, is not the gradient of a weighted loss). Groups without documents
are left out, so they count in no mean. ``pairwise_hinge``'s exact Hessian is 0: every
document then gets ``hess_floor``, so choose a floor that passes LightGBM's
``min_sum_hessian_in_leaf`` (e.g. ``hess_floor=1.0``, a gradient step).

>>> train = lightgbm.Dataset(X, relevance, group=group_sizes)             # doctest: +SKIP
>>> params = {"objective": objective("pairwise_logistic"), "verbose": -1}  # doctest: +SKIP
>>> booster = lightgbm.train(params, train, 50)                            # doctest: +SKIP
"""

from __future__ import annotations

from typing import Optional, Union

import lightgbm as _lgb
import numpy as np

from ._gbdt import BoostingLoss, describe, group_weight_from_documents, resolve_loss
from ._loss import Loss
from ._ranking import group_offsets

__all__ = ["Metric", "Objective", "metric", "objective"]


def _inputs(impl: BoostingLoss, preds, labels, weight, group):
    """(preds, labels, weight, group sizes) for BoostingLoss: a pairwise loss gets the
    non-empty groups and one weight per group; the others their arguments unchanged."""
    if not impl.ranking:
        return preds, labels, weight, None
    if group is None:
        raise ValueError(f"{impl.loss.name} needs the query groups: build the Dataset with "
                         "group= (native API) or fit LGBMRanker with group=")
    if np.ndim(preds) != 1:
        raise ValueError(f"{impl.loss.name} needs one score per document; got margins of "
                         f"shape {np.shape(preds)} (do not set num_class)")
    # The loss's own checks of group sizes (dtype, shape, >= 0, their sum).
    offsets, _ = group_offsets(np.size(preds), group=group)
    sizes = np.diff(offsets)
    sizes = sizes[sizes > 0]
    return preds, labels, group_weight_from_documents(weight, sizes, "LightGBM"), sizes


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
            return self._impl.grad_hess(*_inputs(self._impl, a, b.get_label(), b.get_weight(),
                                                 b.get_group()))
        return self._impl.grad_hess(*_inputs(self._impl, b, a, weight, group))


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
            value = self._impl.value(*_inputs(self._impl, a, b.get_label(), b.get_weight(),
                                              b.get_group()))
            return self.__name__, value, False
        return self.__name__, self._impl.value(*_inputs(self._impl, b, a, weight, group)), False


def objective(loss: Union[str, Loss], *, hessian: Optional[str] = None, hess_floor: float = 1e-6,
              **params) -> Objective:
    """The custom objective of ``loss`` (a name or a Loss) with its parameters fixed."""
    return Objective(loss, hessian=hessian, hess_floor=hess_floor, **params)


def metric(loss: Union[str, Loss], **params) -> Metric:
    """The evaluation metric ``mean loss`` of ``loss`` with its parameters fixed."""
    return Metric(loss, **params)
