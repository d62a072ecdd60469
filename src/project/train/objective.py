"""The value a run returns to Hydra's sweeper (Optuna minimises it): epochs to the threshold.

``objective(run_dir, max_epochs)`` reads the finished run's ``summary.json``: the completed epoch at
which the monitored metric (``callbacks.run_summary``: ``val/acc`` >= 0.99 by default) was first
reached, i.e. the grokking epoch. A run that never reached it scores
``max_epochs * (2 - best)`` (``best`` = its best monitored value, clipped to [0, 1]; 0 when never
validated): always worse than any run that got there, and among those that did not, the ones that
came closer rank better (a slope for the sampler on a flat region).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

SUMMARY_FILE = "summary.json"


def penalty(max_epochs: int | None, best: float | None) -> float:
    """Score of a run that never reached the threshold."""
    closeness = 0.0 if best is None or math.isnan(best) else min(max(float(best), 0.0), 1.0)
    return float(max(max_epochs or 0, 1)) * (2.0 - closeness)


def objective_from_summary(summary: dict[str, Any], max_epochs: int | None) -> float:
    """Epochs to the threshold from a ``summary.json`` dict; the penalty when never reached."""
    reached = summary.get("reached_epoch", summary.get("grok_epoch"))
    if reached is not None:
        return float(reached)
    best = summary.get("best", summary.get("best_val_acc"))
    if summary.get("mode", "max") == "min":
        best = None  # "closeness" of a min-mode metric has no [0, 1] scale
    if max_epochs is None or max_epochs <= 0:  # no epoch limit: the epochs it ran instead
        max_epochs = int(summary.get("epochs") or 0)
    return penalty(max_epochs, best)


def objective(run_dir: str | Path, max_epochs: int | None) -> float:
    """The objective of the run in ``run_dir`` (the penalty when it wrote no summary)."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return penalty(max_epochs, None)
    return objective_from_summary(json.loads(path.read_text()), max_epochs)
