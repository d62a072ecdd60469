"""Across the runs of a sweep: seed statistics and phase diagrams (from ``collect_runs``' table).

    from project.runs import collect_runs
    from project.runs.sweep import seed_stats, phase_table, plot_phase_diagram
    df = collect_runs("multirun/2026-01-01/12-00-00")
    seed_stats(df)                                   # one row per config, mean/std over seeds
    cells = phase_table(df, "model.optimizer.weight_decay", "data.frac_train")
    plot_phase_diagram(cells, "model.optimizer.weight_decay", "data.frac_train", "phase.png")

``python -m project.runs <sweep dir>`` prints the seed statistics under the runs table;
``--phase-diagram <key x> <key y>`` also writes the PNG and prints the cell table.
Both read the threshold-epoch column the table has (``reached_epoch``, or the task's word for it:
``project.runs.table.threshold_columns``): the completed epoch at which each
run's monitored metric first reached its threshold (the run's record; ``project.runs.load``).
Runs that never got there count in ``n`` but not in the mean, shown as ``reached/n``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SEED_KEY = "seed"


def threshold_columns(df: pd.DataFrame, kind: str = "reached") -> list[str]:
    """The columns of ``df`` holding the ``kind`` of value (``reached``: the threshold epoch,
    ``train_reached``: the train twin's, ``best``: the best value), in table order: from
    ``df.attrs["columns"]`` (``collect_runs`` sets it), else the generic names present."""
    known = (df.attrs.get("columns") or {}).get(kind)
    if known is None:
        generic = {"reached": ["reached_epoch"], "train_reached": ["train_reached_epoch"]}
        known = generic.get(kind, [c for c in df.columns if str(c).startswith("best_")])
    return [c for c in known if c in df.columns]


def _without(overrides: str, key: str) -> str:
    return " ".join(
        o for o in str(overrides or "").split() if o.lstrip("+~").partition("=")[0] != key
    )


def _mean_std(values: pd.Series) -> tuple[float, float, int]:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, int(len(v))


def stat_columns(df: pd.DataFrame) -> list[str]:
    """What ``seed_stats`` summarises: the threshold-epoch and best-value columns, final val loss."""
    cols = threshold_columns(df, "reached") + threshold_columns(df, "best")
    return cols + (["val_loss"] if "val_loss" in df else [])


def seed_stats(df: pd.DataFrame, seed_key: str = SEED_KEY) -> pd.DataFrame:
    """Runs grouped by their overrides without ``seed``: ``config``, ``n``, ``seeds``, and
    ``<metric>_mean``, ``_std``, ``_n`` for the threshold epoch (``reached_epoch`` or the task's
    word), the best value (``best_val_acc``...) and val_loss (final). Only groups of runs that
    differ in ``seed`` (at least two seeds). ``attrs["columns"]`` names the summarised columns."""
    if df.empty or seed_key not in df:
        return pd.DataFrame()
    columns = stat_columns(df)
    reached = threshold_columns(df, "reached")
    df = df.assign(config=[_without(o, seed_key) for o in df["overrides"]])
    rows: list[dict[str, Any]] = []
    for config, group in df.groupby("config", sort=False):
        seeds = sorted(group[seed_key].dropna().unique().tolist())
        if len(seeds) < 2:
            continue
        row: dict[str, Any] = {"config": config, "n": len(group), "seeds": seeds}
        for col in columns:
            row[f"{col}_mean"], row[f"{col}_std"], row[f"{col}_n"] = _mean_std(group[col])
        rows.append(row)
    stats = pd.DataFrame(rows)
    stats.attrs["columns"] = {"reached": reached, "all": columns}
    return stats


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
    """``config  n  <threshold epoch> (reached/n)  <best>  val_loss`` with ``mean ± std (n)``;
    the overrides shared by every group in a header line."""
    if stats.empty:
        return "no runs that differ only in seed"
    split = [c.split() for c in stats["config"]]
    common = set.intersection(*(set(s) for s in split)) if len(split) > 1 else set()
    names = stats.attrs.get("columns") or {}
    columns = names.get("all") or [c[: -len("_mean")] for c in stats if c.endswith("_mean")]
    reached = names.get("reached", [])
    table = pd.DataFrame(
        {"config": _left([" ".join(o for o in s if o not in common) or "(all)" for s in split]),
         "n": stats["n"]}
    )  # fmt: skip
    for col in columns:
        if col in reached:
            head, cells = (
                f"{col} (reached/n)",
                [
                    _pm(r[f"{col}_mean"], r[f"{col}_std"], r[f"{col}_n"], r["n"])
                    for _, r in stats.iterrows()
                ],
            )
        else:
            digits = 4 if "loss" in col else 3
            head, cells = (
                col,
                [
                    _pm(r[f"{col}_mean"], r[f"{col}_std"], r[f"{col}_n"], digits=digits)
                    for _, r in stats.iterrows()
                ],
            )
        table[head] = cells
    head = "seed statistics: mean ± std (n) over seeds"
    if common:
        head += f"; common: {' '.join(o for o in split[0] if o in common)}"
    return head + "\n" + table.to_string(index=False, justify="left")


def phase_table(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """One row per (x, y) cell: ``n`` runs, ``reached`` (how many reached the threshold),
    ``reached_mean``/``reached_std`` (epochs, over the runs that reached it), ``best`` (mean of the
    best value over all runs), sorted by y then x. ``attrs``: ``column`` (the threshold-epoch
    column read), ``best_column`` and ``threshold`` (e.g. ``val/acc >= 0.99``)."""
    missing = [k for k in (x, y) if k not in df]
    if missing:
        swept = [c for c in df.columns if "." in c or c == SEED_KEY]
        raise ValueError(
            f"{', '.join(missing)} is invalid: not swept in these runs; allowed: {', '.join(swept)}"
        )
    reached = threshold_columns(df, "reached")
    if not reached:
        raise ValueError("these runs record no threshold epoch (no summary.json monitor)")
    column = reached[0]
    best_cols = threshold_columns(df, "best")
    rows = []
    for (xv, yv), group in df.groupby([x, y], sort=True):
        hit = pd.to_numeric(group[column], errors="coerce").dropna()
        best = pd.to_numeric(group[best_cols[0]], errors="coerce") if best_cols else None
        rows.append(
            {
                x: xv,
                y: yv,
                "n": len(group),
                "reached": len(hit),
                "reached_mean": float(hit.mean()) if len(hit) else math.nan,
                "reached_std": float(hit.std(ddof=1)) if len(hit) > 1 else math.nan,
                "best": float(best.mean()) if best is not None else math.nan,
            }
        )
    cells = pd.DataFrame(rows).sort_values([y, x]).reset_index(drop=True)
    rules = df["threshold"].dropna().unique().tolist() if "threshold" in df else []
    cells.attrs.update(
        column=column,
        best_column=best_cols[0] if best_cols else "best",
        threshold=" / ".join(str(r) for r in rules) or column,
    )
    return cells


def _tick(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _short(best_column: str) -> str:
    """``best_val_acc`` -> ``acc``: the cell label of a best value."""
    return best_column.rsplit("_", 1)[-1]


def format_phase_table(cells: pd.DataFrame, x: str, y: str) -> str:
    """A grid: rows = y values, columns = x values; ``epochs (reached/n)``, or the best value
    (``acc .xx (0/n)``) where no run reached the threshold."""
    best_column = cells.attrs.get("best_column", "best")
    short = _short(best_column)

    def cell(r: pd.Series) -> str:
        n, hit = int(r["n"]), int(r["reached"])
        if hit:
            return f"{r['reached_mean']:.0f} ({hit}/{n})"
        return f"{short} {r['best']:.2f} (0/{n})"

    grid = cells.assign(cell=cells.apply(cell, axis=1)).pivot(index=y, columns=x, values="cell")
    grid = grid.sort_index(ascending=False).fillna("")
    grid.index = [_tick(v) for v in grid.index]
    grid.columns = [_tick(v) for v in grid.columns]
    grid.index.name = f"{y} \\ {x}"
    column, rule = cells.attrs.get("column", "reached_epoch"), cells.attrs.get("threshold", "")
    note = f"{column}: epochs to {rule}, mean over the seeds that reached it (reached/n); "
    note += f"{short} = {best_column} where none did"
    return f"{note}\n{grid.to_string()}"


def plot_phase_diagram(cells: pd.DataFrame, x: str, y: str, path: str | Path) -> Path:
    """Heatmap PNG: colour = the threshold epoch (mean over the seeds that reached it); cells where
    no seed did in grey with their best value; every cell labelled with its counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    xs = sorted(cells[x].unique().tolist())
    ys = sorted(cells[y].unique().tolist())
    column, rule = cells.attrs.get("column", "reached_epoch"), cells.attrs.get("threshold", "")
    best_column = cells.attrs.get("best_column", "best")
    epochs = np.full((len(ys), len(xs)), np.nan)
    labels = [["" for _ in xs] for _ in ys]
    for _, r in cells.iterrows():
        i, j = ys.index(r[y]), xs.index(r[x])
        if r["reached"]:
            epochs[i, j] = r["reached_mean"]
            labels[i][j] = f"{r['reached_mean']:.0f}\n{int(r['reached'])}/{int(r['n'])}"
        else:
            labels[i][j] = f"{_short(best_column)} {r['best']:.2f}\n0/{int(r['n'])}"
    fig, ax = plt.subplots(figsize=(1.1 * len(xs) + 2.6, 0.75 * len(ys) + 1.6))
    ax.imshow(np.where(np.isnan(epochs), 0.82, np.nan), cmap="gray", vmin=0, vmax=1, origin="lower")
    finite = epochs[np.isfinite(epochs)]
    norm = None
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        norm = Normalize(vmin=lo - 1, vmax=hi + 1) if lo == hi else Normalize(vmin=lo, vmax=hi)
        im = ax.imshow(np.ma.masked_invalid(epochs), cmap="viridis", norm=norm, origin="lower")
        fig.colorbar(im, ax=ax, label=f"{column} (epochs to {rule})")
    for i in range(len(ys)):
        for j in range(len(xs)):
            value = epochs[i, j]
            bright = norm is not None and np.isfinite(value) and float(norm(value)) > 0.6
            color = "white" if np.isfinite(value) and not bright else "black"
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(xs)), [_tick(v) for v in xs])
    ax.set_yticks(range(len(ys)), [_tick(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{column}: epochs to {rule} (grey: never; {best_column} shown)", fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
