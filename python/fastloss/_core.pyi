"""Type stubs for the compiled core (internal; use the fastloss package)."""

from typing import Optional, Sequence, Tuple

import numpy as np

__version__: str
block_size: int
serial_threshold: int
compiler: str
elementwise_losses: Tuple[str, ...]
rowwise_losses: Tuple[str, ...]
pairwise_losses: Tuple[str, ...]
pair_block: int

def compiled_isas() -> list[str]: ...
def supported_isas() -> list[str]: ...
def active_isa() -> str: ...
def set_isa(name: str) -> str: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def explicit_num_threads() -> int: ...
def set_buffer_cache(max_bytes: int) -> int: ...
def buffer_cache_info() -> dict[str, int]: ...
def empty(shape: list[int], f32: bool) -> np.ndarray: ...
def set_stream_min_bytes(n: int) -> int: ...
def stream_min_bytes() -> int: ...
def streaming_stores_available() -> bool: ...
stream_min_bytes_default: int
def openmp_enabled() -> bool: ...
def openmp_version() -> int: ...
def omp_max_threads() -> int: ...
def _set_serial_threshold(n: int) -> None: ...
def _serial_threshold() -> int: ...
def _workers_peak(reset: bool = ...) -> int: ...
def _forked_child_serial() -> bool: ...
def elementwise(
    loss: int,
    pred: object,
    target: object,
    sample_weight: object,
    aux: object,
    aux_name: str,
    factor_active: bool,
    params: Sequence[float],
    reduction: int,
    want: int,
    out: Optional[np.ndarray],
    grad_out: Optional[np.ndarray],
    grad_name: str,
    hess_out: Optional[np.ndarray],
    hess_policy: int,
    hess_floor: float,
    nan_policy: int,
    pred_name: str = ...,
    target_name: str = ...,
) -> Tuple[object, Optional[np.ndarray], Optional[np.ndarray]]: ...
def rowwise(
    loss: int,
    logits: object,
    target: object,
    sample_weight: object,
    class_weight: Optional[np.ndarray],
    ignore_index: Optional[int],
    params: Sequence[float],
    reduction: int,
    want: int,
    out: Optional[np.ndarray],
    grad_out: Optional[np.ndarray],
    grad_name: str,
    hess_out: Optional[np.ndarray],
    hess_policy: int,
    hess_floor: float,
    hess_factor: float,
    nan_policy: int,
    class_aux: Optional[np.ndarray] = ...,
    class_aux_name: str = ...,
    logits_name: str = ...,
) -> Tuple[object, Optional[np.ndarray], Optional[np.ndarray]]: ...
def pairwise(
    loss: int,
    scores: np.ndarray,
    relevance: np.ndarray,
    offsets: np.ndarray,
    order: Optional[np.ndarray],
    group_weight: Optional[np.ndarray],
    params: Sequence[float],
    mode: int,
    value_per_doc: bool,
    out: Optional[np.ndarray],
    grad_out: Optional[np.ndarray],
    hess_out: Optional[np.ndarray],
    gscale: float,
    hess_policy: int,
    hess_floor: float,
    omit_nan: bool,
) -> float: ...
def vecmath(name: str, x: np.ndarray, isa: str) -> np.ndarray: ...
def stream(kind: str, a: np.ndarray, b: Optional[np.ndarray] = ..., out: Optional[np.ndarray] = ...) -> float: ...
