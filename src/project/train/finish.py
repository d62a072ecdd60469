"""After ``trainer.fit()`` (rank zero only): close loggers, write ``summary.json``, final cloud
sync, and print a one-screen summary (also appended to ``run.log``).

``summary.json`` is one ``project.summary.RunRecord``: run dir, status, epochs/steps, final
metrics, the monitored metric's best value and the epoch it first reached its threshold (and the
same for its train twin), checkpoint files, logger dirs, W&B line and the sync result.

A failed sync never fails the run: the summary shows ``sync: FAILED (rclone exit N) ...`` with
rclone's error, a warning goes to stderr, the local run dir stays complete, and the process exits 0.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from project.summary import RunRecord
from project.train.loggers import finish_wandb

log = logging.getLogger(__name__)


def _find(trainer: Any, cls: type) -> Any:
    return next((cb for cb in trainer.callbacks if isinstance(cb, cls)), None)


def _status(trainer: Any) -> str:
    """``preempted`` (SIGTERM: last.ckpt saved, resumable), ``interrupted`` or ``finished``."""
    from project.callbacks.preemption import PreemptionCheckpoint

    preemption = _find(trainer, PreemptionCheckpoint)
    if preemption is not None and preemption.preempted:
        return "interrupted" if preemption.interrupted else "preempted"
    return "interrupted" if getattr(trainer, "interrupted", False) else "finished"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _rel(path: Path, run_dir: Path) -> str:
    return str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)


def build_summary(run_dir: Path, trainer: Any, metrics: dict[str, float]) -> RunRecord:
    """The run record, but for the sync and W&B results."""
    from project.callbacks.run_summary import RunSummary

    tracker = _find(trainer, RunSummary)
    ckpt_dir = run_dir / "checkpoints"
    ckpts = sorted(p.name for p in ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
    logs = [p.name for p in sorted(run_dir.iterdir()) if p.is_dir() and p.name.endswith("_logs")]
    logs += ["wandb"] if (run_dir / "wandb").is_dir() else []
    return RunRecord(
        run_dir=str(run_dir),
        status=_status(trainer),
        epochs=int(trainer.current_epoch),
        steps=int(trainer.global_step),
        final={k: float(v) for k, v in sorted(metrics.items())},
        **(tracker.summary() if tracker is not None else {}),
        checkpoints=ckpts,
        logs=["run.log", *logs],
    )


def _monitor_lines(record: RunRecord) -> list[str]:
    """``best:`` and ``threshold:`` lines for the monitored metric (and its train twin)."""
    monitor, twin = record.monitor, record.train_monitor
    if record.best is None:
        best = f"best:        nothing was validated ({monitor} never logged)"
    else:
        best = f"best:        {monitor}={_fmt(record.best)} (epoch {record.best_epoch})"
        if twin and record.train_best is not None:
            best += f"  {twin}={_fmt(record.train_best)}"
    reached = [record.reached_line(train=True)] if twin else []
    return [best, "threshold:   " + "; ".join([*reached, record.reached_line()])]


def summary_lines(record: RunRecord) -> list[str]:
    """The one-screen summary as plain lines."""
    run_dir = Path(record.run_dir)
    shown = "  ".join(f"{k}={v:.4f}" for k, v in record.final.items() if "/" in k)
    lines = [
        f"run dir:     {run_dir}",
        f"status:      {record.status} after {_count(record.epochs, 'epoch')}, "
        f"{_count(record.steps, 'step')}",
        f"final:       {shown or '-'}",
    ]
    if record.monitor:
        lines += _monitor_lines(record)
    ckpts = record.checkpoints
    if ckpts:
        shown_ckpts = ", ".join(ckpts[:3]) + (
            f", ... ({len(ckpts)} files)" if len(ckpts) > 3 else ""
        )
        lines.append(f"checkpoints: {run_dir / 'checkpoints'}/  {shown_ckpts}")
    else:
        lines.append("checkpoints: none")
    lines.append(f"logs:        {', '.join(record.logs)}  (in the run dir)")
    if record.wandb:
        lines.append(record.wandb)
    lines.append(
        record.sync["line"] if record.sync else "sync:        off (set RCLONE_DEST to copy runs)"
    )
    return lines


def _print(lines: list[str], failed: bool) -> None:
    """A rule with the title, then the lines (never cropped: long paths wrap)."""
    try:
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        console.rule("[red]run summary" if failed else "[green]run summary")
        for line in lines:
            console.print(line, markup=False)
    except Exception:  # no usable terminal: plain text
        print("\n" + "\n".join(lines))


def finish_run(run_dir: Path, trainer: Any, metrics: dict[str, float]) -> RunRecord:
    """Close W&B, write ``summary.json``, run the final sync, print the summary; returns it."""
    run_dir = Path(run_dir)
    record = build_summary(run_dir, trainer, metrics)
    record.wandb = finish_wandb(list(getattr(trainer, "loggers", []) or []))
    record.write(run_dir)  # before the sync, so the copy carries it

    from project.callbacks.cloud_sync import CloudSync

    sync_cb = _find(trainer, CloudSync)
    if sync_cb is None:
        sync_cb = CloudSync(str(run_dir))  # RCLONE_DEST without the callback config entry
    result = sync_cb.final_sync()
    if result is not None:
        record.sync = {
            "ok": result.ok,
            "dest": result.dest,
            "returncode": result.returncode,
            "error": result.error,
            "line": result.line(),
        }
        record.write(run_dir)
        if result.ok:  # carry the final summary.json too (only that file changed)
            sync_cb.final_sync()
        else:
            print(
                f"warning: cloud sync failed; the local run is complete in {run_dir}. "
                f"{result.line()}",
                file=sys.stderr,
            )
    lines = summary_lines(record)
    for line in lines:
        log.info(line)
    _print(lines, failed=result is not None and not result.ok)
    return record
