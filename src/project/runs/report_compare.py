"""Comparison page across runs (seeds, recipes): ``python -m project.report A B ...``.

Overlays the training curves (from the loggers, else progress.jsonl) and the live progress
measures (progress.jsonl) of every run, one colour per run, and tabulates the epoch each run
memorised / generalised and its phases measured from its live records. Writes
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
from project.runs.report import THRESHOLD, _jsonable, page, phase_measures, thresholds
from project.runs.report_phases import detect_phases

MEASURES = [
    ("restricted_loss", "Restricted loss (live keys)", True),
    ("excluded_loss", "Excluded loss (live keys)", True),
    ("logit_weights_gini", "Gini of W_L", False),
    ("weight_norm", "Total sum of squared weights", False),
]


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


def _phases(run: Run, df: Any, mem: int | None, grok: int | None) -> dict[str, Any]:
    """Phases from the metric history and the live progress records (no snapshots needed)."""
    measures, _ = phase_measures(run, pd.DataFrame(), df)
    if measures.empty or not run.is_modular:
        return {"phases": None, "evidence": {}}
    return detect_phases(measures, grok, mem)


def build_comparison(run_dirs: list[str | Path], out_dir: str | Path | None = None) -> Path:
    """Write the comparison page for ``run_dirs``; returns its path."""
    runs = [load_run(d) for d in run_dirs]
    names = labels(runs)
    out = Path(out_dir) if out_dir is not None else Path("report_compare")
    out.mkdir(parents=True, exist_ok=True)
    table: dict[str, Any] = {}
    data: dict[str, Any] = {"runs": []}
    fig, axes = rp.figure(2, height=4.0)
    xmax = 1.0
    for name, run in zip(names, runs, strict=True):
        df = rg.curves(run)
        t_mem, t_grok = thresholds(df)
        found = _phases(run, df, t_mem, t_grok)
        for ax, kind in zip(axes, ("loss", "acc"), strict=True):
            for split, style in (("train", "--"), ("val", "-")):
                col = f"{split}/{kind}"
                if col in df:
                    rows = df[["epoch", col]].dropna()
                    (line,) = ax.plot(rows["epoch"], rows[col], ls=style,
                                      label=f"{name} {split}")  # fmt: skip
        xmax = max(xmax, float(df["epoch"].max()) if len(df) else 1.0)
        phases = found["phases"] or {}
        table[name] = {
            f"memorised (train acc >= {THRESHOLD:.0%})": t_mem,
            f"generalised (val acc >= {THRESHOLD:.0%})": t_grok,
            **{f"phase: {k.replace('_', ' ')}": (f"{v[0]}-{v[1]}" if v else "-")
               for k, v in phases.items()},
        }  # fmt: skip
        data["runs"].append({"run_dir": str(run.run_dir), "label": name, "grok_epoch": t_grok,
                             "memorised_epoch": t_mem, "phases": found["phases"],
                             "curves": {c: df[c].tolist() for c in df.columns}})  # fmt: skip
    axes[0].set_title("Loss (dashed train, solid val)")
    rp.positive_log_y(axes[0])
    axes[1].set_title("Accuracy (dashed train, solid val)")
    axes[1].set_ylim(-0.02, 1.02)
    for ax in axes:
        rp.x_axis(ax, "linear", xmax)
        ax.legend(fontsize=7, loc="best")
    sections = [("Training curves", rp.png(fig), "One colour per line; each run's val accuracy "
                 "jump is its grokking epoch.")]  # fmt: skip
    present = [m for m in MEASURES if any(m[0] in r.progress for r in runs)]
    if present:
        fig, axes = rp.figure(len(present), height=3.6, cols=2)
        for ax, (col, title, logy) in zip(axes, present, strict=True):
            for name, run in zip(names, runs, strict=True):
                if col in run.progress:
                    ax.plot(run.progress["epoch"], run.progress[col], label=name)
            if logy:
                rp.positive_log_y(ax)
            ax.set_title(title)
            rp.x_axis(ax, "linear", xmax)
        axes[0].legend(fontsize=7, loc="best")
        sections.append(("Progress measures (live, progress.jsonl)", rp.png(fig),
                         "Live measures use each run's own key-frequency rule (see its records); "
                         "a run's own report recomputes them with its final keys."))  # fmt: skip
    summary = {name: "; ".join(f"{k}: {v}" for k, v in row.items()) for name, row in table.items()}
    text = page(f"Comparison of {len(runs)} runs", "", summary, sections)
    (out / "index.html").write_text(text)
    data["table"] = table
    (out / "compare.json").write_text(json.dumps(_jsonable(data), indent=1))
    frame = pd.DataFrame(table).T
    print(frame.to_string())
    return out / "index.html"
