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
(final), ``threshold`` (the rule, e.g. ``val/acc >= 0.99``), ``best_<monitor>`` (``best_val_acc``
for ``val/acc``), ``reached_epoch`` and ``train_reached_epoch`` (first completed epoch at which the
monitored metric / its train twin reached the threshold; NaN when never reached) and ``synced``.
A task that gives those epochs its own words (``RunRecord.names``, from its config's
``callbacks.run_summary.reached_as`` / ``train_reached_as``) has its columns named so. Columns empty for
every row are dropped, except a threshold-epoch column some run's rule defines ("never" is news).
Which columns hold the threshold epochs and best values is in ``df.attrs["columns"]``
(:func:`threshold_columns` reads it).

Numbers come from ``summary.json`` (read as a ``project.summary.RunRecord``); runs without it
(crashed or still running: status ``incomplete``) fall back to their metric history (CSV or
TensorBoard logs, through ``project.runs.load``, with the same threshold rule).

A run dir with a malformed file (``summary.json`` not a JSON object, ``.hydra/overrides.yaml``
not a list, ``resolved_config.yaml`` not a mapping, a metric log that cannot be parsed) is still a
row, with status ``unreadable``, what could be read (a malformed ``summary.json``: the metric
history instead) and a ``problems`` column; the CLI prints one ``warning:`` line per such run
naming the file and what is allowed, and exits 0: one damaged run of a sweep should not hide the
others. Bad arguments of the command itself (a root that does not exist, a ``--csv`` or ``--png``
path that cannot be written) are one ``error:`` line and exit 2, before any run is read.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from project.runs import checks
from project.runs.load import Reached, Run, load_run, read_metrics, recorded
from project.runs.sweep import threshold_columns  # used here; also importable from here
from project.summary import read_summary

