"""Across the runs of a sweep: seed statistics and phase diagrams (from ``collect_runs``' table).

    from project.runs import collect_runs
    from project.runs.sweep import seed_stats, phase_table, plot_phase_diagram
    df = collect_runs("multirun/2026-01-01/12-00-00")
    seed_stats(df)                                   # one row per config, mean/std over seeds
    cells = phase_table(df, "model.optimizer.weight_decay", "data.frac_train")
    plot_phase_diagram(cells, "model.optimizer.weight_decay", "data.frac_train", "phase.png")

``python -m project.runs <sweep dir>`` prints the seed statistics under the runs table;
``--phase-diagram <key x> <key y>`` also writes the PNG and prints the cell table.
Epochs to grok are completed epochs at which val acc first reached 0.99 (``grok_epoch``, the one
threshold rule of ``project.runs.load.first_epoch_at``); runs that never got there count in ``n``
but not in the mean, shown as ``grokked/n``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SEED_KEY = "seed"
STAT_COLUMNS = ("grok_epoch", "best_val_acc", "val_loss")


def _without(overrides: str, key: str) -> str:
    return " ".join(
        o for o in str(overrides or "").split() if o.lstrip("+~").partition("=")[0] != key
    )


def _mean_std(values: pd.Series) -> tuple[float, float, int]:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, int(len(v))


def seed_stats(df: pd.DataFrame, seed_key: str = SEED_KEY) -> pd.DataFrame:
    """Runs grouped by their overrides without ``seed``: ``config``, ``n``, ``seeds``, and
    ``<metric>_mean``, ``_std``, ``_n`` for grok_epoch, best_val_acc and val_loss (final).
    Only groups of runs that differ in ``seed`` (at least two seeds)."""
    if df.empty or seed_key not in df:
        return pd.DataFrame()
    df = df.assign(config=[_without(o, seed_key) for o in df["overrides"]])
    rows: list[dict[str, Any]] = []
    for config, group in df.groupby("config", sort=False):
        seeds = sorted(group[seed_key].dropna().unique().tolist())
        if len(seeds) < 2:
            continue
        row: dict[str, Any] = {"config": config, "n": len(group), "seeds": seeds}
        for col in STAT_COLUMNS:
            series = group[col] if col in group else pd.Series(dtype=float)
            row[f"{col}_mean"], row[f"{col}_std"], row[f"{col}_n"] = _mean_std(series)
        rows.append(row)
    return pd.DataFrame(rows)


def _pm(mean: float, std: float, n: int, total: int | None = None, digits: int = 0) -> str:
    count = f"{n}/{total}" if total is not None else str(n)
    if n == 0:
        return f"- ({count})"
    return f"{mean:.{digits}f} ± {std:.{digits}f} ({count})"


def _left(texts: list[str]) -> list[str]:
    """Left-aligned in a ``to_string`` table (pandas right-aligns string values)."""
    width = max((len(t) for t in texts), default=0)
    return [t.ljust(width) for t in texts]


def format_seed_stats(stats: pd.DataFrame) -> str:
    """``config  n  grok_epoch  best_val_acc  val_loss`` with ``mean ± std (n)``; the overrides
    shared by every group in a header line."""
    if stats.empty:
        return "no runs that differ only in seed"
    split = [c.split() for c in stats["config"]]
    common = set.intersection(*(set(s) for s in split)) if len(split) > 1 else set()
    table = pd.DataFrame(
        {
            "config": _left([" ".join(o for o in s if o not in common) or "(all)" for s in split]),
            "n": stats["n"],
            "grok_epoch (grokked/n)": [
                _pm(r.grok_epoch_mean, r.grok_epoch_std, r.grok_epoch_n, r.n)
                for r in stats.itertuples()
            ],
            "best_val_acc": [
                _pm(r.best_val_acc_mean, r.best_val_acc_std, r.best_val_acc_n, digits=3)
                for r in stats.itertuples()
            ],
            "val_loss": [
                _pm(r.val_loss_mean, r.val_loss_std, r.val_loss_n, digits=4)
                for r in stats.itertuples()
            ],
        }
    )
    head = "seed statistics: mean ± std (n) over seeds"
    if common:
        head += f"; common: {' '.join(o for o in split[0] if o in common)}"
    return head + "\n" + table.to_string(index=False, justify="left")


def phase_table(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """One row per (x, y) cell: ``n`` runs, ``grokked``, ``grok_mean``/``grok_std`` (over the
    runs that grokked), ``best_val_acc`` (mean over all), sorted by y then x."""
    missing = [k for k in (x, y) if k not in df]
    if missing:
        swept = [c for c in df.columns if "." in c or c == SEED_KEY]
        raise ValueError(
            f"{', '.join(missing)} is invalid: not swept in these runs; allowed: {', '.join(swept)}"
        )
    rows = []
    for (xv, yv), group in df.groupby([x, y], sort=True):
        grok = pd.to_numeric(group["grok_epoch"], errors="coerce").dropna()
        rows.append(
            {
                x: xv,
                y: yv,
                "n": len(group),
                "grokked": len(grok),
                "grok_mean": float(grok.mean()) if len(grok) else math.nan,
                "grok_std": float(grok.std(ddof=1)) if len(grok) > 1 else math.nan,
                "best_val_acc": float(pd.to_numeric(group["best_val_acc"]).mean()),
            }
        )
    return pd.DataFrame(rows).sort_values([y, x]).reset_index(drop=True)


def _tick(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_phase_table(cells: pd.DataFrame, x: str, y: str) -> str:
    """A grid: rows = y values, columns = x values; ``epochs (grokked/n)`` or ``acc .xx (0/n)``."""

    def cell(r: pd.Series) -> str:
        n, grokked = int(r["n"]), int(r["grokked"])
        if grokked:
            return f"{r['grok_mean']:.0f} ({grokked}/{n})"
        return f"acc {r['best_val_acc']:.2f} (0/{n})"

    grid = cells.assign(cell=cells.apply(cell, axis=1)).pivot(index=y, columns=x, values="cell")
    grid = grid.sort_index(ascending=False).fillna("")
    grid.index = [_tick(v) for v in grid.index]
    grid.columns = [_tick(v) for v in grid.columns]
    grid.index.name = f"{y} \\ {x}"
    note = "epochs to 99% val acc, mean over the seeds that grokked (grokked/n); "
    note += "acc = best val acc where none grokked"
    return f"{note}\n{grid.to_string()}"


def plot_phase_diagram(cells: pd.DataFrame, x: str, y: str, path: str | Path) -> Path:
    """Heatmap PNG: colour = epochs to grok (mean over the seeds that grokked); cells where no
    seed grokked in grey with their best val acc; every cell labelled with its counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    xs = sorted(cells[x].unique().tolist())
    ys = sorted(cells[y].unique().tolist())
    grok = np.full((len(ys), len(xs)), np.nan)
    labels = [["" for _ in xs] for _ in ys]
    for _, r in cells.iterrows():
        i, j = ys.index(r[y]), xs.index(r[x])
        if r["grokked"]:
            grok[i, j] = r["grok_mean"]
            labels[i][j] = f"{r['grok_mean']:.0f}\n{int(r['grokked'])}/{int(r['n'])}"
        else:
            labels[i][j] = f"acc {r['best_val_acc']:.2f}\n0/{int(r['n'])}"
    fig, ax = plt.subplots(figsize=(1.1 * len(xs) + 2.6, 0.75 * len(ys) + 1.6))
    ax.imshow(np.where(np.isnan(grok), 0.82, np.nan), cmap="gray", vmin=0, vmax=1, origin="lower")
    finite = grok[np.isfinite(grok)]
    norm = None
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        norm = Normalize(vmin=lo - 1, vmax=hi + 1) if lo == hi else Normalize(vmin=lo, vmax=hi)
        im = ax.imshow(np.ma.masked_invalid(grok), cmap="viridis", norm=norm, origin="lower")
        fig.colorbar(im, ax=ax, label="epochs to 99% val acc")
    for i in range(len(ys)):
        for j in range(len(xs)):
            value = grok[i, j]
            bright = norm is not None and np.isfinite(value) and float(norm(value)) > 0.6
            color = "white" if np.isfinite(value) and not bright else "black"
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(xs)), [_tick(v) for v in xs])
    ax.set_yticks(range(len(ys)), [_tick(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title("epochs to grok (grey: never; best val acc shown)", fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
