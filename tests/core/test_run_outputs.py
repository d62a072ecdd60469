"""What one short run writes, checked on one in-process run: one epoch convention (completed
epochs) in the summary, ``project.eval``, ``load_run`` and ``run.log``; the progress bar's last
numbers are the final epoch's; the learning rate logged as ``lr`` without a scheduler too;
``last.ckpt`` written once ``every_n_minutes`` have passed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from project.callbacks.checkpoints import LastCheckpoint
from project.callbacks.progress_bar import RichProgressBar
from project.eval import evaluate
from project.runs.load import load_run
from tests.conftest import SMALL, train_in_process


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[int], list]]:
    saved: list[int] = []
    shown: list[dict] = []  # what the progress bar was given to show, in order
    original = LastCheckpoint._save_checkpoint
    update = RichProgressBar._update_metrics

    def show(self: RichProgressBar, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        shown.append(dict(self.get_metrics(trainer, pl_module)))
        update(self, trainer, pl_module)

    def record(self: LastCheckpoint, trainer, filepath: str) -> None:  # type: ignore[no-untyped-def]
        saved.append(trainer.current_epoch + 1)
        original(self, trainer, filepath)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LastCheckpoint, "_save_checkpoint", record)
        patch.setattr(RichProgressBar, "_update_metrics", show)
        run_dir = train_in_process(
            tmp_path_factory.mktemp("outputs"),
            *SMALL,
            "trainer.max_epochs=3",
            "model.scheduler=null",  # Lightning alone would name the lr `lr-AdamW` here
            "logger=csv",
            "callbacks.snapshots.every_n_epochs=0",
            "callbacks.last_checkpoint.every_n_epochs=1000",
            "callbacks.last_checkpoint.every_n_minutes=1e-9",  # every epoch end is past the bound
        )
    yield run_dir, saved, shown


def test_last_ckpt_is_written_once_the_time_is_up(run: tuple[Path, list[int], list]) -> None:
    assert run[1] == [1, 2, 3]  # every_n_epochs=1000 alone would write only the final one


def test_summary_eval_history_and_log_count_completed_epochs(
    run: tuple[Path, list[int], list],
) -> None:
    run_dir = run[0]
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 3
    assert evaluate(run_dir, splits=("val",))["epoch"] == 3  # was 2 (Lightning's 0-based index)
    loaded = load_run(run_dir)
    assert list(loaded.history("val/acc")["epoch"]) == [1, 2, 3]
    assert loaded.config["model"]["optimizer"]["lr"] == 1e-2  # the README's example path
    assert "epoch 3/3 (step 3): " in (run_dir / "run.log").read_text()


def test_the_learning_rate_is_lr_without_a_scheduler(run: tuple[Path, list[int], list]) -> None:
    columns = set(pd.read_csv(next(run[0].glob("csv_logs/**/metrics.csv"))).columns)
    assert "lr" in columns and not any(c.startswith("lr-") for c in columns)


def test_the_progress_bars_last_numbers_are_the_final_epochs(
    run: tuple[Path, list[int], list],
) -> None:
    final = json.loads((run[0] / "summary.json").read_text())["final"]
    last = run[2][-1]
    for key in ("train/acc", "train/loss", "val/acc", "val/loss"):
        assert float(last[key]) == pytest.approx(final[key], rel=1e-4), key


def test_eval_of_a_run_written_by_an_older_version(
    run: tuple[Path, list[int], list], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A key the module no longer takes (older runs stored ``model.grokfast``, now a callback) is
    dropped with a note: the run still evaluates to the same numbers."""
    import shutil

    import yaml

    old = tmp_path / "old_run"
    shutil.copytree(run[0], old)
    config = yaml.safe_load((old / "resolved_config.yaml").read_text())
    config["model"]["grokfast"] = "none"
    (old / "resolved_config.yaml").write_text(yaml.safe_dump(config))
    assert evaluate(old, splits=("val",))["val"] == evaluate(run[0], splits=("val",))["val"]
    assert "ignoring grokfast (no longer taken by project.lit_module.LitCausalLM)" in (
        capsys.readouterr().out
    )
