"""Figure style shared by the report pages: readable sizes, phase shading, one shared legend.

Every figure is a ``matplotlib.figure.Figure`` (no pyplot, headless), at least ``WIDTH_IN`` x
``DPI`` = 1430 px wide, fonts >= 9 pt, rendered to a PNG data URI by :func:`png`.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

DPI = 130
WIDTH_IN = 11.0
PHASE_COLORS = {
    "memorisation": "tab:orange",
    "circuit_formation": "tab:purple",
    "cleanup": "tab:green",
}
PHASE_LABELS = {
    "memorisation": "memorisation",
    "circuit_formation": "circuit formation",
    "cleanup": "clean-up",
}
FONT: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
}


def figure(n_panels: int = 1, height: float = 3.8, cols: int | None = None) -> tuple[Figure, Any]:
    """A ``WIDTH_IN``-wide figure with ``n_panels`` axes (``cols`` per row, default all)."""
    import matplotlib as mpl

    mpl.rcParams.update(FONT)  # type: ignore[arg-type]
    cols = cols or n_panels
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(WIDTH_IN, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, axes.flat[:n_panels]


def png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def shade(ax: Axes, phases: dict[str, list[int] | None] | None, grok: int | None = None) -> None:
    """Shade the measured phases (no legend entries: see :func:`phase_legend`)."""
    for name, span in (phases or {}).items():
        if span and span[1] > span[0]:
            ax.axvspan(span[0], span[1], color=PHASE_COLORS[name], alpha=0.10, lw=0)
    if grok is not None:
        ax.axvline(grok, color="black", ls=":", lw=1)


def phase_legend(fig: Figure, phases: dict[str, list[int] | None] | None, grok: Any) -> None:
    """One legend for the phase shading of every panel, above the figure."""
    handles: list[Any] = [
        Patch(color=PHASE_COLORS[n], alpha=0.25, label=f"{PHASE_LABELS[n]} {s[0]}-{s[1]}")
        for n, s in (phases or {}).items()
        if s
    ]
    if grok is not None:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="black", ls=":", label=f"val acc >= 99% at {grok}"))
    if handles:
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), frameon=False)


def x_axis(ax: Axes, xscale: str, xmax: float | None = None) -> None:
    ax.set_xlabel("epoch")
    if xscale == "log":
        ax.set_xscale("symlog", linthresh=1.0)
    elif xmax:
        ax.set_xlim(0, xmax)


def lnp_line(ax: Axes, p: int | None) -> None:
    """A horizontal reference at ln p (the loss of a uniform guess over p answers)."""
    if p:
        ax.axhline(math.log(p), color="gray", ls="--", lw=0.8)
        ax.annotate(
            f"ln {p}", (1.0, math.log(p)), xycoords=("axes fraction", "data"), fontsize=8,
            color="gray", ha="right", va="bottom",
        )  # fmt: skip


def lines(
    ax: Axes, x: Sequence[float] | np.ndarray, series: dict[str, Any], marker: str = ""
) -> None:
    for label, y in series.items():
        y = np.asarray(y, dtype=float)
        if np.isfinite(y).any():
            ax.plot(x, y, marker=marker, ms=3, label=label)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")


def positive_log_y(ax: Axes) -> None:
    """Log y when every plotted value is positive."""
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    ys = [y[np.isfinite(y)] for y in ys if len(y)]
    if ys and all(len(y) and (y > 0).all() for y in ys):
        ax.set_yscale("log")


def over_training(
    fig: Figure, axes: Any, phases: dict[str, list[int] | None] | None, grok: Any, xscale: str,
    xmax: float,
) -> str:  # fmt: skip
    """Finish a figure whose panels share the epoch axis: phase shading and the grok line on every
    panel, the x axis, the phase legend; returns the PNG data URI."""
    for ax in axes:
        shade(ax, phases, grok)
        x_axis(ax, xscale, xmax)
    phase_legend(fig, phases, grok)
    return png(fig)
