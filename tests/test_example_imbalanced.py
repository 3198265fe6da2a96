"""examples/imbalanced.py runs and prints its table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "examples", "imbalanced.py")


def test_imbalanced_example_runs():
    pytest.importorskip("scipy")
    pytest.importorskip("sklearn")
    # A small run: the default (5 data sets of 60,000) is what the README shows.
    result = subprocess.run(
        [sys.executable, EXAMPLE, "--repeats", "1", "--samples", "20000"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "| loss | average precision | F1 at p = 0.5 | iterations | evaluations |" in lines
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| loss")]
    names = [row.split("|")[1].strip() for row in rows]
    assert names == ["cross-entropy", "balanced cross-entropy", "focal, gamma=2, alpha=0.25",
                     "p^n, n=2", "p^n, n=3", "p^n, n=4"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        ap = float(cells[1].split()[0])
        assert 0.0 < ap <= 1.0
        assert float(cells[3]) >= 1
