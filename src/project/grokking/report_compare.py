"""The grokking plugin's part of the comparison page (``ModularDataModule.compare_sections``): the
live progress measures (progress.jsonl) of every modular run overlaid, and each run's phases
placed from its metric history and live records (no snapshots needed)."""

from __future__ import annotations

import pandas as pd

from project.grokking.report_fourier import is_modular
from project.grokking.report_phases import (
    PHASE_LABELS,
    acc_epochs,
    detect_phases,
    phase_measures,
    with_sq_sum,
)
from project.runs import report_plot as rp
from project.runs.report_generic import CompareContext, Section

TITLE = "Progress measures (live, progress.jsonl)"
MEASURES = [
    ("restricted_loss", "Restricted loss (live keys)", True),
    ("excluded_loss", "Excluded loss (live keys)", True),
    ("logit_weights_gini", "Gini of W_L", False),
    ("weight_sq_sum", "Total sum of squared weights", False),
]


def compare_sections(ctx: CompareContext) -> list[Section]:
    """Per modular run: its phases (table rows, ``phases`` in compare.json); one figure of the
    live measures of the runs that recorded them."""
    modular = [i for i, run in enumerate(ctx.runs) if is_modular(run)]
    for i in modular:
        run, df, name = ctx.runs[i], ctx.curves[i], ctx.labels[i]
        measures, _ = phase_measures(run.progress, pd.DataFrame(), df)
        memorised, grok = acc_epochs(run.reached, df)
        found = detect_phases(measures, grok, memorised) if len(measures) else None
        phases = found["phases"] if found else None
        why = found["not_placed"] if found else {}
        for key, span in (phases or {}).items():
            cell = f"{span[0]}-{span[1]}" if span else why.get(key, "-").split(":")[0]
            ctx.table[name][f"phase: {PHASE_LABELS[key]}"] = cell
        ctx.data["runs"][i]["phases"] = phases
    progress = [with_sq_sum(ctx.runs[i].progress) for i in modular]
    names = [ctx.labels[i] for i in modular]
    present = [m for m in MEASURES if any(m[0] in p for p in progress)]
    if not present:
        ctx.note(TITLE, "no run recorded live progress measures (progress.jsonl)")
        return []
    fig, axes = rp.figure(len(present), height=3.6, cols=2)
    for ax, (col, title, logy) in zip(axes, present, strict=True):
        for name, prog in zip(names, progress, strict=True):
            if col in prog:
                ax.plot(prog["epoch"], prog[col], label=name)
        if logy:
            rp.positive_log_y(ax)
        ax.set_title(title)
        rp.x_axis(ax, "linear", ctx.xmax)
    axes[0].legend(fontsize=7, loc="best")
    caption = ("Live measures use each run's own key-frequency rule (see its records); a run's "
               "own report recomputes them with its final keys.")  # fmt: skip
    return [(TITLE, rp.png(fig), caption)]
