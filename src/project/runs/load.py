"""Run trajectories: a run dir's config, metric history, progress measures and snapshots.

    from project.runs.load import load_run
    run = load_run("outputs/2025-01-01/12-00-00")
    run.config["model"]["optimizer"]["lr"]   # resolved config (plain dict)
    run.metrics                        # DataFrame: step, epoch (completed), train/loss, ... per step
    run.progress                       # DataFrame of progress.jsonl (one row per measured epoch)
    for epoch, model in run.snapshots():   # lazy: one checkpoint in memory at a time
        ...

Metric history comes from the first source present: ``csv_logs/metrics.csv`` (CSV logger),
``tb_logs`` event files (TensorBoard), else the train/val columns of ``progress.jsonl``
(so ``logger=none`` runs still have a coarse history).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from torch import nn

from project.checkpoint import SNAPSHOT_RE, load_checkpoint, snapshot_paths  # noqa: F401

# classes renamed since older runs were written: their run dirs still load
LEGACY_TARGETS = {
    "project.data.lit_data.ModularDataModule": "project.data.modular.ModularDataModule"
}
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

    @property
    def modulus(self) -> int:
        """``data.modulus`` of a modular-arithmetic run (113 when absent)."""
        return int(self.config.get("data", {}).get("modulus", 113))

    @property
    def operation(self) -> str:
        return str(self.config.get("data", {}).get("operation", "add"))

    @property
    def is_modular(self) -> bool:
        """Whether the run's task is modular arithmetic (the Fourier tools apply)."""
        return "modulus" in self.config.get("data", {})

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

    def datamodule(self) -> Any:
        """The run's task rebuilt from its config (``data._target_``: same class, same split)."""
        from project.trust import instantiate_stored, searchpath_dirs

        data = dict(self.config.get("data") or {})
        if "_target_" not in data:
            raise ValueError(f"{self.run_dir}: resolved_config.yaml names no data._target_")
        data["_target_"] = LEGACY_TARGETS.get(data["_target_"], data["_target_"])
        source = str(self.run_dir / "resolved_config.yaml")
        return instantiate_stored(data, "data", source, searchpath_dirs(self.run_dir))

    def history(self, name: str) -> pd.DataFrame:
        """``epoch`` and ``name`` columns of the rows where ``name`` was logged."""
        if name not in self.metrics:
            return pd.DataFrame(columns=["epoch", name])
        rows = self.metrics[["epoch", name]].dropna()
        return rows.reset_index(drop=True)


def _read_csv_metrics(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    if "step" not in df:
        df["step"] = range(len(df))
    return df.groupby("step", as_index=False).first()


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

    The one place this rule lives: the runs table, the report and the sweep tools all use it.
    """
    import numpy as np

    values = np.asarray(values, dtype=float)
    hits = np.flatnonzero(values >= threshold if mode == "max" else values <= threshold)
    return int(np.asarray(epochs)[hits[0]]) if len(hits) else None


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
    csv_files = sorted(run_dir.glob("csv_logs/**/metrics.csv"))
    if csv_files:
        metrics, source = _read_csv_metrics(csv_files[-1]), "csv"
    elif any((run_dir / "tb_logs").rglob("events.out.tfevents.*")):
        metrics, source = _read_tb_metrics(run_dir / "tb_logs"), "tensorboard"
    else:
        metrics, source = _metrics_from_progress(progress), "progress.jsonl"
    if "epoch" not in metrics and "step" in metrics:
        metrics["epoch"] = metrics["step"]
    elif source != "progress.jsonl" and "epoch" in metrics:
        metrics["epoch"] = metrics["epoch"] + 1  # the loggers' 0-based epoch index -> completed
    snapshots = snapshot_paths(run_dir / "checkpoints")  # epoch_N.ckpt, and older epoch=N.ckpt
    return Run(run_dir, config or {}, metrics, progress, source, snapshots)
