"""The induction task's report section (``InductionDataModule.report_sections``): previous-token,
duplicate-token and induction head scores on validation examples, and the L0 -> L1
mean-ablation table (causal evidence of K-composition)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from project.interp.ablation import model_layers
from project.runs import report_plot as rp
from project.runs.report_generic import ReportContext, Section, examples, frame_json

TITLE = "Induction head scores"


def report_sections(ctx: ReportContext) -> list[Section]:
    """The head-score section (needs the final model); adds ``induction_scores`` and
    ``induction_ablation`` to report.json."""
    if ctx.model is None:
        ctx.needs_weights.append("induction head scores and ablations")
        ctx.note(TITLE, "needs checkpoints: none in this run dir")
        return []
    if not hasattr(ctx.model, "run_with_cache"):
        ctx.note(TITLE, "the net has no HookPoints (run_with_cache)")
        return []
    section, scores, causal = induction_section(ctx.model, ctx.dm)
    if section is None:
        ctx.note(TITLE, "project.interp.induction could not be imported")
        return []
    ctx.data["induction_scores"] = frame_json(scores) if scores is not None else None
    ctx.data["induction_ablation"] = frame_json(causal) if causal is not None else None
    return [section]


def induction_section(
    model: Any, dm: Any
) -> tuple[Section | None, pd.DataFrame | None, pd.DataFrame | None]:
    """Head scores (TransformerLens ``detect_head`` normalisation, plus
    the supervised-query variant) and the L0 -> L1 mean-ablation table (causal evidence)."""
    try:
        from project.interp.composition import induction_ablation_table
        from project.interp.induction import head_detector, repeat_query_mask
    except ImportError:
        return None, None, None
    tokens, labels = examples(dm, 256)
    table = head_detector(model, tokens)
    variant = head_detector(model, tokens, repeat_query_mask(labels), reduce="supervised_query")
    for kind in ("duplicate_token", "induction"):
        table[f"{kind}_supervised_query"] = variant[kind].to_numpy()
    kinds = [c for c in ("previous_token", "duplicate_token", "induction") if c in table]
    causal = None
    if model_layers(model) >= 2:  # one layer: nothing to compose
        causal = induction_ablation_table(model, tokens, labels)
    fig, axes = rp.figure(2 if causal is not None else 1, height=3.8)
    ax = axes[0]
    names = [f"L{int(r.layer)}H{int(r.head)}" for r in table.itertuples()]
    width = 0.8 / max(1, len(kinds))
    for i, kind in enumerate(kinds):
        xs = [j + (i - (len(kinds) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, table[kind], width=width, label=kind.replace("_", " "))
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("TransformerLens detect_head score")
    ax.legend(loc="upper right")
    ax.set_title("Head scores on validation examples")
    caption = (
        "Left: attention mass on each pattern over all queries (TransformerLens detect_head; a "
        "sequence repeated once caps induction near 0.5)."
    )
    if causal is not None:
        ax = axes[1]
        rows = causal[causal["ablated"] != "clean"]
        ind_cols = [c for c in causal.columns if c.startswith("d_induction_")]
        width = 0.8 / max(1, len(ind_cols) + 1)
        for i, col in enumerate([*ind_cols, "d_acc"]):
            xs = [j + (i - len(ind_cols) / 2) * width for j in range(len(rows))]
            ax.bar(xs, rows[col], width=width, label=col[2:].replace("_", " "))
        ax.set_xticks(range(len(rows)), rows["ablated"], rotation=30)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel("ablated - clean")
        ax.legend(loc="lower right", fontsize=7)
        ax.set_title("Mean-ablating one head: change in L1 induction scores and accuracy")
        caption += (
            " Right: mean-ablating an L0 head lowers an L1 head's induction score when that head "
            "builds its keys (K-composition); ablating an L1 head shows whether the model uses it."
        )
    return (TITLE, rp.png(fig), caption), table, causal
