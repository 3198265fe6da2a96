"""More than 2^31 elements: 64-bit indexing in the driver, the gather and the reductions.

One uint8 target of 2^31 + 17 elements (2 GiB) against stride-0 predictions: nothing else
is allocated at full size. A few marked positions, some beyond 2^31, hold other values; the
sums have closed forms from the values of single elements.
"""

from __future__ import annotations

import fastloss as fl
import numpy as np
import pytest

N = 2**31 + 17  # = 5 x 429496733
MARKS = {5: 1, 2**31 - 1: 1, 2**31 + 3: 1, N - 1: 1}  # position -> target value

pytestmark = pytest.mark.slow


def available_bytes():
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


@pytest.fixture(scope="module")
def target():
    avail = available_bytes()
    if avail is not None and avail < 4 * 2**30:
        pytest.skip(f"needs about 3 GiB of free memory, {avail / 2**30:.1f} GiB available")
    t = np.zeros(N, dtype=np.uint8)
    for pos, v in MARKS.items():
        t[pos] = v
    yield t
    del t


def one(loss, p, t, **kw):
    """The loss of one element, as fastloss computes it (float64)."""
    return float(loss(np.float64(p), np.float64(t), **kw))


@pytest.mark.parametrize("name", ["squared_error", "sigmoid_cross_entropy"])
def test_sum_and_mean_over_2_31_plus_17(target, name):
    loss = fl.losses[name]
    p = 0.75
    l0, l1 = one(loss, p, 0.0), one(loss, p, 1.0)
    m = len(MARKS)
    want = (N - m) * l0 + m * l1
    got = loss(np.float64(p), target, reduction="sum")
    assert got == pytest.approx(want, rel=1e-12)


def test_exact_sum_counts_every_mark(target):
    # (0 - t)^2 is 0 except at the marks: the sum is exact, and a mark missed or counted
    # twice (a 32-bit index wrapping) changes it.
    got = fl.squared_error(0.0, target, reduction="sum")
    assert got == float(len(MARKS))
    # A stride-0 weight of 2 and a mean over N.
    w = np.broadcast_to(np.float32(2.0), (N,))
    assert fl.squared_error(np.float32(0.0), target, sample_weight=w, reduction="sum") == \
        2.0 * len(MARKS)
    assert fl.squared_error(0.0, target, reduction="mean") == len(MARKS) / N


def test_two_dimensional_view_with_broadcast_rows(target):
    # (5, N / 5) with one prediction per row: the multi-dimensional walk over > 2^31.
    t2 = target.reshape(5, N // 5)
    pred = np.arange(5.0).reshape(5, 1)
    cols = N // 5
    want = 0.0
    for r in range(5):
        marks_in_row = [v for pos, v in MARKS.items() if pos // cols == r]
        want += (cols - len(marks_in_row)) * r * r + sum((r - v) ** 2 for v in marks_in_row)
    assert fl.squared_error(pred, t2, reduction="sum") == want
    # The transposed view: strides beyond 2^31 bytes on the inner axis.
    assert fl.squared_error(pred.T, t2.T, reduction="sum") == want
