"""Threads, ISA choice and the build report (show_config)."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Iterator, Optional

from . import _core

__all__ = ["set_num_threads", "get_num_threads", "threads", "show_config", "set_buffer_cache",
           "buffer_cache_info", "set_streaming_stores", "streaming_stores"]


def _check_threads(n) -> int:
    if n is None:
        return 0
    if isinstance(n, bool) or not isinstance(n, int) and not hasattr(n, "__index__"):
        raise TypeError(f"n must be an int or None, got {type(n).__name__}")
    n = int(n.__index__()) if not isinstance(n, int) else n
    if n < 1:
        raise ValueError(f"n must be >= 1 (or None for the default), got {n}")
    return n


def set_num_threads(n: Optional[int]) -> None:
    """Use `n` threads in every call from now on; ``None`` restores the default.

    The default is OpenMP's (``omp_get_max_threads()`` of the calling thread), which
    ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` set. An explicit count
    takes precedence over both.
    """
    _core.set_num_threads(_check_threads(n))


def get_num_threads() -> int:
    """The number of threads a call would use now (inputs below a size threshold run on one)."""
    return _core.get_num_threads()


@contextlib.contextmanager
def threads(n: Optional[int]) -> Iterator[None]:
    """Context manager: ``with fastloss.threads(4): ...`` (process-wide while it is active)."""
    value = _check_threads(n)
    previous = _core.explicit_num_threads()
    _core.set_num_threads(value)
    try:
        yield
    finally:
        _core.set_num_threads(previous)


def set_buffer_cache(max_bytes: int) -> int:
    """Keep up to ``max_bytes`` of released output buffers for reuse (0 turns the cache off);
    returns the previous bound. Default 256 MiB, or ``FASTLOSS_BUFFER_CACHE`` (bytes, or with
    a K/M/G suffix) at import.

    Outputs of 4 MiB or more that fastloss allocates (those of every loss) come from this
    cache: memory new from the
    operating system is zeroed page by page when first written, which costs a memory-bound
    loss about half again its own time; a buffer released by an earlier result is already
    mapped. Buffers are only ever reused after every array viewing them is gone.
    """
    if isinstance(max_bytes, bool) or not hasattr(max_bytes, "__index__"):
        raise TypeError(f"max_bytes must be an int, got {type(max_bytes).__name__}")
    n = int(max_bytes.__index__())
    if n < 0:
        raise ValueError(f"max_bytes must be >= 0, got {n}")
    return int(_core.set_buffer_cache(n))


def buffer_cache_info() -> dict:
    """The output-buffer cache: ``max_bytes`` (its bound), ``cached_bytes`` and ``buffers``
    (what it holds now) and ``min_bytes`` (the smallest output served from it)."""
    return {k: int(v) for k, v in _core.buffer_cache_info().items()}


_NEVER = (1 << 63) - 1  # the core's "never" bound for streaming stores


def set_streaming_stores(min_bytes: Optional[int]) -> Optional[int]:
    """Write the array outputs of calls whose outputs total ``min_bytes`` or more with
    non-temporal (streaming) stores; ``None`` turns them off, ``0`` uses them for every call.
    Returns the previous bound (``None`` for off). Default 16 MiB on x86-64 (off elsewhere),
    or ``FASTLOSS_STREAMING_STORES`` (bytes with an optional K/M/G suffix, or ``off``) at
    import.

    A plain store reads each cache line of the output before overwriting it; a streaming
    store does not, which saves a third of the memory traffic of a loss that reads two
    arrays and writes one, and leaves the caches to the inputs. Results are bit-identical
    either way. Outputs smaller than the caches are better left cached for the next
    operation, hence the bound. Under a nonzero bound, a softmax gradient alone in rows of
    fewer than 768 classes keeps plain stores (measured faster there: docs/design.md).
    """
    if min_bytes is None:
        n = _NEVER
    else:
        if isinstance(min_bytes, bool) or not hasattr(min_bytes, "__index__"):
            raise TypeError(f"min_bytes must be an int or None, got {type(min_bytes).__name__}")
        n = int(min_bytes.__index__())
        if n < 0:
            raise ValueError(f"min_bytes must be >= 0 or None, got {n}")
    previous = int(_core.set_stream_min_bytes(n))
    return None if previous == _NEVER else previous


def streaming_stores() -> Optional[int]:
    """The bound in force (bytes), or ``None`` when streaming stores are off."""
    n = int(_core.stream_min_bytes())
    return None if n == _NEVER else n


def _parse_bytes(text: str, name: str = "FASTLOSS_BUFFER_CACHE") -> int:
    t = text.strip().upper().removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    digits = t[:-1] if scale > 1 else t
    if not digits.isdigit():
        raise ValueError(f"{name}={text!r}: expected bytes, e.g. 0, 268435456 or 256M")
    return int(digits) * scale


def _apply_env_buffer_cache() -> None:
    text = os.environ.get("FASTLOSS_BUFFER_CACHE")
    if text:
        _core.set_buffer_cache(_parse_bytes(text))


def _apply_env_streaming_stores() -> None:
    text = os.environ.get("FASTLOSS_STREAMING_STORES")
    if text:
        if text.strip().lower() in ("off", "none", "never"):
            _core.set_stream_min_bytes(_NEVER)
        else:
            _core.set_stream_min_bytes(_parse_bytes(text, "FASTLOSS_STREAMING_STORES"))


def _openmp_version_name(v: int) -> str:
    # _OPENMP dates of the OpenMP specifications (openmp.org release dates).
    names = {200505: "2.5", 200805: "3.0", 201107: "3.1", 201307: "4.0", 201511: "4.5",
             201811: "5.0", 202011: "5.1", 202111: "5.2", 202411: "6.0"}
    if v == 0:
        return "none (serial build)"
    return names.get(v, str(v))


def _config_dict() -> dict:
    from . import __version__, losses

    return {
        "version": __version__,
        "python": platform.python_version(),
        "compiler": _core.compiler,
        "machine": platform.machine(),
        "isa": {
            "compiled": list(_core.compiled_isas()),
            "supported": list(_core.supported_isas()),
            "active": _core.active_isa(),
            "forced_by_env": os.environ.get("FASTLOSS_ISA"),
        },
        "openmp": {
            "enabled": bool(_core.openmp_enabled()),
            "version": _openmp_version_name(_core.openmp_version()),
        },
        "threads": {
            "num_threads": _core.get_num_threads(),
            "explicit": _core.explicit_num_threads() or None,
            "omp_max_threads": _core.omp_max_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "cpu_count": os.cpu_count(),
        },
        "buffer_cache": buffer_cache_info(),
        "streaming_stores": streaming_stores(),
        "block_size": int(_core.block_size),
        "serial_threshold": int(_core.serial_threshold),
        "losses": sorted(losses),
    }


def show_config(mode: str = "stdout"):
    """Print the build and run-time configuration, or return it with ``mode="dicts"``."""
    cfg = _config_dict()
    if mode == "dicts":
        return cfg
    if mode != "stdout":
        raise ValueError(f"mode must be 'stdout' or 'dicts'; got {mode!r}")
    isa, omp, th = cfg["isa"], cfg["openmp"], cfg["threads"]
    lines = [
        f"fastloss {cfg['version']} (python {cfg['python']}, {cfg['machine']}, {cfg['compiler']})",
        f"  ISA compiled : {', '.join(isa['compiled'])}",
        f"  ISA supported: {', '.join(isa['supported'])}",
        f"  ISA active   : {isa['active']}"
        + (f" (FASTLOSS_ISA={isa['forced_by_env']})" if isa["forced_by_env"] else ""),
        f"  OpenMP       : {'enabled, version ' + omp['version'] if omp['enabled'] else omp['version']}",
        f"  threads      : {th['num_threads']}"
        + (" (set by set_num_threads)" if th["explicit"] else " (OpenMP default)")
        + f", cpu_count {th['cpu_count']}",
        f"  block size   : {cfg['block_size']} elements; serial below {cfg['serial_threshold']}",
        f"  buffer cache : up to {cfg['buffer_cache']['max_bytes'] >> 20} MiB of released outputs"
        f" of {cfg['buffer_cache']['min_bytes'] >> 20} MiB or more, holding "
        f"{cfg['buffer_cache']['cached_bytes'] >> 20} MiB",
        "  stream stores: "
        + ("off" if cfg["streaming_stores"] is None
           else f"outputs of {cfg['streaming_stores'] / 2**20:g} MiB or more"),
        f"  losses       : {', '.join(cfg['losses'])}",
    ]
    print("\n".join(lines))
    return None


def _set_isa(name: str) -> str:
    """Switch the active kernels (for tests and benchmarks); returns the previous ISA."""
    return _core.set_isa(name)


def _apply_env_isa() -> None:
    name = os.environ.get("FASTLOSS_ISA")
    if name:
        try:
            _core.set_isa(name.strip().lower())
        except ValueError as exc:
            raise ValueError(f"FASTLOSS_ISA={name!r}: {exc}") from None
