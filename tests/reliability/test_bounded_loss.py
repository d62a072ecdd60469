"""``last.ckpt`` is bounded in time as well as in epochs: a run whose epochs are slow writes it at
the first epoch end ``every_n_minutes`` after the previous write, not only every 50 epochs."""

from __future__ import annotations

from pathlib import Path

import pytest

from project.train.callbacks.checkpoints import LastCheckpoint
from tests.conftest import SMALL, train_in_process

QUICK = [
    *SMALL,
    "logger=none",
    "callbacks.progress_bar=null",
    "callbacks.snapshots.every_n_epochs=0",
]


def _saved_epochs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    saved: list[int] = []
    original = LastCheckpoint._save_checkpoint

    def record(self: LastCheckpoint, trainer, filepath: str) -> None:  # type: ignore[no-untyped-def]
        saved.append(trainer.current_epoch + 1)
        original(self, trainer, filepath)

    monkeypatch.setattr(LastCheckpoint, "_save_checkpoint", record)
    return saved


def test_last_ckpt_is_written_once_the_time_is_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = _saved_epochs(monkeypatch)
    train_in_process(
        tmp_path,
        *QUICK,
        "trainer.max_epochs=3",
        "callbacks.last_checkpoint.every_n_epochs=1000",
        "callbacks.last_checkpoint.every_n_minutes=1e-9",  # every epoch end is past the bound
    )
    assert saved == [1, 2, 3]


def test_the_default_bound_is_one_minute() -> None:
    from project.train.preflight import compose_config

    cfg = compose_config([])
    assert cfg.callbacks.last_checkpoint.every_n_minutes == 1.0
    assert LastCheckpoint("unused").every_n_seconds == 60.0


@pytest.mark.parametrize("bad", [-1, float("nan"), "soon"])
def test_a_bad_time_bound_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="every_n_minutes=.* is invalid: allowed a number >= 0"):
        LastCheckpoint("unused", every_n_minutes=bad)  # type: ignore[arg-type]
