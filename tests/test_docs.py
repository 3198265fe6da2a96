"""The documentation's examples are tests.

Every ``>>>`` example in README.md and docs/losses.md runs as a doctest, one
test per file, and so do the docstring examples of the fastloss modules. The
README's quick start (a plain code block, too large for doctest output) is
run as a script.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = ("README.md", "docs/losses.md")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# Modules whose docstrings must hold at least one example.
MODULES_WITH_EXAMPLES = ("fastloss", "fastloss._weights")
# Integration modules and the optional package each needs (an extra of pyproject.toml).
OPTIONAL = {"fastloss.dask": "dask.array", "fastloss.xgboost": "xgboost",
            "fastloss.lightgbm": "lightgbm", "fastloss.torch": "torch"}


def fastloss_modules():
    """fastloss and its submodules, found in the source tree without importing
    anything (so that collecting this file needs no built package); __main__ is
    left out, importing it runs the CLI."""
    names = ["fastloss"]
    for info in pkgutil.iter_modules([str(ROOT / "python" / "fastloss")], prefix="fastloss."):
        if info.name != "fastloss.__main__":
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("relpath", DOC_FILES)
def test_markdown_examples(relpath):
    path = ROOT / relpath
    result = doctest.testfile(str(path), module_relative=False, optionflags=FLAGS,
                              encoding="utf-8")
    assert result.attempted > 0, f"no >>> examples found in {relpath}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {relpath}"


@pytest.mark.parametrize("name", fastloss_modules())
def test_module_docstring_examples(name):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
    if name in MODULES_WITH_EXAMPLES:
        assert result.attempted > 0, f"no docstring examples run in {name}"


def test_readme_quick_start_runs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match, "no python block under '## Quick start'"
    import fastloss

    # The quick start changes the thread count; put back what was set before.
    explicit = fastloss.show_config(mode="dicts")["threads"]["explicit"]
    code = compile(match.group(1), "README.md (quick start)", "exec")
    try:
        exec(code, {})  # noqa: S102 (the code is this repository's own README)
    finally:
        fastloss.set_num_threads(explicit)
