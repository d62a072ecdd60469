"""``last.ckpt`` is bounded in time as well as in epochs: a run whose epochs are slow writes it at
the first epoch end ``every_n_minutes`` after the previous write, not only every 50 epochs."""

from __future__ import annotations

import pytest

from project.callbacks.checkpoints import LastCheckpoint

# the bound at work on a real run: tests/core/test_run_outputs.py


def test_the_default_bound_is_one_minute() -> None:
    from hydra import compose, initialize_config_dir

    from project.train.checks import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config")
    assert cfg.callbacks.last_checkpoint.every_n_minutes == 1.0
    assert LastCheckpoint("unused").every_n_seconds == 60.0


@pytest.mark.parametrize("bad", [-1, float("nan"), "soon"])
def test_a_bad_time_bound_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="every_n_minutes=.* is invalid: allowed a number >= 0"):
        LastCheckpoint("unused", every_n_minutes=bad)  # type: ignore[arg-type]
