"""``fastloss plot focal|power``: figures drawn from fastloss's own values."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cli():
    from fastloss import cli

    return cli


@pytest.mark.parametrize("figure", ["focal", "power"])
def test_plot_writes_png(figure, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / f"{figure}.png"
    assert _cli().main(["plot", figure, "-o", str(out), "--dpi", "40"]) == 0
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 100 and height > 100
    assert str(out) in capsys.readouterr().out


def test_plot_default_output_name(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    assert _cli().main(["plot", "power", "--dpi", "30"]) == 0
    assert (tmp_path / "power.png").read_bytes().startswith(PNG_SIGNATURE)


def test_plot_without_matplotlib(tmp_path, monkeypatch, capsys):
    # A None entry in sys.modules makes "import matplotlib" raise ImportError.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "focal.png"
    status = _cli().main(["plot", "focal", "-o", str(out)])
    assert status != 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert "matplotlib" in lines[0] and "fastloss[plot]" in lines[0]
    assert captured.out == ""
    assert not out.exists()


def test_plot_rejects_unknown_figure(capsys):
    with pytest.raises(SystemExit) as info:
        _cli().main(["plot", "roc"])
    assert info.value.code != 0
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 3.7])
def test_threshold_logit(n):
    from fastloss import _plot

    z = _plot.threshold_logit(n)
    assert (1.0 / (1.0 + math.exp(-z))) ** n == pytest.approx(0.5, rel=1e-14)
    if n == 1.0:
        assert z == 0.0


def test_focal_figure_curves():
    # The gamma = 0 focal curve is the cross-entropy curve; larger gamma lies lower.
    pytest.importorskip("matplotlib")
    from fastloss import _plot

    fig = _plot.draw_focal()
    lines = fig.axes[0].get_lines()
    labels = [line.get_label() for line in lines]
    ce = lines[labels.index("cross-entropy")].get_ydata()
    focal = [line.get_ydata() for line in lines if line.get_label().startswith("focal")]
    assert len(focal) == len(_plot.DEFAULT_GAMMAS)
    np.testing.assert_allclose(focal[0], ce, rtol=1e-12)
    for lower, higher in zip(focal[1:], focal[:-1]):
        assert np.all(lower <= higher)
