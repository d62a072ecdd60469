"""Sections of the run report for any task under the template contract (training curves,
attention per head on examples, head and layer ablation effects), and how a task adds its own.

A task declares its sections on its class (``project.data.base.TokenTask``)::

    class MyTask(TokenTask):
        report_sections = ("my_project.report:sections",)     # single-run report
        compare_sections = ("my_project.report:compare",)     # comparison page (optional)

Each entry is ``"module:function"``; the function takes a :class:`ReportContext` (a
:class:`CompareContext` on the comparison page) and returns a list of :data:`Section`. It may add
rows to ``ctx.summary``, numbers to ``ctx.data`` (``report.json``), spans to ``ctx.marks`` (shaded
on every figure over epochs, the training curves included) and, for what it cannot show,
``ctx.note(title, why)``: the page lists those under "Not shown" with the reason.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from project.interp import viz
from project.interp.ablation import (
    ablation_sweep,
    head_ablations,
    layer_ablations,
)
from project.runs import report_plot as rp
from project.runs.load import Reached, Run

Section = tuple[str, str, str]  # title, PNG data URI, one-line caption
IGNORE_INDEX = -100


@dataclass
class ReportContext:
    """What a report section gets: the run, its task rebuilt, the final model (None without
    weights), the curves, the threshold epochs; and what it may add to (``summary`` rows,
    ``data`` for report.json, ``marks`` on the figures over epochs, ``needs_weights``: what it
    would show with checkpoints, ``not_shown``: title -> why it is absent)."""

    run: Run
    dm: Any
    model: Any
    curves: pd.DataFrame
    reached: Reached
    xscale: str = "linear"
    max_snapshots: int = 40
    summary: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    marks: rp.Marks = field(default_factory=rp.Marks)
    needs_weights: list[str] = field(default_factory=list)
    not_shown: dict[str, str] = field(default_factory=dict)

    def note(self, title: str, why: str) -> None:
        """Say on the page why the section ``title`` is absent."""
        self.not_shown[title] = why


@dataclass
class CompareContext:
    """What a comparison section gets: the runs, their labels and curves, the page's epoch range;
    it may add rows per run to ``table`` (label -> {column: value}), numbers to ``data``
    (compare.json, ``data["runs"][i]`` per run) and notes to ``not_shown``."""

    runs: list[Run]
    labels: list[str]
    curves: list[pd.DataFrame]
    xmax: float
    table: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    not_shown: dict[str, str] = field(default_factory=dict)

    def note(self, title: str, why: str) -> None:
        self.not_shown[title] = why


def load_entry(entry: str) -> Callable[..., list[Section]]:
    """The function a ``"module:function"`` entry of ``report_sections`` names."""
    module, sep, name = str(entry).partition(":")
    if not sep or not module or not name:
        raise ValueError(f"{entry!r} is invalid: allowed 'package.module:function'")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def task_sections(
    ctx: ReportContext | CompareContext, entries: list[tuple[str, str]], kind: str
) -> list[Section]:
    """Run each ``(task, entry)`` on ``ctx``: their sections, in order. An entry that cannot be
    imported or fails is noted on the page (with the error), not fatal."""
    out: list[Section] = []
    for task, entry in entries:
        try:
            function = load_entry(entry)
        except (ImportError, AttributeError, ValueError) as exc:
            ctx.note(entry, f"{task} declares it in {kind}, but it cannot be loaded: {exc}")
            continue
        out += function(ctx)
    return out


def declared(task: Any, kind: str) -> list[str]:
    """``task``'s (class or instance) entries for ``kind`` (``report_sections`` or
    ``compare_sections``); a bare string counts as one entry."""
    value = getattr(task, kind, ()) or ()
    return [value] if isinstance(value, str) else [str(v) for v in value]


def jsonable(x: Any) -> Any:
    """A JSON-ready copy: arrays and tensors as lists, numpy scalars as Python, NaN/inf as None."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray | torch.Tensor):
        return jsonable(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(float(x)) else None
    return x


def frame_json(df: pd.DataFrame) -> dict[str, list[Any]]:
    """A DataFrame as ``{column: [values]}`` for report.json."""
    return {str(c): jsonable(df[c].tolist()) for c in df.columns}


def choose_snapshots(paths: list[tuple[int, Any]], max_snapshots: int) -> list[tuple[int, Any]]:
    """At most ``max_snapshots`` of the snapshots, evenly by index (dense schedules stay dense
    where they were written densely), always including the first and the last."""
    if len(paths) <= max_snapshots:
        return list(paths)
    idx = np.unique(np.linspace(0, len(paths) - 1, max(2, max_snapshots)).round().astype(int))
    return [paths[i] for i in idx]


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
    df: pd.DataFrame, marks: rp.Marks | None, n_classes: int | None, xscale: str = "linear"
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
        rp.shade(ax, marks)
        rp.x_axis(ax, xscale, xmax)
    rp.legend(fig, marks)
    return rp.png(fig)


def examples(dm: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    tokens, _ = examples(dm, 1)
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
    tokens, labels = examples(dm, n)
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


def n_classes(dm: Any) -> int | None:
    value = getattr(dm, "d_vocab_out", None)
    return int(value) if isinstance(value, int) and value > 1 else None


def chance_loss(dm: Any) -> float | None:
    n = n_classes(dm)
    return math.log(n) if n else None
