"""fastloss: loss functions with gradients and Hessians over large NumPy arrays.

>>> import numpy as np, fastloss as fl
>>> float(fl.squared_error(np.array([1.0, 2.0]), np.array([0.0, 0.0]), reduction="mean"))
2.5
"""

from __future__ import annotations

from types import MappingProxyType

from . import _core
from ._config import (_apply_env_buffer_cache, _apply_env_isa, _apply_env_streaming_stores,
                      _set_isa, buffer_cache_info, get_num_threads, set_buffer_cache,
                      set_num_threads, set_streaming_stores, show_config, streaming_stores,
                      threads)
from ._binary import LOSSES as _BINARY
from ._binary import sigmoid_cross_entropy
from ._focal import LOSSES as _FOCAL
from ._focal import ROW_LOSSES as _FOCAL_ROWS
from ._focal import sigmoid_focal, sigmoid_power_cross_entropy, softmax_focal
from ._loss import Loss
from ._margin import LOSSES as _MARGIN
from ._margin import (crcnn_predict, crcnn_ranking, hinge, margin_ranking, multiclass_hinge,
                      multilabel_softmax_cross_entropy, squared_hinge)
from ._multiclass import LOSSES as _MULTICLASS
from ._multiclass import softmax_cross_entropy
from ._ranking import LOSSES as _RANKING
from ._ranking import pairwise_hinge, pairwise_logistic
from ._regression import LOSSES as _REGRESSION
from ._regression import absolute_error, huber, log_cosh, squared_error
from ._weights import ClassCounts, class_weight

__version__ = _core.__version__

_apply_env_isa()
_apply_env_buffer_cache()
_apply_env_streaming_stores()

losses = MappingProxyType({loss.name: loss for loss in
                           _REGRESSION + _BINARY + _FOCAL + _MULTICLASS + _FOCAL_ROWS +
                           _MARGIN + _RANKING})
"""Every registered loss, by name."""

__all__ = [
    "Loss", "losses", "show_config", "set_num_threads", "get_num_threads", "threads",
    "set_buffer_cache", "buffer_cache_info", "set_streaming_stores", "streaming_stores",
    "squared_error", "absolute_error", "huber", "log_cosh", "sigmoid_cross_entropy",
    "softmax_cross_entropy", "sigmoid_focal", "sigmoid_power_cross_entropy", "softmax_focal",
    "class_weight", "ClassCounts", "__version__",
    "hinge", "squared_hinge", "margin_ranking", "multiclass_hinge", "crcnn_ranking",
    "crcnn_predict", "multilabel_softmax_cross_entropy", "pairwise_logistic", "pairwise_hinge",
]
