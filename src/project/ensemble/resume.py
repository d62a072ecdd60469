"""Resuming an ensemble from its members' ``last.ckpt`` (a killed or preempted ensemble sweep).

A member's ``last.ckpt`` holds what a single run's holds for this (weights, torch's AdamW state,
the scheduler's ``state_dict``, ``RunSummary``'s state, ``epoch`` and ``global_step``), so a
member also resumes from a ``last.ckpt`` that a single run wrote. The group resumes only when every
member has one at the same epoch (they share one step count); otherwise it starts fresh.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from project.ensemble.members import MemberLog


def read_resume(paths: Sequence[Path | None]) -> list[dict[str, Any]] | None:
    """Every member's checkpoint when all have one at the same epoch and step, else None."""
    from project.checkpoint import CheckpointError, read_checkpoint

    if not paths or any(p is None for p in paths):
        return None
    try:
        ckpts = [read_checkpoint(p) for p in paths if p is not None]
    except CheckpointError as exc:
        print(f"ensemble: {exc}; the group starts fresh", flush=True)
        return None
    if len({(c.get("epoch"), c.get("global_step")) for c in ckpts}) != 1:
        print("ensemble: members' last.ckpt are at different epochs; the group starts fresh")
        return None
    if any(not c.get("optimizer_states") for c in ckpts):
        return None
    return ckpts


def net_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    return {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }


def restore_schedule(optimizer: Any, scheduler: Any, ckpt: dict[str, Any]) -> None:
    """The member's scheduler (and its dummy optimiser's current lr) as saved."""
    if scheduler is None or not ckpt.get("lr_schedulers"):
        return
    scheduler.load_state_dict(ckpt["lr_schedulers"][0])
    optimizer.param_groups[0]["lr"] = scheduler.get_last_lr()[0]


def _number(text: str) -> Any:
    if text == "":
        return None
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def restore_log(log: MemberLog, ckpt: dict[str, Any]) -> None:
    """The metric rows up to the checkpoint (later ones are trained again) and ``RunSummary``'s
    best / first-reached values."""
    epoch, step = int(ckpt["epoch"]), int(ckpt["global_step"])
    path = log.run_dir / "csv_logs" / "metrics.csv"
    if path.is_file():
        with path.open() as f:
            for raw in csv.DictReader(f):
                row = {k: _number(v) for k, v in raw.items() if v not in ("", None)}
                keep = row.get("epoch") is not None and row["epoch"] <= epoch
                keep = keep or (row.get("epoch") is None and row.get("step", step) < step)
                if keep:
                    log.log(row)
    state = (ckpt.get("callbacks") or {}).get("RunSummary") or {}
    for key in ("val/acc", "train/acc"):
        best = state.get(f"{key}:best")
        if best is None or math.isnan(float(best)):
            continue
        first = float(state.get(f"{key}:first", -1.0))
        log.best[key] = (
            float(best),
            int(float(state.get(f"{key}:best_epoch", -1.0))),
            int(first) if first >= 0 else None,
        )
