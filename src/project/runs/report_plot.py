"""Figure style shared by the report pages: readable sizes, marks over epochs, one shared legend.

Every figure is a ``matplotlib.figure.Figure`` (no pyplot, headless), at least ``WIDTH_IN`` x
``DPI`` = 1430 px wide, fonts >= 9 pt, rendered to a PNG data URI by :func:`png`.

Figures over epochs carry the same :class:`Marks`: a dotted line at the epoch the monitored metric
reached its threshold, and shaded spans a task's report section may add (with their legend labels,
colours and a caption saying what they are).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

DPI = 130
WIDTH_IN = 11.0
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


@dataclass
class Marks:
    """What every figure over epochs marks. ``spans``: name -> ``[start, end]`` epochs (None: not
    placed), drawn shaded in ``colors[name]`` and listed in the legend as ``labels[name]``;
    ``caption`` says what they are (for figure captions; empty when there are none). ``at``: an
    epoch drawn as a dotted line, ``at_label`` its legend entry."""

    spans: dict[str, list[int] | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    colors: dict[str, str] = field(default_factory=dict)
    caption: str = ""
    at: int | None = None
    at_label: str = ""

    @property
    def shaded(self) -> bool:
        """Whether any span is drawn."""
        return any(span and span[1] > span[0] for span in self.spans.values())

    def describe(self) -> str:
        """The caption's sentence about the marks ("" when nothing is marked)."""
        parts = []
        if self.shaded and self.caption:
            parts.append(f"shading = {self.caption}")
        if self.at is not None:
            parts.append(f"dotted: {self.at_label or f'epoch {self.at}'}")
        return "; ".join(parts)


def shade(ax: Axes, marks: Marks | None) -> None:
    """Shade the spans and draw the dotted line (no legend entries: see :func:`legend`)."""
    if marks is None:
        return
    for name, span in marks.spans.items():
        if span and span[1] > span[0]:
            ax.axvspan(span[0], span[1], color=marks.colors.get(name, "tab:gray"), alpha=0.10, lw=0)
    if marks.at is not None:
        ax.axvline(marks.at, color="black", ls=":", lw=1)


def legend(fig: Figure, marks: Marks | None) -> None:
    """One legend for the marks of every panel, above the figure."""
    if marks is None:
        return
    handles: list[Any] = [
        Patch(color=marks.colors.get(n, "tab:gray"), alpha=0.25,
              label=f"{marks.labels.get(n, n)} {s[0]}-{s[1]}")
        for n, s in marks.spans.items()
        if s
    ]  # fmt: skip
    if marks.at is not None:
        from matplotlib.lines import Line2D

        label = marks.at_label or f"epoch {marks.at}"
        handles.append(Line2D([], [], color="black", ls=":", label=label))
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


def over_training(fig: Figure, axes: Any, marks: Marks | None, xscale: str, xmax: float) -> str:
    """Finish a figure whose panels share the epoch axis: the marks on every panel, the x axis,
    one legend of the marks; returns the PNG data URI."""
    for ax in axes:
        shade(ax, marks)
        x_axis(ax, xscale, xmax)
    legend(fig, marks)
    return png(fig)
