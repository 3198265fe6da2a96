"""Shared fixtures and parametrisation for the fastloss tests.

Fixtures whose values depend on the build (ISA paths, block size) are
parametrised in ``pytest_generate_tests`` so that fastloss is imported only
when a test that needs it is collected; the reference self-checks run
without a built package.

Parametrised fixture names:
  isa           every ISA path the CPU supports; the path is made active for
                the test and the previous one restored afterwards
  nthreads      1, 2, 7 (the count is set for the test with fl.threads)
  length        tail and block lengths: 0, 1, W-1, W, W+1 for W in 4, 8, 16
                and 32-bit lanes of 512-bit vectors, B-1, B, B+1 (B = the
                driver's block size) and serial_threshold + 1
  large_length  10**6 (kept out of the full cross product for speed)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys
import warnings

import numpy as np
import pytest

# Test modules are imported with --import-mode=importlib, which does not put
# this directory on sys.path; the reference module lives next to them.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

# Hypothesis reports a failing example through libcst, and importing libcst
# emits a DeprecationWarning with some mypy_extensions versions; under
# filterwarnings = error that turns a test failure into an INTERNALERROR.
# Import it once here with warnings off.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import libcst.metadata  # noqa: F401
    except ImportError:  # not installed: hypothesis copes
        pass

THREAD_COUNTS = (1, 2, 7)
# SIMD widths 4, 8 and 16 lanes (and 32 for completeness): W-1, W, W+1.
TAIL_LENGTHS = (0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33)
LARGE_LENGTH = 10**6


def _fastloss():
    import fastloss

    return fastloss


def config():
    return _fastloss().show_config(mode="dicts")


def block_lengths():
    cfg = config()
    block = int(cfg["block_size"])
    lengths = {block - 1, block, block + 1}
    threshold = cfg.get("serial_threshold")
    if isinstance(threshold, int) and 0 < threshold < LARGE_LENGTH:
        lengths.add(threshold + 1)
    # Two and a half blocks: several partial sums and a ragged last block.
    lengths.add(2 * block + block // 2)
    return sorted(n for n in lengths if 0 < n < LARGE_LENGTH and n not in TAIL_LENGTHS)


def supported_isas():
    """The SIMD paths the ISA-parametrized tests run: every one this CPU supports, or those
    named in FASTLOSS_TEST_ISAS (comma-separated; e.g. "emu512" when checking that test path
    alone, see tools/sanitize.sh --emu512)."""
    isas = list(_fastloss()._core.supported_isas())
    wanted = os.environ.get("FASTLOSS_TEST_ISAS", "").strip()
    if not wanted:
        return isas
    names = [w.strip() for w in wanted.split(",") if w.strip()]
    missing = [w for w in names if w not in isas]
    if missing:
        raise pytest.UsageError(
            f"FASTLOSS_TEST_ISAS names {missing}, which this build or CPU lacks (supported: {isas})")
    return names


def pytest_generate_tests(metafunc):
    names = metafunc.fixturenames
    if "isa" in names:
        metafunc.parametrize("isa", supported_isas(), indirect=True, ids=lambda s: f"isa={s}")
    if "nthreads" in names:
        metafunc.parametrize("nthreads", THREAD_COUNTS, indirect=True, ids=lambda n: f"t{n}")
    if "length" in names:
        lengths = list(TAIL_LENGTHS) + block_lengths()
        metafunc.parametrize("length", lengths, ids=lambda n: f"n{n}")
    if "large_length" in names:
        metafunc.parametrize("large_length", [LARGE_LENGTH], ids=lambda n: f"n{n}")


@pytest.fixture
def isa(request):
    """Make one ISA path active for the duration of a test."""
    fl = _fastloss()
    previous = fl._set_isa(request.param)
    try:
        yield request.param
    finally:
        fl._set_isa(previous)


@pytest.fixture
def nthreads(request):
    fl = _fastloss()
    with fl.threads(request.param):
        yield request.param


@pytest.fixture
def block_size():
    return int(config()["block_size"])


@pytest.fixture
def rng(request):
    # A seed per test id: reproducible, yet different data in each case.
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)


def regression_data(rng, shape, dtype=np.float64, scale=3.0, ties=True):
    """(pred, target) for regression losses.

    Residuals span both sides of huber's delta = 1; every seventh sample has
    target == pred so that sign(0) and the kink at r == 0 are exercised.
    """
    pred = rng.normal(0.0, scale, size=shape).astype(dtype)
    target = rng.normal(0.0, scale, size=shape).astype(dtype)
    if ties and pred.size:
        flat_p = pred.reshape(-1)
        flat_t = target.reshape(-1)
        flat_t[::7] = flat_p[::7]
    return pred, target


@pytest.fixture
def make_data(rng):
    """Factory: make_data(shape, dtype=float64, kind="regression") -> args."""

    def make(shape, dtype=np.float64, kind="regression", **kwargs):
        if kind == "regression":
            return regression_data(rng, shape, dtype, **kwargs)
        raise ValueError(f"unknown data kind {kind!r}")

    return make


@pytest.fixture
def make_weights(rng):
    def make(shape, dtype=np.float64):
        return rng.uniform(0.25, 2.0, size=shape).astype(dtype)

    return make


# <fenv.h> flag values per architecture (glibc).
_FE_FLAGS = {
    "x86_64": {"invalid": 0x01, "divbyzero": 0x04, "overflow": 0x08, "underflow": 0x10},
    "aarch64": {"invalid": 0x01, "divbyzero": 0x02, "overflow": 0x04, "underflow": 0x08},
}


@pytest.fixture
def fp_exceptions():
    """fp_exceptions(fn) -> set of IEEE exception flags fn() raised on this thread.

    NumPy reads these flags after its own loops, so a kernel that leaves
    "invalid" set on valid input surfaces as a spurious RuntimeWarning in the
    caller's NumPy code.
    """
    flags = _FE_FLAGS.get(platform.machine())
    path = ctypes.util.find_library("m")
    if flags is None or path is None:
        pytest.skip("needs glibc fenv on x86_64 or aarch64")
    libm = ctypes.CDLL(path)
    if not hasattr(libm, "fetestexcept"):
        pytest.skip("no fetestexcept")
    every = 0
    for bit in flags.values():
        every |= bit

    def raised(fn):
        libm.feclearexcept(every)
        fn()
        got = libm.fetestexcept(every)
        libm.feclearexcept(every)
        return {name for name, bit in flags.items() if got & bit}

    return raised
