"""The README's integration examples run (except the one marked long-running), each when the
packages it imports are installed."""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def blocks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Integrations", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert found, "no python examples under '## Integrations'"
    return found


def modules(code):
    names = set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_][\w]*)", code, flags=re.MULTILINE))
    return sorted(names - {"fastloss", "numpy"})


@pytest.mark.parametrize("index", range(len(blocks())))
def test_readme_integration_example(index, tmp_path, monkeypatch):
    code = blocks()[index]
    if code.lstrip().startswith("# long-running"):
        pytest.skip("long-running example")
    for name in modules(code):
        pytest.importorskip(name)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = contextlib.nullcontext()
    else:
        # One OpenMP thread for the boosting libraries: the examples are tiny, and several
        # OpenMP runtimes spinning on 2 shared cores cost minutes.
        limits = threadpool_limits(limits=1, user_api="openmp")
    with warnings.catch_warnings(), limits:
        # A LocalCluster started with its defaults reports ports and its dashboard.
        warnings.simplefilter("ignore", UserWarning)
        exec(compile(code, f"README.md:integrations[{index}]", "exec"), namespace)
