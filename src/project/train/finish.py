"""After ``trainer.fit()`` (rank zero only): close loggers, write ``summary.json``, final cloud
sync, and print a one-screen summary (also appended to ``run.log``).

``summary.json`` holds: run dir, epochs/steps, final metrics, best val/train accuracy and their
epochs, ``grok_epoch`` (first validated epoch with val acc >= 0.99) and ``memorise_epoch``,
checkpoint files, logger dirs, W&B line and the sync result. ``project.runs`` reads it.

A failed sync never fails the run: the summary shows ``sync: FAILED (rclone exit N) ...`` with
rclone's error, a warning goes to stderr, the local run dir stays complete, and the process exits 0.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from project.train.loggers import finish_wandb

log = logging.getLogger(__name__)
SUMMARY_FILE = "summary.json"


def _find(trainer: Any, cls: type) -> Any:
    return next((cb for cb in trainer.callbacks if isinstance(cb, cls)), None)


def _status(trainer: Any) -> str:
    """``preempted`` (SIGTERM: last.ckpt saved, resumable), ``interrupted`` or ``finished``."""
    from project.train.callbacks.preemption import PreemptionCheckpoint

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


def build_summary(run_dir: Path, trainer: Any, metrics: dict[str, float]) -> dict[str, Any]:
    """Everything ``summary.json`` holds except the sync and W&B results."""
    from project.train.callbacks.run_summary import RunSummary

    tracker = _find(trainer, RunSummary)
    ckpt_dir = run_dir / "checkpoints"
    ckpts = sorted(p.name for p in ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
    logs = [p.name for p in sorted(run_dir.iterdir()) if p.is_dir() and p.name.endswith("_logs")]
    logs += ["wandb"] if (run_dir / "wandb").is_dir() else []
    return {
        "run_dir": str(run_dir),
        "status": _status(trainer),
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "final": {k: float(v) for k, v in sorted(metrics.items())},
        **(tracker.summary() if tracker is not None else {}),
        "checkpoints": ckpts,
        "logs": ["run.log", *logs],
    }


def _write(run_dir: Path, summary: dict[str, Any]) -> None:
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def _monitor_lines(summary: dict[str, Any]) -> list[str]:
    """``best:`` and ``threshold:`` lines for the monitored metric (and its train twin)."""
    from project.train.callbacks.run_summary import train_twin

    monitor, threshold = summary["monitor"], summary["threshold"]
    op = ">=" if summary.get("mode", "max") == "max" else "<="
    twin = train_twin(monitor)
    if summary.get("best") is None:
        best = f"best:        nothing was validated ({monitor} never logged)"
    else:
        best = f"best:        {monitor}={_fmt(summary['best'])} (epoch {summary['best_epoch']})"
        if twin and summary.get("train_best") is not None:
            best += f"  {twin}={_fmt(summary['train_best'])}"
    reached = []
    if twin:
        epoch = summary.get("train_reached_epoch")
        reached.append(f"{twin} {op} {threshold} " + (f"at epoch {epoch}" if epoch else "never"))
    epoch = summary.get("reached_epoch")
    reached.append(f"{monitor} {op} {threshold} " + (f"at epoch {epoch}" if epoch else "never"))
    return [best, "threshold:   " + "; ".join(reached)]


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The one-screen summary as plain lines."""
    run_dir = Path(summary["run_dir"])
    final = summary.get("final", {})
    shown = "  ".join(f"{k}={v:.4f}" for k, v in final.items() if "/" in k)
    lines = [
        f"run dir:     {run_dir}",
        f"status:      {summary['status']} after {_count(summary['epochs'], 'epoch')}, "
        f"{_count(summary['steps'], 'step')}",
        f"final:       {shown or '-'}",
    ]
    if "monitor" in summary:
        lines += _monitor_lines(summary)
    ckpts = summary.get("checkpoints", [])
    if ckpts:
        shown_ckpts = ", ".join(ckpts[:3]) + (
            f", ... ({len(ckpts)} files)" if len(ckpts) > 3 else ""
        )
        lines.append(f"checkpoints: {run_dir / 'checkpoints'}/  {shown_ckpts}")
    else:
        lines.append("checkpoints: none")
    lines.append(f"logs:        {', '.join(summary.get('logs', []))}  (in the run dir)")
    if summary.get("wandb"):
        lines.append(summary["wandb"])
    sync = summary.get("sync")
    lines.append(sync["line"] if sync else "sync:        off (set RCLONE_DEST to copy runs)")
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


def finish_run(run_dir: Path, trainer: Any, metrics: dict[str, float]) -> dict[str, Any]:
    """Close W&B, write ``summary.json``, run the final sync, print the summary; returns it."""
    run_dir = Path(run_dir)
    summary = build_summary(run_dir, trainer, metrics)
    summary["wandb"] = finish_wandb(list(getattr(trainer, "loggers", []) or []))
    _write(run_dir, summary)  # before the sync, so the copy carries it

    from project.train.callbacks.cloud_sync import CloudSync

    sync_cb = _find(trainer, CloudSync)
    result = None
    if sync_cb is None:
        sync_cb = CloudSync(str(run_dir))  # RCLONE_DEST without the callback config entry
    result = sync_cb.final_sync()
    if result is not None:
        summary["sync"] = {
            "ok": result.ok,
            "dest": result.dest,
            "returncode": result.returncode,
            "error": result.error,
            "line": result.line(),
        }
        _write(run_dir, summary)
        if result.ok:  # carry the final summary.json too (only that file changed)
            sync_cb.final_sync()
        else:
            print(
                f"warning: cloud sync failed; the local run is complete in {run_dir}. "
                f"{result.line()}",
                file=sys.stderr,
            )
    lines = summary_lines(summary)
    for line in lines:
        log.info(line)
    _print(lines, failed=result is not None and not result.ok)
    return summary
