"""Run trajectories: a run dir's config, record, metric history, live records and snapshots.

    from project.runs.load import load_run
    run = load_run("outputs/2025-01-01/12-00-00")
    run.config["model"]["optimizer"]["lr"]   # resolved config (plain dict)
    run.record                         # summary.json as a RunRecord (None: the run wrote none)
    run.reached                        # when the monitored metric reached its threshold
    run.metrics                        # DataFrame: step, epoch (completed), train/loss, ... per step
    run.progress                       # DataFrame of progress.jsonl (one row per measured epoch)
    for epoch, model in run.snapshots():   # lazy: one checkpoint in memory at a time
        ...

Metric history comes from the first source present (:func:`read_metrics`, the one reader of the
loggers' files): ``csv_logs/metrics.csv`` (CSV logger), ``tb_logs`` event files (TensorBoard),
else the train/val columns of ``progress.jsonl`` (so ``logger=none`` runs still have a coarse
history).

The threshold epochs (:func:`reached`) come from the run's record; a run without one (crashed,
still running) gets them from its metric history by :func:`first_epoch_at`, the one place that
rule lives, with the run's ``callbacks.run_summary`` settings (``val/acc >= 0.99`` when its config
has none), and says so in ``Reached.source``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from torch import nn

from project.checkpoint import snapshot_paths
from project.stored import load_checkpoint  # noqa: F401
from project.summary import RunRecord, read_summary, train_twin

# what a run without a record or a callbacks.run_summary config is read with
DEFAULT_MONITOR, DEFAULT_MODE, DEFAULT_THRESHOLD = "val/acc", "max", 0.99
_PROGRESS_TO_METRIC = {
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "val_loss": "val/loss",
    "val_acc": "val/acc",
}


@dataclass
class Run:
    """One training run dir. ``metrics`` and ``progress`` are read once; snapshots lazily."""

    run_dir: Path
    config: dict[str, Any]
    metrics: pd.DataFrame
    progress: pd.DataFrame
    metrics_source: str
    snapshot_paths: list[tuple[int, Path]] = field(default_factory=list)

    @functools.cached_property
    def record(self) -> RunRecord | None:
        """The run's ``summary.json`` (``project.summary.read_summary``); None when it wrote none."""
        return read_summary(self.run_dir)

    @functools.cached_property
    def reached(self) -> Reached:
        """When the monitored metric (and its train twin) first reached the threshold."""
        return reached(self)

    @property
    def task(self) -> str:
        """The task's class path (``data._target_``; ``?`` when the config names none)."""
        return str((self.config.get("data") or {}).get("_target_", "?"))

    @property
    def epochs(self) -> list[int]:
        """Epochs (completed) that have a snapshot, ascending."""
        return [epoch for epoch, _ in self.snapshot_paths]

    def snapshots(
        self, device: torch.device | str | None = None, every: int = 1
    ) -> Iterator[tuple[int, nn.Module]]:
        """Lazily yield ``(epoch, model in eval mode)`` for every ``every``-th snapshot, ascending."""
        for epoch, path in self.snapshot_paths[::every]:
            model, _ = load_checkpoint(path, device)
            yield epoch, model

    def final_model(self, device: torch.device | str | None = None) -> nn.Module:
        """The model of ``checkpoints/last.ckpt`` (else the latest snapshot)."""
        last = self.run_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            return load_checkpoint(last, device)[0]
        if not self.snapshot_paths:
            raise FileNotFoundError(f"no checkpoints in {self.run_dir / 'checkpoints'}")
        return load_checkpoint(self.snapshot_paths[-1][1], device)[0]

    def _data_node(self) -> dict[str, Any]:
        from project.stored import RENAMED_TASKS

        data = dict(self.config.get("data") or {})
        if "_target_" not in data:
            raise ValueError(f"{self.run_dir}: resolved_config.yaml names no data._target_")
        data["_target_"] = RENAMED_TASKS.get(data["_target_"], data["_target_"])
        return data

    def datamodule(self) -> Any:
        """The run's task rebuilt from its config (``data._target_``: same class, same split)."""
        from project.stored import build_task

        return build_task(self.run_dir, {"data": self._data_node()})

    def task_class(self) -> type:
        """The class ``data._target_`` names (a ``LightningDataModule`` you can import:
        ``project.stored``), without building it."""
        from project.stored import locate_class

        source = str(self.run_dir / "resolved_config.yaml")
        return locate_class(self._data_node()["_target_"], "data", source, self.run_dir)

    def history(self, name: str) -> pd.DataFrame:
        """``epoch`` and ``name`` columns of the rows where ``name`` was logged."""
        if name not in self.metrics:
            return pd.DataFrame(columns=["epoch", name])
        rows = self.metrics[["epoch", name]].dropna()
        return rows.reset_index(drop=True)


