"""Collect finished (and unfinished) runs into one table.

    uv run python -m project.runs outputs/ multirun/            # table, newest last
    uv run python -m project.runs multirun/ --csv sweep.csv     # also write a CSV
    uv run python -m project.runs <sweep dir> --phase-diagram model.optimizer.weight_decay \\
        data.frac_train                                          # + heatmap PNG and its table

Runs that differ only in ``seed`` are also summarised as mean ± std (n) per config
(``project.runs.sweep``), and an Optuna sweep's ``optimization_results.yaml`` is shown.

In Python, ``collect_runs("outputs", "multirun")`` returns a ``pandas.DataFrame`` with one row per
run dir: ``run_dir``, ``overrides`` (the command-line overrides as one string), one column per
override key (``seed``, ``data.frac_train``, ... with YAML-parsed values, for plots over
sweeps), ``status``, ``epochs``, ``train_acc``, ``val_acc``, ``train_loss``, ``val_loss``
(final), ``best_val_acc``, ``memorise_epoch`` and ``grok_epoch`` (first epoch with train / val
accuracy >= 0.99; NaN when never reached). Numbers come from ``summary.json`` (written at the end
of every run); runs without it (crashed or still running: status ``incomplete``) fall back to the
CSV or TensorBoard logs in the run dir.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from project.runs.load import first_epoch_at

THRESHOLD = 0.99
_SKIP_OVERRIDES = ("run.output_root", "hydra.", "run.ckpt_path")


def find_run_dirs(roots: Iterable[str | Path]) -> list[Path]:
    """Every run dir (a dir holding ``.hydra/`` or ``summary.json``) under ``roots``, sorted."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for marker in ("**/.hydra", "**/summary.json"):
            for hit in root.glob(marker):
                found.add(hit.parent.resolve())
        if (root / ".hydra").is_dir():
            found.add(root.resolve())
    return sorted(found)


def _overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    items = yaml.safe_load(path.read_text()) or []
    return [o for o in items if not o.lstrip("+~").startswith(_SKIP_OVERRIDES)]


def _parse(value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _history_from_logs(run_dir: Path) -> pd.DataFrame | None:
    """Per-epoch ``train/acc`` and ``val/acc`` from ``csv_logs`` or ``tb_logs`` (None if absent)."""
    csvs = sorted(run_dir.glob("csv_logs/**/metrics.csv"))
    if csvs:
        df = pd.read_csv(csvs[-1])
        return df.groupby("epoch").last().reset_index() if "epoch" in df else None
    events = sorted(run_dir.glob("tb_logs/**/events.out.tfevents.*"))
    if not events:
        return None
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows: dict[int, dict[str, float]] = {}
    for event_file in events:
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags().get("scalars", [])
        step_epoch = {e.step: e.value for e in acc.Scalars("epoch")} if "epoch" in tags else {}
        for tag in ("train/acc", "val/acc"):
            if tag in tags:
                for e in acc.Scalars(tag):
                    rows.setdefault(int(step_epoch.get(e.step, e.step)), {})[tag] = e.value
    if not rows:
        return None
    return pd.DataFrame([{"epoch": k, **v} for k, v in sorted(rows.items())])


def _first_epoch(history: pd.DataFrame, column: str) -> float:
    if column not in history:
        return math.nan
    rows = history[["epoch", column]].dropna()
    first = first_epoch_at(rows["epoch"] + 1, rows[column], THRESHOLD)  # epochs completed
    return math.nan if first is None else float(first)


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def summarise_run(run_dir: str | Path) -> dict[str, Any]:
    """One row of ``collect_runs``."""
    run_dir = Path(run_dir)
    overrides = _overrides(run_dir)
    row: dict[str, Any] = {"run_dir": str(run_dir), "overrides": " ".join(overrides)}
    for ov in overrides:
        key, sep, value = ov.lstrip("+~").partition("=")
        if sep:
            row[key] = _parse(value)
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        s = json.loads(summary_path.read_text())
        final = s.get("final", {})
        sync = s.get("sync")
        row.update(
            status=s.get("status", "finished"),
            epochs=s.get("epochs"),
            train_acc=_num(final.get("train/acc")),
            val_acc=_num(final.get("val/acc")),
            train_loss=_num(final.get("train/loss")),
            val_loss=_num(final.get("val/loss")),
            best_val_acc=_num(s.get("best_val_acc")),
            memorise_epoch=_num(s.get("memorise_epoch")),
            grok_epoch=_num(s.get("grok_epoch")),
            synced=None if not sync else bool(sync.get("ok")),
        )
        return row
    row["status"] = "incomplete"
    history = _history_from_logs(run_dir)
    if history is not None and len(history):
        last = history.ffill().iloc[-1]
        row.update(
            epochs=int(last["epoch"]) + 1,
            train_acc=_num(last.get("train/acc")),
            val_acc=_num(last.get("val/acc")),
            best_val_acc=_num(history["val/acc"].max()) if "val/acc" in history else math.nan,
            memorise_epoch=_first_epoch(history, "train/acc"),
            grok_epoch=_first_epoch(history, "val/acc"),
        )
    return row


COLUMNS = [
    "run_dir",
    "overrides",
    "status",
    "epochs",
    "train_acc",
    "val_acc",
    "train_loss",
    "val_loss",
    "best_val_acc",
    "memorise_epoch",
    "grok_epoch",
    "synced",
]


def collect_runs(*roots: str | Path) -> pd.DataFrame:
    """One row per run dir under ``roots`` (default ``outputs`` and ``multirun``), oldest first."""
    rows = [summarise_run(d) for d in find_run_dirs(roots or ("outputs", "multirun"))]
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df:
            df[col] = None
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra]


