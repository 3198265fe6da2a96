"""Regression losses: (pred, target) elementwise. Formulas in docs/losses.md."""

from __future__ import annotations

from . import _core
from ._loss import Loss, finite_param, make_parser

_IDS = {name: i for i, name in enumerate(_core.elementwise_losses)}


def _no_params(name):
    return make_parser(name, {}, {})


squared_error = Loss(
    "squared_error", family="regression", kernel_id=_IDS["squared_error"], params={},
    parse=_no_params("squared_error"), has_fisher=True,
    formula="(y - f)^2; grad 2 (f - y); hess 2",
    doc="""Squared error (y - f)^2 of predictions f against targets y.

Gradient 2 (f - y), Hessian 2 (every policy). Same as PyTorch's MSELoss; twice
scikit-learn's HalfSquaredError.""")

absolute_error = Loss(
    "absolute_error", family="regression", kernel_id=_IDS["absolute_error"], params={},
    parse=_no_params("absolute_error"), has_fisher=True,
    formula="|f - y|; grad sign(f - y) (0 at f == y); hess 0 (fisher: 1)",
    doc="""Absolute error |f - y|.

Gradient sign(f - y), 0 where f == y (PyTorch's L1Loss subgradient). The exact Hessian
is 0; hessian="fisher" gives 1 (the Laplace location's Fisher information, the constant
XGBoost's reg:absoluteerror uses) and hessian="clip" gives hess_floor.""")

huber = Loss(
    "huber", family="regression", kernel_id=_IDS["huber"], params={"delta": 1.0},
    parse=make_parser("huber", {"delta": lambda v: finite_param(v, "delta", low=0.0, low_open=True)},
                      {"delta": 1.0}),
    has_fisher=False,
    formula="r = f - y: r^2/2 if |r| <= delta else delta (|r| - delta/2)",
    doc="""Huber loss with threshold delta > 0 (PyTorch's HuberLoss convention).

r = f - y: r^2/2 where |r| <= delta, delta (|r| - delta/2) beyond. Gradient r or
delta sign(r); Hessian 1 inside, 0 outside (no Fisher Hessian).""")

log_cosh = Loss(
    "log_cosh", family="regression", kernel_id=_IDS["log_cosh"], params={},
    parse=_no_params("log_cosh"), has_fisher=True,
    formula="log(cosh(f - y)); grad tanh(f - y); hess sech^2(f - y) (fisher: 1/2)",
    doc="""Log-cosh loss log(cosh(f - y)), evaluated without overflow or cancellation.

Gradient tanh(f - y), Hessian sech^2(f - y); hessian="fisher" gives 1/2.""")

LOSSES = [squared_error, absolute_error, huber, log_cosh]
