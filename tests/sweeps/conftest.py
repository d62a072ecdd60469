"""Helpers for the sweep tests: a tiny sweep command and fake run dirs for the table tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.integrations.conftest import TINY

# tiny and quiet: a few seconds per job; last.ckpt every epoch so a kill always leaves one
SWEEP = [
    *TINY,
    "logger=csv",
    "callbacks.progress_bar=null",
    "callbacks.progress_measures.every_n_epochs=0",
    "callbacks.last_checkpoint.every_n_epochs=1",
]


def fake_run(
    root: Path,
    name: str,
    overrides: list[str],
    grok_epoch: int | None,
    best_val_acc: float,
    val_loss: float = 0.1,
    epochs: int = 100,
) -> Path:
    """A finished run dir as ``project.train.run`` leaves it (only what the table reads)."""
    run_dir = root / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    summary: dict[str, Any] = {
        "status": "finished",
        "epochs": epochs,
        "final": {"val/acc": best_val_acc, "val/loss": val_loss, "train/loss": 0.01},
        "best_val_acc": best_val_acc,
        "grok_epoch": grok_epoch,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir
