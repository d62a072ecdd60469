"""The run record: ``<run_dir>/summary.json``, written at the end of every run.

    record = read_summary("outputs/2025-01-01/12-00-00")   # None when the run wrote none
    record.reached_epoch        # first completed epoch at which `monitor` reached `threshold`
    record.reached_line()       # "val/acc >= 0.99 at epoch 220"

A task's words for the threshold epochs (``reached_as``: ``grok_epoch``) are extra keys, listed in
``names``. Version 1 records (no ``version``; ``grok_epoch`` = ``val/acc >= 0.99``) still read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SUMMARY_FILE = "summary.json"
VERSION = 2


def train_twin(monitor: str) -> str | None:
    """``val/acc`` -> ``train/acc``; None when the name has no ``val/`` prefix."""
    return "train/" + monitor.removeprefix("val/") if monitor.startswith("val/") else None


def task_words(reached_as: str | None, train_reached_as: str | None) -> dict[str, str]:
    """``RunRecord.names`` from ``callbacks.run_summary.{reached_as, train_reached_as}``."""
    words = {"reached_epoch": reached_as, "train_reached_epoch": train_reached_as}
    return {generic: str(word) for generic, word in words.items() if word}


@dataclass
class RunRecord:
    """What ``summary.json`` holds. Epochs are completed epochs (as in snapshot names)."""

    run_dir: str
    status: str = "finished"  # finished | preempted | interrupted | diverged | failed: <why>
    epochs: int = 0
    steps: int = 0
    final: dict[str, float] = field(default_factory=dict)  # last logged value of each metric
    monitor: str | None = None  # callbacks.run_summary.monitor, e.g. val/acc
    mode: str = "max"
    threshold: float | None = None
    best: float | None = None  # best value of `monitor` and its epoch
    best_epoch: int | None = None
    reached_epoch: int | None = None  # first epoch with monitor >= threshold (<= for mode=min)
    train_best: float | None = None  # the same for the train twin (train/acc for val/acc)
    train_best_epoch: int | None = None
    train_reached_epoch: int | None = None
    names: dict[str, str] = field(default_factory=dict)  # a task's words: reached_epoch -> ...
    checkpoints: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    wandb: str | None = None
    sync: dict[str, Any] | None = None
    ensemble: dict[str, Any] | None = None  # an ensemble member: size, train s, pid, threads
    version: int = VERSION

    @property
    def op(self) -> str:
        return ">=" if self.mode == "max" else "<="

    @property
    def train_monitor(self) -> str | None:
        return train_twin(self.monitor) if self.monitor else None

    def reached_line(self, train: bool = False) -> str:
        """``val/acc >= 0.99 at epoch 220`` (``never`` when not reached)."""
        metric = self.train_monitor if train else self.monitor
        epoch = self.train_reached_epoch if train else self.reached_epoch
        when = f"at epoch {epoch}" if epoch is not None else "never"
        return f"{metric} {self.op} {self.threshold} {when}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the fields, plus each task word as a key of its own (``grok_epoch``)."""
        out = asdict(self)
        for generic, word in self.names.items():
            out[word] = out.get(generic)
        return out

    def write(self, run_dir: str | Path | None = None) -> Path:
        path = Path(run_dir or self.run_dir) / SUMMARY_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        data = dict(data)
        if "version" not in data:  # version 1: the grokking words were the only ones
            data.setdefault("reached_epoch", data.get("grok_epoch"))
            data.setdefault("train_reached_epoch", data.get("memorise_epoch"))
            data.setdefault("best", data.get("best_val_acc"))
            if "grok_epoch" in data or "best_val_acc" in data:
                data.setdefault("monitor", "val/acc")
                data.setdefault("threshold", 0.99)
                data["names"] = {
                    "reached_epoch": "grok_epoch",
                    "train_reached_epoch": "memorise_epoch",
                }
            data["version"] = 1
        known = {f for f in cls.__dataclass_fields__}
        record = cls(**{k: v for k, v in data.items() if k in known})
        record.final = {str(k): float(v) for k, v in (record.final or {}).items()}
        return record


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def summary_lines(record: RunRecord) -> list[str]:
    """The one-screen end-of-run summary as plain lines (printed, and appended to ``run.log``)."""
    run_dir = Path(record.run_dir)
    shown = "  ".join(f"{k}={v:.4f}" for k, v in record.final.items() if "/" in k)
    lines = [
        f"run dir:     {run_dir}",
        f"status:      {record.status} after {_count(record.epochs, 'epoch')}, "
        f"{_count(record.steps, 'step')}",
        f"final:       {shown or '-'}",
    ]
    if record.monitor:  # best and threshold of the monitored metric (and its train twin)
        monitor, twin = record.monitor, record.train_monitor
        if record.best is None:
            best = f"best:        nothing was validated ({monitor} never logged)"
        else:
            best = f"best:        {monitor}={_fmt(record.best)} (epoch {record.best_epoch})"
            if twin and record.train_best is not None:
                best += f"  {twin}={_fmt(record.train_best)}"
        reached = [record.reached_line(train=True)] if twin else []
        lines += [best, "threshold:   " + "; ".join([*reached, record.reached_line()])]
    ckpts = record.checkpoints
    if ckpts:
        more = f", ... ({len(ckpts)} files)" if len(ckpts) > 3 else ""
        lines.append(f"checkpoints: {run_dir / 'checkpoints'}/  {', '.join(ckpts[:3])}{more}")
    else:
        lines.append("checkpoints: none")
    lines.append(f"logs:        {', '.join(record.logs)}  (in the run dir)")
    if record.wandb:
        lines.append(record.wandb)
    lines.append(
        record.sync["line"] if record.sync else "sync:        off (set RCLONE_DEST to copy runs)"
    )
    return lines


ALLOWED = f"allowed: the JSON object project.train.run writes (or no {SUMMARY_FILE})"


def _load(run_dir: str | Path) -> tuple[RunRecord | None, str | None]:
    """The record, or None and what is wrong with an unreadable ``summary.json``."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.exists():
        return None, None
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path} cannot be read ({exc}); {ALLOWED}"
    if not text.strip():
        return None, f"{path} is empty; {ALLOWED}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, f"{path} is not JSON ({exc}); {ALLOWED}"
    if not isinstance(data, dict):
        kinds: dict[type, str] = {list: "a list", str: "a string"}
        kind = kinds.get(type(data), f"a {type(data).__name__}")
        return None, f"{path} holds {kind}, not a JSON object; {ALLOWED}"
    data.setdefault("run_dir", str(Path(run_dir)))
    try:
        return RunRecord.from_dict(data), None
    except (TypeError, ValueError, AttributeError) as exc:
        return None, f"{path} is not a run record ({exc}); {ALLOWED}"


def read_summary(run_dir: str | Path) -> RunRecord | None:
    """The run's record; None when it wrote none or it is unreadable (``summary_problem``)."""
    return _load(run_dir)[0]


def summary_problem(run_dir: str | Path) -> str | None:
    """One line on what is wrong with ``summary.json``; None when it is absent or readable."""
    return _load(run_dir)[1]
