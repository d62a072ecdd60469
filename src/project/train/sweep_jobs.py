"""Resumable sweeps: rerun the same multirun command into the same ``hydra.sweep.dir`` and each
job decides from its own dir (any launcher): ``skip`` (``summary.json`` says finished: its final
metrics go to the sweeper), ``resume`` (a ``last.ckpt`` and no finished summary), ``fresh``. A job
dir holding a *different* config stops the job with one line. Each decision is appended to
``<job dir>/attempts.jsonl``. Also the objective a job returns to the sweeper.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from project.summary import RunRecord, read_summary

ATTEMPTS_FILE = "attempts.jsonl"
_IGNORED_KEYS = ("run.ckpt_path",)


@dataclass
class JobPlan:
    action: str  # "fresh" | "resume" | "skip"
    ckpt_path: str | None = None
    from_epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def skip(self) -> bool:
        return self.action == "skip"


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


def config_differences(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs. Ignored: ``run.ckpt_path``,
    and keys left empty (null / ``???``) in ``current`` that the run fills in when it builds
    (``model.net.d_vocab`` ... from the task)."""
    a, b = _flatten(previous), _flatten(current)
    return sorted(
        k
        for k in set(a) | set(b)
        if a.get(k) != b.get(k) and k not in _IGNORED_KEYS and b.get(k) not in (None, "???")
    )


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    from project.build import redact_secrets

    loaded = yaml.safe_load(redact_secrets(OmegaConf.to_yaml(cfg, resolve=True)))
    return loaded if isinstance(loaded, dict) else {}


def decide(cfg: DictConfig, job_dir: Path) -> JobPlan:
    """What a sweep job should do in ``job_dir`` (see the module docstring)."""
    from project.checkpoint import CheckpointError, read_checkpoint

    saved = job_dir / "resolved_config.yaml"
    if not saved.is_file():
        return JobPlan("fresh")
    previous = yaml.safe_load(saved.read_text()) or {}
    if changed := config_differences(previous, _resolved(cfg)):
        shown = ", ".join(changed[:5]) + (
            f" (+{len(changed) - 5} more)" if len(changed) > 5 else ""
        )
        print(
            f"error: hydra.sweep.dir job {job_dir} is invalid: it holds a run with a different "
            f"config ({shown}); allowed: the same sweep command, or a new hydra.sweep.dir",
            file=sys.stderr,
        )
        raise SystemExit(2)
    record = read_summary(job_dir)
    if record is not None and record.status == "finished":
        return JobPlan("skip", from_epoch=record.epochs, metrics=record.final)
    last = job_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        try:
            ckpt = read_checkpoint(last)
        except CheckpointError as exc:  # unreadable: start over rather than fail the sweep
            print(f"warning: {exc}; job {job_dir} starts fresh", file=sys.stderr)
            return JobPlan("fresh")
        return JobPlan("resume", ckpt_path=str(last), from_epoch=int(ckpt.get("epoch", 0)) + 1)
    return JobPlan("fresh")


def plan_job(cfg: DictConfig, job_dir: Path, record: bool = True) -> JobPlan:
    """``decide`` for a multirun job (recorded in ``attempts.jsonl`` when ``record``: rank zero)."""
    plan = decide(cfg, job_dir)
    if not record:
        return plan
    entry = {"action": plan.action, "from_epoch": plan.from_epoch, "time": time.time()}
    import torch

    entry.update(pid=os.getpid(), torch_threads=torch.get_num_threads())
    with (job_dir / ATTEMPTS_FILE).open("a") as f:
        f.write(json.dumps(entry) + "\n")
    if plan.action != "fresh":
        what = "finished before: skipped" if plan.skip else f"resumed after epoch {plan.from_epoch}"
        print(f"sweep job {job_dir.name}: {what} ({job_dir})", flush=True)
    return plan


def read_attempts(job_dir: str | Path) -> list[dict[str, Any]]:
    """The decisions recorded for a job dir, oldest first."""
    path = Path(job_dir) / ATTEMPTS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def penalty(max_epochs: int | None, best: float | None) -> float:
    """Objective of a run that never reached the threshold: ``max_epochs * (2 - best)`` with
    ``best`` clipped to [0, 1] (0 when never validated): worse than any run that got there, and
    closer runs rank better (a slope for the sampler on a flat region)."""
    closeness = 0.0 if best is None or math.isnan(best) else min(max(float(best), 0.0), 1.0)
    return float(max(max_epochs or 0, 1)) * (2.0 - closeness)


def objective(record: RunRecord | None, max_epochs: int | None) -> float:
    """The value a run returns to Hydra's sweeper (Optuna minimises it): epochs until the
    monitored metric reached its threshold, else the penalty."""
    if record is None:
        return penalty(max_epochs, None)
    if record.reached_epoch is not None:
        return float(record.reached_epoch)
    best = record.best if record.mode == "max" else None  # a min metric has no [0, 1] scale
    if max_epochs is None or max_epochs <= 0:  # no epoch limit: the epochs it ran instead
        max_epochs = int(record.epochs or 0)
    return penalty(max_epochs, best)


def run_objective(run_dir: str | Path, max_epochs: int | None, metric: str | None = None) -> float:
    """What a finished run returns to Hydra's sweeper (config ``optimized_metric``, as in
    lightning-hydra-template): null -> ``objective`` (epochs to the threshold); a metric name ->
    its final value in the record (NaN when the run did not log it: Optuna marks the trial failed).
    """
    record = read_summary(run_dir)
    if metric:
        return float(record.final.get(metric, math.nan)) if record else math.nan
    return objective(record, max_epochs)
