"""Sections of the run report for any task under the template contract: training curves,
attention per head on examples, head and layer ablation effects; plus the induction hook."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from project.interp import viz
from project.interp.ablation import (
    ablation_sweep,
    head_ablations,
    layer_ablations,
    model_layers,
)
from project.runs import report_plot as rp
from project.runs.load import Run

Section = tuple[str, str, str]
IGNORE_INDEX = -100


def curves(run: Run) -> pd.DataFrame:
    """train/val loss and acc by completed epoch, from the loggers (else progress.jsonl)."""
    cols = ["train/loss", "train/acc", "val/loss", "val/acc"]
    m = run.metrics
    if any(c in m for c in cols):
        df = m[["epoch", *[c for c in cols if c in m]]].copy()
        df["epoch"] = df["epoch"].astype(float)  # completed epochs (load_run)
        df = df.groupby("epoch", as_index=False).first()
    else:
        df = pd.DataFrame({"epoch": []})
    prog = run.progress.rename(columns={c.replace("/", "_"): c for c in cols})
    if df.dropna(how="all", subset=[c for c in cols if c in df]).empty and not prog.empty:
        df = prog[["epoch", *[c for c in cols if c in prog]]].copy()
    return df.sort_values("epoch").reset_index(drop=True)


def fig_curves(
    df: pd.DataFrame, phases: Any, grok: Any, n_classes: int | None, xscale: str = "linear"
) -> str:
    fig, axes = rp.figure(2, height=4.0)
    xmax = float(df["epoch"].max()) if len(df) else 1.0
    for ax, kind in zip(axes, ("loss", "acc"), strict=True):
        for split in ("train", "val"):
            col = f"{split}/{kind}"
            if col in df:
                rows = df[["epoch", col]].dropna()
                ax.plot(rows["epoch"], rows[col], label=split)
        if kind == "loss":
            rp.lnp_line(ax, n_classes)
            rp.positive_log_y(ax)
        else:
            ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(kind)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
        rp.shade(ax, phases, grok)
        rp.x_axis(ax, xscale, xmax)
    rp.phase_legend(fig, phases, grok)
    return rp.png(fig)


def _examples(dm: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens, labels = dm.split("val")
    return tokens[:n].cpu(), labels[:n].cpu()


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cross-entropy over the supervised positions (``labels != -100``)."""
    if logits.shape[1] != labels.shape[1]:  # a net that returns the last position only
        labels = labels[:, -logits.shape[1] :]
    return float(
        F.cross_entropy(logits.double().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
    )


def _widen(fig: Any) -> str:
    w, h = fig.get_size_inches()
    if w < rp.WIDTH_IN:
        fig.set_size_inches(rp.WIDTH_IN, h * 1.0)
    return rp.png(fig)


@torch.no_grad()
def attention_sections(model: Any, dm: Any, token_names: Any = None) -> list[Section]:
    """One figure per layer: each head's attention on the first validation example."""
    hooks = [n for n in getattr(model, "hook_dict", {}) if n.endswith("attn.hook_pattern")]
    if not hooks:
        return []
    tokens, _ = _examples(dm, 1)
    _, cache = model.run_with_cache(tokens, names_filter=hooks)
    labels = [str(int(t)) for t in tokens[0]] if token_names is None else token_names
    out = []
    for name in hooks:
        fig = viz.plot_attention_patterns(cache[name][0], labels, title=name)
        out.append(
            (
                f"Attention per head: {name.split('.attn')[0]}",
                _widen(fig),
                "Each head's attention (query rows, key columns) on the first validation "
                "example, tokens on the axes.",
            )
        )
    return out


def ablation_table(model: Any, dm: Any, n: int = 512) -> pd.DataFrame:
    """Mean-ablation of every head and every layer's attention / MLP output on up to ``n``
    validation examples; ``effect`` = loss increase on the supervised positions."""
    tokens, labels = _examples(dm, n)
    items = head_ablations(model) + layer_ablations(model)
    return ablation_sweep(model, tokens, lambda lg: supervised_loss(lg, labels), items)


def ablation_section(model: Any, dm: Any) -> tuple[Section | None, pd.DataFrame | None]:
    try:
        table = ablation_table(model, dm)
    except (ValueError, KeyError) as exc:  # no blocks / heads in this net
        return None, pd.DataFrame({"error": [str(exc)]})
    fig = viz.plot_ablation_effects(table, title="mean-ablation: val loss increase")
    caption = (
        "Loss increase when one head (hook_z) or a whole layer's attention / MLP output is "
        "replaced by its mean: the components the task relies on have large bars."
    )
    return ("Head and layer ablation effects", _widen(fig), caption), table


def induction_section(
    model: Any, dm: Any
) -> tuple[Section | None, pd.DataFrame | None, pd.DataFrame | None]:
    """Hook for induction tasks: head scores (TransformerLens ``detect_head`` normalisation, plus
    the supervised-query variant) and the L0 -> L1 mean-ablation table (causal evidence)."""
    try:
        from project.interp.composition import induction_ablation_table
        from project.interp.induction import head_detector, repeat_query_mask
    except ImportError:
        return None, None, None
    tokens, labels = _examples(dm, 256)
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
    return ("Induction head scores", rp.png(fig), caption), table, causal


def n_classes(dm: Any) -> int | None:
    value = getattr(dm, "d_vocab_out", None)
    return int(value) if isinstance(value, int) and value > 1 else None


def chance_loss(dm: Any) -> float | None:
    n = n_classes(dm)
    return math.log(n) if n else None
