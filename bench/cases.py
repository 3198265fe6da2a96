"""The benchmark's case table: which losses, with which inputs and parameters.

One row per loss.  A row says how to make the inputs of a given size and
dtype and which keyword parameters the loss takes; everything else (the
operations, the peers, the byte counts) is derived from it.  Adding a loss to
the benchmark is one row here plus, for each peer that has it, one entry in
that peer's formula table in ``peers.py``; a peer without an entry is skipped
for that loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# The timed operations, as fastloss spells them:
#   value          loss(pred, target, reduction="mean")          -> float64
#   value_and_grad loss.value_and_grad(..., reduction="mean")    -> (float64, grad)
#   grad_hess      loss.grad_hess(pred, target)                  -> (grad, hess)
#                  (reduction "none": the per-sample gradient and diagonal Hessian,
#                  what a gradient-boosting objective consumes)
OPS = ("value", "value_and_grad", "grad_hess")

# How many arrays of pred's shape each operation writes.
OUTPUTS_PER_OP = {"value": 0, "value_and_grad": 1, "grad_hess": 2}


def _regression_inputs(rng: np.random.Generator, n: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    # Standard normal prediction and target: the residual is N(0, 2), so
    # huber (delta=1) takes both branches about half of the time each and
    # absolute_error never sees a tie.
    pred = rng.standard_normal(n, dtype=dtype)
    target = rng.standard_normal(n, dtype=dtype)
    return pred, target


@dataclass(frozen=True)
class LossCase:
    name: str                                   # the name in fastloss.losses
    make_inputs: Callable[[np.random.Generator, int, np.dtype], tuple[np.ndarray, ...]]
    params: dict = field(default_factory=dict)  # loss keywords, passed to fastloss and peers
    ops: tuple[str, ...] = OPS
    family: str = "regression"                  # input layout: regression/binary elementwise, multiclass rows


CASES: dict[str, LossCase] = {
    c.name: c
    for c in (
        LossCase("squared_error", _regression_inputs),
        LossCase("absolute_error", _regression_inputs),
        LossCase("huber", _regression_inputs, params={"delta": 1.0}),
        LossCase("log_cosh", _regression_inputs),
        # Later rows, each with its input maker (e.g. _binary_inputs: normal
        # logits and 0/1 targets; _multiclass_inputs: logits [N, K] and integer
        # class indices [N]):
        # LossCase("sigmoid_cross_entropy", _binary_inputs, family="binary"),
        # LossCase("sigmoid_focal", _binary_inputs, {"gamma": 2.0, "alpha": 0.25},
        #          family="binary"),
        # LossCase("hinge", _binary_inputs, family="binary"),
        # LossCase("softmax_cross_entropy", _multiclass_inputs, family="multiclass"),
    )
}


def required_bytes(op: str, inputs: tuple[np.ndarray, ...]) -> tuple[int, int]:
    """(bytes read, bytes written) that the operation cannot avoid.

    Every input is read once; each output array (the gradient, the Hessian)
    has pred's size and is written once.  The reduced value is a scalar.
    """
    read = sum(a.nbytes for a in inputs)
    written = OUTPUTS_PER_OP[op] * inputs[0].nbytes
    return read, written


def bandwidth_reference(op: str, inputs: tuple[np.ndarray, ...]) -> str:
    """Name of the measured bandwidth that has this operation's access pattern.

    value          2 reads          -> "read2"
    value_and_grad 2 reads, 1 write -> "triad"
    grad_hess      2 reads, 2 writes-> "copy": no stream kernel does exactly
                   2R2W; it is two copies' worth of traffic with copy's 1:1
                   read:write ratio, so copy's GB/s is the estimate used.
    """
    read, written = required_bytes(op, inputs)
    if written == 0:
        return "read2" if len(inputs) >= 2 else "read"
    return "triad" if read >= 1.5 * written else "copy"
