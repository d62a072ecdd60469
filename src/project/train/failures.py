"""How a run that stopped on a failure says so (the failure paths only): a diverged loss (exit 3)
and a checkpoint write that failed (exit 4), each one line naming what is left."""

from __future__ import annotations

import sys
from pathlib import Path


def describe_checkpoint(path: Path) -> str:
    """``'<path> (after N epochs, step S)'`` for messages, or a note that none exists."""
    from project.checkpoint import CheckpointError, completed_epochs, read_checkpoint

    try:
        ckpt = read_checkpoint(path)
    except CheckpointError:
        return f"none ({path} does not exist or is unreadable)"
    return f"{path} (after {completed_epochs(ckpt)} epochs, step {ckpt.get('global_step')})"


DIVERGED_EXIT_CODE = 3
WRITE_FAILED_EXIT_CODE = 4


def write_failed_exit(exc: BaseException) -> int:
    """A checkpoint write failed (disk full): one line; returns the exit code (4). The run's
    ``summary.json`` (status ``failed: <reason>``) is ``RunSummary.on_exception``'s."""
    print(f"error: {exc}", file=sys.stderr)
    return WRITE_FAILED_EXIT_CODE


def diverged_exit(run_dir: Path, exc: BaseException) -> int:
    """Report a non-finite loss/weights stop on one line; returns the exit code (3)."""
    last_path = Path(run_dir) / "checkpoints" / "last.ckpt"
    if last_path.is_file():
        kept = f"last good checkpoint kept: {describe_checkpoint(last_path)}"
    else:  # diverged before the first last.ckpt: say plainly what is (not) there
        left = sorted(p.name for p in (Path(run_dir) / "checkpoints").glob("*.ckpt"))
        kept = ("nothing was saved to resume from (it diverged before the first last.ckpt); "
                f"left: run.log{''.join(', ' + n for n in left)}")  # fmt: skip
    print(f"error: {exc}; run stopped, {kept}", file=sys.stderr)
    return DIVERGED_EXIT_CODE
