"""Figures of the class-imbalance losses: ``fastloss plot focal|power``.

Every curve is computed by fastloss itself; matplotlib (the ``plot`` extra)
only draws them. It is imported when a figure is drawn, so fastloss never
needs it otherwise.

- ``focal``: loss against the probability of the true class, p_t, for the
  cross-entropy and the focal loss with several gamma (Figure 1 of Lin et
  al., "Focal Loss for Dense Object Detection", 2017).
- ``power``: the p^n trick. Left, the model's probability p^n against the
  logit z with the decision threshold p^n = 1/2, which lies at
  z = logit(2^(-1/n)) = -log(2^(1/n) - 1); right, the loss of a positive and
  of a negative sample against z.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np

__all__ = ["FIGURES", "draw_focal", "draw_power", "run", "threshold_logit"]

DEFAULT_GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)
DEFAULT_POWERS = (1.0, 2.0, 3.0, 4.0)
INSTALL_HINT = "pip install 'fastloss[plot]'"


def _figure(width: float, height: float):
    """A matplotlib Figure without pyplot (no global state, no GUI backend)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def threshold_logit(n: float) -> float:
    """The logit where p^n = 1/2: z = logit(2^(-1/n)) = -log(2^(1/n) - 1)."""
    return -math.log(math.expm1(math.log(2.0) / n)) + 0.0  # + 0.0: no "-0.00" for n = 1


def draw_focal(gammas: Sequence[float] = DEFAULT_GAMMAS):
    """Loss against p_t for the cross-entropy and the focal loss (alpha off)."""
    import fastloss as fl

    p_t = np.linspace(1e-3, 1.0 - 1e-6, 2000)
    z = np.log(p_t) - np.log1p(-p_t)  # logit of p_t, target 1: p_t = sigma(z)
    ones = np.ones_like(z)
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    ax.axvspan(0.6, 1.0, color="0.93", zorder=0)
    ax.text(0.8, 4.6, "well-classified\nexamples", ha="center", va="top", fontsize=9)
    ce = fl.sigmoid_cross_entropy(z, ones)
    ax.plot(p_t, ce, color="0.75", linewidth=5, label="cross-entropy", zorder=1)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for i, gamma in enumerate(gammas):
        loss = fl.sigmoid_focal(z, ones, gamma=gamma, alpha=None)
        label = f"focal, \u03b3 = {gamma:g}" + (" (= cross-entropy)" if gamma == 0 else "")
        ax.plot(p_t, loss, color=colours[i % len(colours)], linewidth=1.6,
                linestyle="--" if gamma == 0 else "-", label=label, zorder=2)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 5.0)
    ax.set_xlabel("probability of the true class, $p_t$")
    ax.set_ylabel("loss")
    ax.set_title("Focal loss $-(1 - p_t)^\\gamma \\log p_t$ (fastloss.sigmoid_focal, alpha=None)",
                 fontsize=10)
    ax.legend(loc="upper right", bbox_to_anchor=(1.0, 0.78), fontsize=9)
    return fig


def draw_power(powers: Sequence[float] = DEFAULT_POWERS):
    """p^n and its decision threshold against z; the loss of both classes."""
    import fastloss as fl

    z = np.linspace(-6.0, 8.0, 2000)
    ones, zeros = np.ones_like(z), np.zeros_like(z)
    fig = _figure(10.0, 4.2)
    left, right = fig.subplots(1, 2)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for i, n in enumerate(powers):
        colour = colours[i % len(colours)]
        if n == 1:
            pos = fl.sigmoid_cross_entropy(z, ones)
            neg = fl.sigmoid_cross_entropy(z, zeros)
        else:
            pos = fl.sigmoid_power_cross_entropy(z, ones, n=n)
            neg = fl.sigmoid_power_cross_entropy(z, zeros, n=n)
        prob = np.exp(-pos)  # the loss of a positive is -log p^n
        z_half = threshold_logit(n)
        left.plot(z, prob, color=colour, label=f"n = {n:g}: threshold z = {z_half:.2f}")
        left.axvline(z_half, color=colour, linestyle=":", linewidth=1)
        left.plot([0.0], [0.5 ** n], "o", color=colour, markersize=4)  # the start, z = 0
        right.plot(z, pos, color=colour, label=f"n = {n:g}, t = 1")
        right.plot(z, neg, color=colour, linestyle="--", label=f"n = {n:g}, t = 0")
    left.axhline(0.5, color="0.5", linewidth=0.8)
    left.set_xlabel("logit z")
    left.set_ylabel("model probability $p^n = \\sigma(z)^n$")
    left.set_title("$p^n$ moves the decision threshold $p^n > 1/2$\n"
                   "(dots: the start z = 0, where $p^n = 2^{-n}$)", fontsize=10)
    left.set_ylim(0.0, 1.0)
    left.legend(loc="upper left", fontsize=8)
    right.set_xlabel("logit z")
    right.set_ylabel("loss")
    right.set_ylim(0.0, 6.0)
    right.set_title("$-t \\log p^n - (1 - t) \\log(1 - p^n)$\n"
                    "(fastloss.sigmoid_power_cross_entropy)", fontsize=10)
    right.legend(loc="upper center", fontsize=8, ncol=2)
    return fig


FIGURES = {"focal": draw_focal, "power": draw_power}


def run(figure: str, output: str, *, dpi: int = 120) -> int:
    """Draw ``figure`` into ``output`` (format from the file name); return the exit status."""
    if figure not in FIGURES:
        raise ValueError(f"figure must be one of {sorted(FIGURES)}, got {figure!r}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"fastloss plot: matplotlib is not installed; install it with: {INSTALL_HINT}",
              file=sys.stderr)
        return 1
    fig = FIGURES[figure]()
    # A PNG without the "Software" entry does not change with the matplotlib version.
    metadata = {"Software": None} if str(output).lower().endswith(".png") else None
    fig.savefig(output, dpi=dpi, metadata=metadata)
    print(f"wrote {output}")
    return 0
