"""Crash-safe, exact resume: a real training process killed by a signal, resumed in the SAME run dir,
ends bit-identical (weights, optimizer, scheduler, Grokfast state, RNG, final metrics) to an
uninterrupted run with the same seed."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest
import torch

from project.callbacks.preemption import PREEMPTED_EXIT_CODE
from tests.conftest import SMALL, run_dirs, train_in_process
from tests.reliability.helpers import (
    EXACT_KEYS,
    assert_bit_identical,
    default_threads,
    final_metrics,
    final_state,
    resume_in_process,
    start_training,
    wait_for_checkpoint,
)

EXACT = [*SMALL, "logger=csv"]  # default thread count: bit-reproducible on CPU
FULL_BATCH = [*EXACT, "trainer.max_epochs=30", "seed=3"]
MINI_BATCH_GROKFAST = [
    *EXACT,
    "trainer.max_epochs=8",
    "seed=5",
    "data.batch_size=32",
    "grokfast=ema",
    "model.scheduler.warmup_steps=25",
]


def _reference(tmp_path: Path, overrides: list[str]) -> Path:
    with default_threads():
        return train_in_process(tmp_path, *overrides)


def _compare(resumed: Path, reference: Path) -> None:
    a, b = final_state(resumed), final_state(reference)
    for key in EXACT_KEYS:
        assert (key in a) == (key in b), key
        if key in a:
            assert_bit_identical(a[key], b[key], key)
    assert final_metrics(resumed) == final_metrics(reference)
    for ckpt in sorted((resumed / "checkpoints").glob("*.ckpt")):  # plain types only
        torch.load(ckpt, map_location="cpu", weights_only=True)
    assert not list((resumed / "checkpoints").glob(".*.tmp")), "temp files left behind"


def _interrupted_run(tmp_path: Path, overrides: list[str], sig: int, min_step: int) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "outputs"
    proc = start_training(
        out, *overrides, "callbacks.last_checkpoint.every_n_epochs=3", log=tmp_path / "log"
    )
    run_dir = wait_for_checkpoint(proc, out, min_step=min_step)
    proc.send_signal(sig)
    rc = proc.wait(timeout=120)
    log = (tmp_path / "log").read_text()
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL
    else:
        assert rc == PREEMPTED_EXIT_CODE, log[-3000:]
        assert "preempted" in log and "last.ckpt" in log
    last = run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert min_step <= state["global_step"] < 10_000
    resume_in_process(last)
    assert run_dirs(out) == [run_dir], "resume must continue in the same run dir"
    return run_dir


def test_kill9_at_random_step_then_resume_is_bit_identical(tmp_path: Path) -> None:
    min_step = random.Random().randint(3, 15)  # a random point after checkpoints exist
    resumed = _interrupted_run(tmp_path / "a", FULL_BATCH, signal.SIGKILL, min_step)
    reference = _reference(tmp_path / "b", FULL_BATCH)
    assert final_state(reference)["global_step"] == 30
    _compare(resumed, reference)


def test_sigterm_saves_last_ckpt_exits_143_and_resumes_exactly(tmp_path: Path) -> None:
    """Preemption on a mini-batch + Grokfast-EMA run: the resumed run matches bit for bit."""
    resumed = _interrupted_run(tmp_path / "a", MINI_BATCH_GROKFAST, signal.SIGTERM, min_step=20)
    state = final_state(resumed)
    assert state["callbacks"]["Grokfast"]["ema"]  # the filter's state is the callback's
    reference = _reference(tmp_path / "b", MINI_BATCH_GROKFAST)
    assert final_state(reference)["epoch"] == 7
    _compare(resumed, reference)


@pytest.mark.slow
def test_kill9_mini_batch_grokfast_ma(tmp_path: Path) -> None:
    overrides = [*MINI_BATCH_GROKFAST, "grokfast=ma", "callbacks.grokfast.window=7"]
    resumed = _interrupted_run(tmp_path / "a", overrides, signal.SIGKILL, min_step=30)
    _compare(resumed, _reference(tmp_path / "b", overrides))