_SKIP_OVERRIDES = ("run.output_root", "hydra.", "run.ckpt_path")
_FINALS = ("train/acc", "val/acc", "train/loss", "val/loss")


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
    """The run's command-line overrides (``.hydra/overrides.yaml``); none when that file is not a
    list of strings (``checks.overrides_problem`` says so)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file() or checks.overrides_problem(run_dir):
        return []
    items = yaml.safe_load(path.read_text()) or []
    return [o for o in items if not o.lstrip("+~").startswith(_SKIP_OVERRIDES)]


def _history_only(run_dir: Path) -> Run:
    """A run read from its metric history alone (its config is unreadable): the threshold rule is
    the default one."""
    metrics, source = read_metrics(run_dir)
    return Run(run_dir, {}, metrics, pd.DataFrame(columns=["epoch", "step"]), source)


def _parse(value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _finals(values: Any) -> dict[str, float]:
    """``train_acc``, ``val_acc``, ``train_loss``, ``val_loss`` from a mapping of metric names."""
    return {k.replace("/", "_"): _num(values.get(k)) for k in _FINALS}


def _reached_fields(r: Reached) -> dict[str, Any]:
    """The row's threshold columns, named by the task's words where it has them."""
    row: dict[str, Any] = {"threshold": r.rule(), r.best_column: _num(r.best)}
    if r.train_monitor:
        row[r.word("train_reached_epoch")] = _num(r.train_epoch)
    row[r.word("reached_epoch")] = _num(r.epoch)
    return row


def summarise_run(run_dir: str | Path) -> dict[str, Any]:
    """One row of ``collect_runs``. ``_columns`` (dropped by ``collect_runs``) lists the row's
    threshold columns by kind: ``reached``, ``train_reached``, ``best``."""
    run_dir = Path(run_dir)
    problems = [p for check in (checks.overrides_problem, checks.summary_problem,
                                checks.config_problem) if (p := check(run_dir))]  # fmt: skip
    try:
        row = _summarise(run_dir, config_ok=checks.config_problem(run_dir) is None)
    except ValueError as exc:  # a metric log pandas cannot parse (EmptyDataError, ParserError)
        problems.append(f"{run_dir}: its metric history cannot be read ({exc}); allowed: the "
                        "CSV / TensorBoard logs and progress.jsonl project.train.run writes")  # fmt: skip
        row = {"run_dir": str(run_dir), "overrides": " ".join(_overrides(run_dir)), "_columns": {}}
    if problems:
        row["status"] = "unreadable"
        row["problems"] = "\n".join(problems)  # one line each
    return row


def _summarise(run_dir: Path, config_ok: bool) -> dict[str, Any]:
    overrides = _overrides(run_dir)
    row: dict[str, Any] = {"run_dir": str(run_dir), "overrides": " ".join(overrides)}
    if checks.overrides_problem(run_dir):
        row["overrides"] = None  # unknown, not "none": the table shows "?"
    for ov in overrides:
        key, sep, value = ov.lstrip("+~").partition("=")
        if sep:
            row[key] = _parse(value)

    def load() -> Run:
        return load_run(run_dir) if config_ok else _history_only(run_dir)

    record = read_summary(run_dir)
    if record is not None:
        row.update(status=record.status, epochs=record.epochs, **_finals(record.final))
        r = recorded(record) or load().reached
        row["synced"] = None if not record.sync else bool(record.sync.get("ok"))
    else:
        run = load()
        r = run.reached
        row["status"] = "incomplete"
        history = run.metrics
        if len(history):
            last = history.ffill().iloc[-1]
            row.update(epochs=int(last["epoch"]), **_finals(last))  # completed epochs
    row.update(_reached_fields(r))
    row["_columns"] = {
        "reached": r.word("reached_epoch"),
        "train_reached": r.word("train_reached_epoch") if r.train_monitor else None,
        "best": r.best_column,
    }
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
    "threshold",
]
TAIL = ["synced", "problems"]


def collect_runs(*roots: str | Path) -> pd.DataFrame:
    """One row per run dir under ``roots`` (default ``outputs`` and ``multirun``), oldest first."""
    rows = [summarise_run(d) for d in find_run_dirs(roots or DEFAULT_ROOTS)]
    kinds: dict[str, list[str]] = {"best": [], "train_reached": [], "reached": []}
    for row in rows:
        for kind, col in row.pop("_columns", {}).items():
            if col and col not in kinds[kind]:
                kinds[kind].append(col)
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df:
            df[col] = None
    defined = kinds["train_reached"] + kinds["reached"]  # kept: "never reached" is news
    ordered = COLUMNS + kinds["best"] + defined + TAIL
    extra = [c for c in df.columns if c not in ordered]  # the override keys
    df = df[[c for c in ordered if c in df.columns] + extra]
    droppable = COLUMNS[3:] + kinds["best"] + TAIL
    df = df.drop(columns=[c for c in droppable if c in df and df[c].isna().all()])
    df.attrs["columns"] = {k: [c for c in v if c in df.columns] for k, v in kinds.items()}
    return df


def format_table(df: pd.DataFrame) -> str:
    """The CLI table: overrides that differ between runs (shared ones in a header line), final
    accuracies (losses when no accuracy was logged), the threshold epochs, run dir."""
    if df.empty:
        return "no runs found"

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    def num(v: Any) -> str:
        return "-" if missing(v) else f"{float(v):.3f}"

    def count(v: Any) -> str:
        return "-" if missing(v) else str(int(v))

    known = [not missing(o) for o in df["overrides"]]  # None: its overrides.yaml is unreadable
    split = [str(o or "").split() for o in df["overrides"]]
    kept = [o for o, k in zip(split, known, strict=True) if k]
    common = set.intersection(*(set(o) for o in kept)) if len(kept) > 1 else set()
    varying = [
        (" ".join(o for o in ovs if o not in common) or "(same)") if k else "?"
        for ovs, k in zip(split, known, strict=True)
    ]
    table = pd.DataFrame({"overrides": varying, "status": df["status"]})
    table["epochs"] = [count(v) for v in df["epochs"]] if "epochs" in df else "-"
    finals = [c for c in ("train_acc", "val_acc") if c in df]
    for col in finals or [c for c in ("train_loss", "val_loss") if c in df]:
        table[col] = [num(v) for v in df[col]]
    for col in threshold_columns(df, "reached"):
        table[col] = [count(v) for v in df[col]]
    table["run_dir"] = df["run_dir"]
    text = table.to_string(index=False, justify="left")
    if common:
        text = f"common overrides: {' '.join(o for o in kept[0] if o in common)}\n{text}"
    return text


def optuna_results(roots: Iterable[str | Path]) -> list[str]:
    """``optuna: best value V (<file>): key=value ...`` for each ``optimization_results.yaml``."""
    lines = []
    for root in roots:
        for path in sorted(Path(root).glob("**/optimization_results.yaml")):
            try:
                res = yaml.safe_load(path.read_text()) or {}
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                res = None
            if not isinstance(res, dict):
                lines.append(f"optuna: {path} is not a mapping of best_value and best_params")
                continue
            params = " ".join(f"{k}={v}" for k, v in (res.get("best_params") or {}).items())
            lines.append(f"optuna: best value {res.get('best_value')} ({path}): {params}")
    return lines


DEFAULT_ROOTS = ("outputs", "multirun")


def _argument_problem(args: argparse.Namespace) -> str | None:
    """A root given on the command line that is not there (the default roots may be absent: no
    runs yet), an output path that cannot be written; checked before any run is read."""
    for root in map(Path, args.roots):
        if not root.exists():
            return (f"{root} does not exist; allowed: run dirs or dirs holding them "
                    f"(default: {' '.join(DEFAULT_ROOTS)})")  # fmt: skip
        if not root.is_dir():
            return f"{root} is not a directory; allowed: run dirs or dirs holding them"
    if args.csv and (problem := checks.file_problem(args.csv, "--csv")):
        return problem
    if args.phase_diagram and args.png and (problem := checks.file_problem(args.png, "--png")):
        return problem
    return None


def main(argv: list[str] | None = None) -> None:
    from project.runs import sweep

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="*", help="run dirs or dirs holding them (default: "
                        "outputs/ multirun/)")  # fmt: skip
    parser.add_argument("--csv", help="also write the full table to this CSV file")
    parser.add_argument(
        "--phase-diagram",
        nargs=2,
        metavar=("KEY_X", "KEY_Y"),
        help="write a heatmap of the threshold epochs over two swept keys (PNG) and print its table",
    )
    parser.add_argument("--png", help="phase diagram file (default: <first root>/phase_X_Y.png)")
    args = parser.parse_args(argv)
    if problem := _argument_problem(args):
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    roots = args.roots or list(DEFAULT_ROOTS)
    df = collect_runs(*roots)
    with pd.option_context("display.width", 250, "display.max_colwidth", 120):
        print(format_table(df))
        for problems in df["problems"].dropna() if "problems" in df else []:
            for line in str(problems).splitlines():
                print(f"warning: {line}", file=sys.stderr)
        stats = sweep.seed_stats(df)
        if not stats.empty:  # runs that differ only in seed
            print("\n" + sweep.format_seed_stats(stats))
        for line in optuna_results(roots):
            print(line)
        if args.phase_diagram:
            x, y = args.phase_diagram
            try:
                cells = sweep.phase_table(df, x, y)
            except ValueError as exc:
                raise SystemExit(f"error: {exc}") from None
            png = Path(args.png or Path(roots[0]) / f"phase_{x}_{y}.png")
            sweep.plot_phase_diagram(cells, x, y, png)
            print("\n" + sweep.format_phase_table(cells, x, y))
            print(f"wrote {png}")
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {args.csv} ({len(df)} runs)")


if __name__ == "__main__":
    main()
