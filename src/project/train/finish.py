"""After ``trainer.fit()``: artifacts and the end-of-run summary (rank zero only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def finish_run(run_dir: Path, trainer: Any, metrics: dict[str, float]) -> None:
    shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if "/" in k)
    print(f"\nrun dir: {run_dir}\nepochs: {trainer.current_epoch}  steps: {trainer.global_step}")
    print(f"final: {shown}\ncheckpoints: {run_dir / 'checkpoints'}")
