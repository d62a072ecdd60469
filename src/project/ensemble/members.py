"""Which configs can train together, and a member's own pieces (net, task, schedule, run dir files).

Members of one ensemble share everything but the **ensemble-able** values (``ENSEMBLE_KEYS``):
``seed`` (init and data order), ``data.split_seed``, ``data.shuffle_seed``,
``model.optimizer.lr``, ``model.optimizer.weight_decay`` and the ``model.scheduler`` arguments,
plus what only names the run (``run.*``, paths under ``callbacks``). ``group_key(cfg)`` is equal
for two configs exactly when they can share one vectorised step; ``unsupported(cfg)`` lists why a
config cannot be a member at all (it then runs alone, through the normal path).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

ENSEMBLE_KEYS = (
    "seed",
    "data.split_seed",
    "data.shuffle_seed",
    "model.optimizer.lr",
    "model.optimizer.weight_decay",
    "model.scheduler",
)
RUN_KEYS: tuple[str, ...] = ("hydra", "run", "callbacks.last_checkpoint.dirpath")
RUN_KEYS += ("callbacks.snapshots.dirpath", "callbacks.cloud_sync.run_dir")
CSV_COLUMNS = ["epoch", "lr", "step", "train/acc", "train/loss", "val/acc", "val/loss"]
_ADAMW_DEFAULTS = {"amsgrad": False, "maximize": False, "capturable": False}
# the callbacks the ensemble reproduces (configs/callbacks/default.yaml, data=modular's measures);
# any other callback would be silently skipped, so its job runs alone. epoch_log (per-epoch lines
# in run.log) is the one default it does not write: members' metrics.csv carries the same numbers.
# progress_measures and llc are known only while off (every_n_epochs 0, checked below).
KNOWN_CALLBACKS = {
    "last_checkpoint", "snapshots", "final_validation", "lr_monitor", "preemption", "run_summary",
    "cloud_sync", "progress_bar", "progress_measures", "epoch_log", "llc",
}  # fmt: skip
# Trainer arguments the ensemble loop does not implement, with their defaults
_TRAINER_DEFAULTS: dict[str, Any] = {
    "limit_train_batches": None, "limit_val_batches": None, "val_check_interval": None,
    "fast_dev_run": False, "overfit_batches": 0.0, "min_epochs": None, "max_time": None,
}  # fmt: skip


def _drop(node: dict[Any, Any], dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if rest and isinstance(node.get(head), dict):
        _drop(node[head], rest)
    elif not rest:
        node.pop(head, None)


def group_key(cfg: DictConfig) -> str:
    """The config without its ensemble-able and run-naming values, as canonical JSON."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    for key in (*ENSEMBLE_KEYS, *RUN_KEYS):
        _drop(plain, key)
    return json.dumps(plain, sort_keys=True, default=str)


def _sel(cfg: DictConfig, key: str, default: Any = None) -> Any:
    value = OmegaConf.select(cfg, key, default=default)
    return OmegaConf.to_container(value) if isinstance(value, DictConfig) else value


def unsupported(cfg: DictConfig) -> list[str]:
    """Why ``cfg`` cannot train as an ensemble member (empty: it can)."""
    why = []
    if _sel(cfg, "model._target_") != "project.lit_module.LitCausalLM":
        why.append("model is not project.lit_module.LitCausalLM")
    optimizer = _sel(cfg, "model.optimizer") or {}
    if optimizer.get("_target_") != "torch.optim.AdamW":
        why.append("model.optimizer is not torch.optim.AdamW")
    for key, default in _ADAMW_DEFAULTS.items():
        if optimizer.get(key, default) != default:
            why.append(f"model.optimizer.{key} is set")
    if _sel(cfg, "callbacks.grokfast"):
        why.append("callbacks.grokfast is on")
    if _sel(cfg, "model.compile"):
        why.append("model.compile is on")
    trainer = _sel(cfg, "trainer") or {}
    if str(trainer.get("precision", 32)) not in ("32", "32-true"):
        why.append("trainer.precision is not 32")
    if trainer.get("gradient_clip_val") is not None:
        why.append("trainer.gradient_clip_val is set")
    if trainer.get("accumulate_grad_batches", 1) != 1:
        why.append("trainer.accumulate_grad_batches is set")
    if trainer.get("devices", 1) not in (1, "1", "auto") or trainer.get("num_nodes", 1) != 1:
        why.append("more than one device")
    if trainer.get("max_steps", -1) not in (-1, None) or trainer.get("max_epochs") is None:
        why.append("trainer.max_steps is set (ensembles count epochs)")
    if not isinstance(trainer.get("check_val_every_n_epoch", 1), int):
        why.append("trainer.check_val_every_n_epoch is not an integer")
    for key, default in _TRAINER_DEFAULTS.items():
        allowed: tuple[Any, ...] = (default, 1.0) if key.startswith("limit") else (default,)
        if trainer.get(key, default) not in allowed:
            why.append(f"trainer.{key} is set")
    callbacks = _sel(cfg, "callbacks") or {}
    for name, node in callbacks.items():
        if node and name not in KNOWN_CALLBACKS:
            why.append(f"callbacks.{name} is not one the ensemble reproduces")
    for name in ("progress_measures", "llc"):
        if (callbacks.get(name) or {}).get("every_n_epochs", 0):
            why.append(f"callbacks.{name}.every_n_epochs is not 0")
    snaps = callbacks.get("snapshots") or {}
    if snaps.get("dense_every_n_epochs", 0) or snaps.get("log_spaced", 0):
        why.append("callbacks.snapshots dense/log-spaced snapshots are on")
    summary = callbacks.get("run_summary") or {}
    if summary and (summary.get("monitor"), summary.get("mode")) != ("val/acc", "max"):
        why.append("callbacks.run_summary monitors something else than val/acc (max)")
    if os.environ.get("RCLONE_DEST"):
        why.append("RCLONE_DEST is set (cloud sync)")
    if _sel(cfg, "run.ckpt_path"):
        why.append("run.ckpt_path is set")
    return why