def format_table(df: pd.DataFrame) -> str:
    """The CLI table: overrides that differ between runs (shared ones in a header line), final
    accuracies, grokking epoch, run dir."""
    if df.empty:
        return "no runs found"

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    def acc(v: Any) -> str:
        return "-" if missing(v) else f"{float(v):.3f}"

    def count(v: Any) -> str:
        return "-" if missing(v) else str(int(v))

    split = [str(o or "").split() for o in df["overrides"]]
    common = set.intersection(*(set(o) for o in split)) if len(split) > 1 else set()
    varying = [" ".join(o for o in ovs if o not in common) or "(same)" for ovs in split]
    table = pd.DataFrame(
        {
            "overrides": varying,
            "status": df["status"],
            "epochs": [count(v) for v in df["epochs"]],
            "train_acc": [acc(v) for v in df["train_acc"]],
            "val_acc": [acc(v) for v in df["val_acc"]],
            "grok_epoch": [count(v) for v in df["grok_epoch"]],
            "run_dir": df["run_dir"],
        }
    )
    text = table.to_string(index=False, justify="left")
    if common:
        text = f"common overrides: {' '.join(o for o in split[0] if o in common)}\n{text}"
    return text


def optuna_results(roots: Iterable[str | Path]) -> list[str]:
    """``optuna: best value V (<file>): key=value ...`` for each ``optimization_results.yaml``."""
    lines = []
    for root in roots:
        for path in sorted(Path(root).glob("**/optimization_results.yaml")):
            res = yaml.safe_load(path.read_text()) or {}
            params = " ".join(f"{k}={v}" for k, v in (res.get("best_params") or {}).items())
            lines.append(f"optuna: best value {res.get('best_value')} ({path}): {params}")
    return lines


def main(argv: list[str] | None = None) -> None:
    from project.runs import sweep

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="*", default=["outputs", "multirun"])
    parser.add_argument("--csv", help="also write the full table to this CSV file")
    parser.add_argument(
        "--phase-diagram",
        nargs=2,
        metavar=("KEY_X", "KEY_Y"),
        help="write a heatmap of epochs to grok over two swept keys (PNG) and print its table",
    )
    parser.add_argument("--png", help="phase diagram file (default: <first root>/phase_X_Y.png)")
    args = parser.parse_args(argv)
    df = collect_runs(*args.roots)
    with pd.option_context("display.width", 250, "display.max_colwidth", 120):
        print(format_table(df))
        stats = sweep.seed_stats(df)
        if not stats.empty:  # runs that differ only in seed
            print("\n" + sweep.format_seed_stats(stats))
        for line in optuna_results(args.roots):
            print(line)
        if args.phase_diagram:
            x, y = args.phase_diagram
            try:
                cells = sweep.phase_table(df, x, y)
            except ValueError as exc:
                raise SystemExit(f"error: {exc}") from None
            png = Path(args.png or Path(args.roots[0]) / f"phase_{x}_{y}.png")
            sweep.plot_phase_diagram(cells, x, y, png)
            print("\n" + sweep.format_phase_table(cells, x, y))
            print(f"wrote {png}")
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {args.csv} ({len(df)} runs)")


if __name__ == "__main__":
    main()
