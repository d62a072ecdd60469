"""Comparison page across runs (seeds, recipes): ``python -m project.report A B ...``.

Overlays the training curves (from the loggers, else progress.jsonl) of every run, one colour per
run, and tabulates each run's threshold epochs (its record, ``project.runs.load.reached``). A task
adds its own sections by declaring ``compare_sections`` on its class (see
``project.runs.report_generic``); each is called once with all the runs. Writes
``<out>/index.html`` and ``<out>/compare.json`` (default out: ``./report_compare``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from project.runs import report_generic as rg
from project.runs import report_plot as rp
from project.runs.load import Run, load_run
from project.runs.report import page, reached_label


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def labels(runs: list[Run]) -> list[str]:
    """Each run's name plus the config values that differ between the runs (seed, lr, ...)."""
    flats = [_flat(r.config) for r in runs]
    keys = sorted({k for f in flats for k in f})
    skip = ("run.", "hydra", "callbacks.", "logger", "trainer.default_root_dir")
    differ = [
        k for k in keys
        if not k.startswith(skip) and len({json.dumps(f.get(k), default=str) for f in flats}) > 1
    ]  # fmt: skip
    out = []
    for run, flat in zip(runs, flats, strict=True):
        extra = ", ".join(f"{k.split('.')[-1]}={flat.get(k)}" for k in differ[:4])
        out.append(f"{run.run_dir.name}" + (f" ({extra})" if extra else ""))
    return out


def declared_entries(runs: list[Run]) -> list[tuple[str, str]]:
    """``(task, entry)`` for every ``compare_sections`` entry of the runs' task classes, each entry
    once, in the order the runs name them (a run whose config names no task has none)."""
    seen: dict[str, str] = {}
    for run in runs:
        if "_target_" not in (run.config.get("data") or {}):
            continue
        for entry in rg.declared(run.task_class(), "compare_sections"):
            seen.setdefault(entry, run.task)
    return [(task, entry) for entry, task in seen.items()]


def build_comparison(run_dirs: list[str | Path], out_dir: str | Path | None = None) -> Path:
    """Write the comparison page for ``run_dirs``; returns its path."""
    runs = [load_run(d) for d in run_dirs]
    names = labels(runs)
    out = Path(out_dir) if out_dir is not None else Path("report_compare")
    out.mkdir(parents=True, exist_ok=True)
    curves = [rg.curves(run) for run in runs]
    xmax = max([1.0] + [float(df["epoch"].max()) for df in curves if len(df)])
    ctx = rg.CompareContext(runs, names, curves, xmax, data={"runs": []})
    fig, axes = rp.figure(2, height=4.0)
    for name, run, df in zip(names, runs, curves, strict=True):
        reached = run.reached
        for ax, kind in zip(axes, ("loss", "acc"), strict=True):
            for split, style in (("train", "--"), ("val", "-")):
                col = f"{split}/{kind}"
                if col in df:
                    rows = df[["epoch", col]].dropna()
                    ax.plot(rows["epoch"], rows[col], ls=style, label=f"{name} {split}")
        row: dict[str, Any] = {}
        if reached.train_monitor:
            row[reached_label(reached, True)] = reached.train_epoch
        row[reached_label(reached)] = reached.epoch
        ctx.table[name] = row
        ctx.data["runs"].append({
            "run_dir": str(run.run_dir), "label": name, "task": run.task,
            "reached": reached.to_dict(), "curves": {c: df[c].tolist() for c in df.columns},
            **reached.epochs(),
        })  # fmt: skip
    axes[0].set_title("Loss (dashed train, solid val)")
    rp.positive_log_y(axes[0])
    axes[1].set_title("Accuracy (dashed train, solid val)")
    axes[1].set_ylim(-0.02, 1.02)
    for ax in axes:
        rp.x_axis(ax, "linear", xmax)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    sections = [("Training curves", rp.png(fig), "One colour per line: each run's train (dashed) "
                 "and val (solid) curves.")]  # fmt: skip
    entries = declared_entries(runs)
    if entries:
        sections += rg.task_sections(ctx, entries, "compare_sections")
    else:
        tasks = ", ".join(sorted({run.task for run in runs}))
        ctx.note("Task sections", f"{tasks}: no compare_sections declared")
    summary = {
        name: "; ".join(f"{k}: {'-' if v is None else v}" for k, v in row.items())
        for name, row in ctx.table.items()
    }
    text = page(f"Comparison of {len(runs)} runs", "", summary, sections, ctx.not_shown)
    (out / "index.html").write_text(text)
    ctx.data["table"] = ctx.table
    ctx.data["not_shown"] = ctx.not_shown
    (out / "compare.json").write_text(json.dumps(rg.jsonable(ctx.data), indent=1))
    frame = pd.DataFrame(ctx.table).T
    print(frame.to_string())
    return out / "index.html"