def last_attempt_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of a log that a resume appended to, each epoch's from its last attempt.

    A run killed (``kill -9``) after its last checkpoint and resumed from it writes the epochs
    since that checkpoint again: the file holds attempt after attempt, each starting where the
    ``epoch`` (or ``step``) goes back. Each attempt's rows at or past the epoch the next attempt
    starts from are dropped (keep the last of each epoch; a resumed run reproduces them bit for
    bit, so only the count changes); a log without such a restart is returned as it is.
    """
    if df.empty or "epoch" not in df:
        return df
    epoch = pd.to_numeric(df["epoch"], errors="coerce").ffill()
    back = epoch.diff() < 0
    if "step" in df and epoch.isna().all():  # rows of one epoch may log steps out of order
        back |= pd.to_numeric(df["step"], errors="coerce").ffill().diff() < 0
    if not back.any():
        return df
    attempt = back.cumsum()
    starts = epoch.groupby(attempt).min()  # the epoch each attempt starts from
    later = starts[::-1].cummin()[::-1].shift(-1)  # the earliest restart after each attempt
    cut = attempt.map(later)
    keep = cut.isna() | epoch.isna() | (epoch < cut)
    return df[keep.to_numpy()].reset_index(drop=True)


def _read_csv_metrics(path: Path) -> pd.DataFrame:
    df = last_attempt_rows(pd.read_csv(path))
    if "step" not in df:
        df["step"] = range(len(df))
    return df.groupby("step", as_index=False).last()  # a step's train and val rows, merged


def _read_tb_metrics(log_dir: Path) -> pd.DataFrame:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, dict[int, float]] = {}
    for events in sorted({f.parent for f in log_dir.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            for event in acc.Scalars(tag):
                series.setdefault(tag, {})[event.step] = event.value  # resume: later wins
    if not series:
        return pd.DataFrame(columns=["step", "epoch"])
    df = pd.DataFrame(series)
    df.index.name = "step"
    return df.sort_index().reset_index()


def _read_progress(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=["epoch", "step"])
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
    if not records:
        return pd.DataFrame(columns=["epoch", "step"])
    df = pd.DataFrame(records).drop_duplicates("epoch", keep="last")  # a resumed run repeats
    return df.sort_values("epoch").reset_index(drop=True)


def _metrics_from_progress(progress: pd.DataFrame) -> pd.DataFrame:
    cols = {k: v for k, v in _PROGRESS_TO_METRIC.items() if k in progress}
    if progress.empty or not cols:
        return pd.DataFrame(columns=["step", "epoch"])
    df = progress[["step", "epoch", *cols]].rename(columns=cols)
    return df[df["epoch"] >= 1].reset_index(drop=True)  # completed epochs, like the loggers


def first_epoch_at(epochs: Any, values: Any, threshold: float, mode: str = "max") -> int | None:
    """First epoch whose value reaches ``threshold`` (``>=``; ``<=`` for ``mode="min"``), or None.

    The one place this rule lives: the runs table, the report and the sweep tools all use it
    (through :func:`reached`) when a run has no record.
    """
    import numpy as np

    values = np.asarray(values, dtype=float)
    hits = np.flatnonzero(values >= threshold if mode == "max" else values <= threshold)
    return int(np.asarray(epochs)[hits[0]]) if len(hits) else None


@dataclass(frozen=True)
class Reached:
    """When a run's monitored metric first reached its threshold (completed epochs; None: never).

    ``names`` maps the generic fields (``reached_epoch``, ``train_reached_epoch``) to the task's
    own words (``RunRecord.names``); ``source`` says where the numbers come from.
    """

    monitor: str
    mode: str
    threshold: float
    epoch: int | None
    train_epoch: int | None
    best: float | None
    source: str
    names: dict[str, str] = field(default_factory=dict)

    @property
    def train_monitor(self) -> str | None:
        return train_twin(self.monitor)

    @property
    def op(self) -> str:
        return ">=" if self.mode == "max" else "<="

    @property
    def best_column(self) -> str:
        """``best_val_acc`` for ``val/acc``: the runs table's column of the best value."""
        return "best_" + self.monitor.replace("/", "_")

    def word(self, generic: str) -> str:
        """The task's word for a generic field (``RunRecord.names``), else the field's own name."""
        return self.names.get(generic, generic)

    def rule(self, train: bool = False) -> str:
        """``val/acc >= 0.99`` (``train/acc >= 0.99`` for the train twin)."""
        return f"{self.train_monitor if train else self.monitor} {self.op} {self.threshold:g}"

    def line(self, train: bool = False) -> str:
        """``val/acc >= 0.99 at epoch 220`` (``never`` when not reached)."""
        epoch = self.train_epoch if train else self.epoch
        return f"{self.rule(train)} " + (f"at epoch {epoch}" if epoch is not None else "never")

    def epochs(self) -> dict[str, int | None]:
        """``reached_epoch``, ``train_reached_epoch`` and each task word for them -> the epoch."""
        out = {"reached_epoch": self.epoch, "train_reached_epoch": self.train_epoch}
        out.update({word: out.get(generic) for generic, word in self.names.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the settings, the generic fields and each task word as a key of its own."""
        out: dict[str, Any] = {
            "monitor": self.monitor,
            "mode": self.mode,
            "threshold": self.threshold,
            "source": self.source,
            "reached_epoch": self.epoch,
            "train_monitor": self.train_monitor,
            "train_reached_epoch": self.train_epoch,
            "best": self.best,
            "names": dict(self.names),
        }
        for generic, word in self.names.items():
            out[word] = out.get(generic)
        return out


def _config_settings(config: dict[str, Any]) -> dict[str, Any] | None:
    """``callbacks.run_summary`` of a run's config: monitor, mode, threshold and the task's words."""
    node = (config.get("callbacks") or {}).get("run_summary")
    if not isinstance(node, dict) or not node.get("monitor"):
        return None
    names = {
        generic: str(node[key])
        for generic, key in (("reached_epoch", "reached_as"), ("train_reached_epoch", "train_reached_as"))
        if node.get(key)
    }  # fmt: skip
    return {
        "monitor": str(node["monitor"]),
        "mode": str(node.get("mode", DEFAULT_MODE)),
        "threshold": float(node.get("threshold", DEFAULT_THRESHOLD)),
        "names": names,
    }


def recorded(record: RunRecord | None) -> Reached | None:
    """The threshold epochs a run's record holds; None without a record or a monitor in it."""
    if record is None or not record.monitor:
        return None
    return Reached(
        monitor=record.monitor,
        mode=record.mode,
        threshold=float(record.threshold if record.threshold is not None else DEFAULT_THRESHOLD),
        epoch=record.reached_epoch,
        train_epoch=record.train_reached_epoch,
        best=record.best,
        source=f"summary.json (version {record.version})",
        names=dict(record.names),
    )


def reached(run: Run) -> Reached:
    """The threshold epochs of ``run``: from its record (``summary.json``) when it has one that
    names a monitor; else computed from its metric history (:func:`first_epoch_at`) with its
    config's ``callbacks.run_summary`` settings, or ``val/acc >= 0.99`` when it has none."""
    record = run.record
    found = recorded(record)
    if found is not None:
        return found
    settings = _config_settings(run.config)
    why = "no summary.json" if record is None else "summary.json names no monitor"
    if settings is None:
        settings = {"monitor": DEFAULT_MONITOR, "mode": DEFAULT_MODE,
                    "threshold": DEFAULT_THRESHOLD, "names": {}}  # fmt: skip
        source = f"metric history ({why}; no callbacks.run_summary in its config: "
        source += f"{DEFAULT_MONITOR} >= {DEFAULT_THRESHOLD:g} assumed)"
    else:
        source = f"metric history ({why}; settings from callbacks.run_summary)"
    monitor, mode, threshold = settings["monitor"], settings["mode"], settings["threshold"]

    def first(metric: str | None) -> tuple[int | None, float | None]:
        rows = run.history(metric) if metric else pd.DataFrame()
        if not len(rows):
            return None, None
        values = rows[metric].astype(float)
        best = float(values.max() if mode == "max" else values.min())
        return first_epoch_at(rows["epoch"].to_numpy(), values.to_numpy(), threshold, mode), best

    epoch, best = first(monitor)
    train_epoch, _ = first(train_twin(monitor))
    return Reached(monitor, mode, threshold, epoch, train_epoch, best, source, settings["names"])


def read_metrics(
    run_dir: str | Path, progress: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, str]:
    """The metric history of a run dir and its source (``csv``, ``tensorboard``,
    ``progress.jsonl``): one row per logged step, ``epoch`` = completed epochs.

    Rows written twice by a resume (the epochs redone after a ``kill -9``) are read once: every
    source keeps the last of each epoch (``metrics.csv``: :func:`last_attempt_rows`; TensorBoard:
    the last value at each step; ``progress.jsonl``: the last record of each epoch)."""
    run_dir = Path(run_dir)
    csv_files = sorted(run_dir.glob("csv_logs/**/metrics.csv"))
    if csv_files:
        metrics, source = _read_csv_metrics(csv_files[-1]), "csv"
    elif any((run_dir / "tb_logs").rglob("events.out.tfevents.*")):
        metrics, source = _read_tb_metrics(run_dir / "tb_logs"), "tensorboard"
    else:
        if progress is None:
            progress = _read_progress(run_dir / "progress.jsonl")
        metrics, source = _metrics_from_progress(progress), "progress.jsonl"
    if "epoch" not in metrics and "step" in metrics:
        metrics["epoch"] = metrics["step"]
    elif source != "progress.jsonl" and "epoch" in metrics:
        metrics["epoch"] = metrics["epoch"] + 1  # the loggers' 0-based epoch index -> completed
    return metrics, source


def load_run(run_dir: str | Path) -> Run:
    """Load a run dir written by ``project.train.run``.

    Every ``epoch`` here counts *completed* epochs, as the summary, ``project.eval``, snapshot
    names and the report do: ``metrics`` rows logged at the end of the loggers' epoch index ``e``
    (0-based) have ``epoch = e + 1``; ``step`` is the optimiser step.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run dir {str(run_dir)!r} does not exist")
    config_path = run_dir / "resolved_config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    progress = _read_progress(run_dir / "progress.jsonl")
    metrics, source = read_metrics(run_dir, progress)
    snapshots = snapshot_paths(run_dir / "checkpoints")  # epoch_N.ckpt, and older epoch=N.ckpt
    return Run(run_dir, config or {}, metrics, progress, source, snapshots)
