"""logger=csv keeps its history across a resume in the same run dir."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

from tests.conftest import SMALL, train_in_process


def epochs_logged(run: Path, column: str) -> list[int]:
    with open(run / "csv_logs" / "metrics.csv", newline="") as f:
        return sorted({int(float(r["epoch"])) for r in csv.DictReader(f) if r.get(column)})


def test_csv_metrics_survive_resume(tmp_path: Path) -> None:
    run = train_in_process(tmp_path, *SMALL, "logger=csv", "trainer.max_epochs=3")
    assert epochs_logged(run, "train/loss") == [0, 1, 2]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = train_in_process(
            tmp_path, f"run.ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=5"
        )
    noise = [str(w.message) for w in caught if "exists and is not empty" in str(w.message)]
    assert not noise  # neither the checkpoint dir nor the CSV log dir warning on a resume
    assert resumed == run
    assert epochs_logged(run, "train/loss") == [0, 1, 2, 3, 4]
    assert epochs_logged(run, "val/acc") == [0, 1, 2, 3, 4]