@dataclass
class MemberLog:
    """A member's epoch metrics (the CSV logger's ``metrics.csv``) and its ``RunSummary`` numbers."""

    run_dir: Path
    threshold: float = 0.99
    names: dict[str, str] = field(default_factory=dict)  # RunSummary's reached_as words
    rows: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    best: dict[str, tuple[float, int, int | None]] = field(default_factory=dict)

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.final.update({k: v for k, v in row.items() if k not in ("epoch", "step")})
        if "lr" in row:  # LearningRateMonitor logs a float32 tensor
            self.final["lr"] = float(torch.tensor(row["lr"], dtype=torch.float32))

    def track(self, key: str, value: float, epoch: int) -> None:
        """``RunSummary``'s rule: best value (float32) and the first epoch at the threshold."""
        value = float(torch.tensor(value, dtype=torch.float32))
        best, best_epoch, first = self.best.get(key, (math.nan, -1, None))
        if math.isnan(best) or value > best:
            best, best_epoch = value, epoch
        if first is None and value >= self.threshold:
            first = epoch
        self.best[key] = (best, best_epoch, first)

    def write_csv(self) -> None:
        path = self.run_dir / "csv_logs" / "metrics.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)

    def summary_fields(self) -> dict[str, Any]:
        """The ``RunSummary.summary()`` part of ``summary.json`` (monitor ``val/acc``, max)."""

        def read(key: str) -> tuple[float | None, int | None, int | None]:
            best, epoch, first = self.best.get(key, (math.nan, -1, None))
            return (None if math.isnan(best) else best, epoch if epoch >= 0 else None, first)

        best, best_epoch, first = read("val/acc")
        t_best, t_epoch, t_first = read("train/acc")
        return {
            "monitor": "val/acc", "mode": "max", "threshold": self.threshold, "best": best,
            "best_epoch": best_epoch, "reached_epoch": first, "train_best": t_best,
            "train_best_epoch": t_epoch, "train_reached_epoch": t_first, "names": self.names,
        }  # fmt: skip

    def callback_state(self) -> dict[str, float]:
        """``RunSummary.state_dict()`` form, for ``last.ckpt``."""
        state = {}
        for key, (best, epoch, first) in self.best.items():
            state.update({f"{key}:best": best, f"{key}:best_epoch": float(epoch)})
            state[f"{key}:first"] = float(first) if first is not None else -1.0
        return state


def write_summary(
    log: MemberLog, status: str, epochs: int, steps: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """``summary.json`` in the single run's shape; the one-screen lines appended to ``run.log``."""
    from project.summary import RunRecord, summary_lines

    run_dir = log.run_dir
    ckpt_dir = run_dir / "checkpoints"
    summary = RunRecord(
        run_dir=str(run_dir),
        status=status,
        epochs=epochs,
        steps=steps,
        final={k: float(v) for k, v in sorted(log.final.items())},
        **log.summary_fields(),
        checkpoints=sorted(p.name for p in ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else [],
        logs=["run.log", "csv_logs"],
        **extra,
    )
    summary.write(run_dir)
    with (run_dir / "run.log").open("a") as f:
        f.write("\n".join(summary_lines(summary)) + "\n")
    return summary.to_dict()
