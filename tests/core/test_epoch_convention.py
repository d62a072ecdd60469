"""One epoch convention (completed epochs) in every output, and one learning-rate metric name."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from project.eval import evaluate
from project.runs.load import load_run
from tests.conftest import SMALL, train_in_process


def test_summary_eval_history_and_lr_agree(tmp_path: Path) -> None:
    run = train_in_process(
        tmp_path,
        *SMALL,
        "trainer.max_epochs=3",
        "model.scheduler=null",  # Lightning alone would name the lr `lr-AdamW` here
        "logger=csv",
        "callbacks.progress_bar=null",
        "callbacks.snapshots.every_n_epochs=0",
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 3
    assert evaluate(run, splits=("val",))["epoch"] == 3  # was 2 (Lightning's 0-based index)
    loaded = load_run(run)
    assert list(loaded.history("val/acc")["epoch"]) == [1, 2, 3]
    assert loaded.config["model"]["optimizer"]["lr"] == 1e-2  # the README's example path
    columns = set(pd.read_csv(next(run.glob("csv_logs/**/metrics.csv"))).columns)
    assert "lr" in columns and not any(c.startswith("lr-") for c in columns)
    assert "epoch 3/3 (step 3): " in (run / "run.log").read_text()
