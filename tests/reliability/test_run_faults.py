"""Faults and mistakes found once the run has started: still one line, the right exit code, and
nothing lost or left behind.

* A callback's bad argument (built inside the run) or a monitored metric the run never logs:
  one line naming the key, exit 2, no run dir and no empty output root left.
* ``RCLONE_DEST`` that is blank, cannot be created, or looks like a flag.
* Ctrl-C saves ``last.ckpt`` at the epoch end (exit 130, summary "interrupted", the resume command
  printed); a second Ctrl-C aborts at once.
* A full disk: one line naming the file, exit 4, the previous ``last.ckpt`` intact.
* The resume command of a finished run leaves it untouched.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from project.checkpoint import read_checkpoint
from project.train.resume import resume_argv
from tests.conftest import SMALL, main_in_process, run_dirs, train_in_process
from tests.reliability.helpers import start_training, tmpfs, wait_for_checkpoint

QUIET = [*SMALL, "logger=none", "callbacks.progress_bar=null"]


@pytest.mark.parametrize(
    ("override", "line_start"),
    [
        ("callbacks.progress_measures.key_freqs=[99,500]", "callbacks.progress_measures.key_freqs=[99, 500] is invalid: allowed frequencies in 1..11"),
        ("callbacks.run_summary.monitor=", "callbacks.run_summary.monitor='' is invalid"),
        ("callbacks.run_summary.monitor=val/f1", "callbacks.run_summary.monitor='val/f1' is invalid: allowed a metric the run logs (val/acc, val/loss)"),
        ("callbacks.run_summary.threshold=nan", "callbacks.run_summary.threshold=nan is invalid"),
        ("callbacks.last_checkpoint.every_n_epochs=-1", "callbacks.last_checkpoint.every_n_epochs=-1 is invalid: allowed an integer >= 1"),
        ("sync=rclone callbacks.cloud_sync.every_n_epochs=-1", "callbacks.cloud_sync.every_n_epochs=-1 is invalid: allowed an integer >= 0"),
    ],
)  # fmt: skip
def test_a_mistake_found_inside_the_run_is_one_line_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, override: str, line_start: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        train_in_process(tmp_path, *QUIET, "trainer.max_epochs=2", *override.split(" "))
    assert exc.value.code == 2
    # (in-process, a logging handler left from an earlier test may print noise; the CLI does not)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {line_start}"), lines
    assert not (tmp_path / "outputs").exists(), "a run dir or an empty output root was left"


@pytest.mark.parametrize(
    ("dest", "why"),
    [("   ", "surrounding blanks"), ("/proc/nope/runs", "cannot create files in /proc")],
)
def test_rclone_destinations_that_cannot_work_are_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, dest, why
) -> None:
    if shutil.which("rclone") is None:
        pytest.skip("needs the rclone binary")
    monkeypatch.setenv("RCLONE_DEST", dest)
    out = tmp_path / "outputs"
    with pytest.raises(SystemExit) as exc:
        main_in_process([f"run.output_root={out}", *SMALL])
    assert exc.value.code == 2
    # (in-process, a logging handler left from an earlier test may print noise; the CLI does not)
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert line.startswith(f"error: RCLONE_DEST={dest!r} is invalid") and why in line
    assert run_dirs(out) == [] and not out.exists()


def test_a_destination_is_never_read_as_an_rclone_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from project.sync import copy_run_dir

    if shutil.which("rclone") is None:
        pytest.skip("needs the rclone binary")
    run_dir = tmp_path / "outputs" / "2026-01-01" / "00-00-00"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    result = copy_run_dir(run_dir, "--config=elsewhere")  # a folder of that name, not a flag
    assert result.ok, result.error
    assert (tmp_path / "--config=elsewhere" / "2026-01-01_00-00-00" / "summary.json").is_file()


def _wait_for_epochs(proc: subprocess.Popen, out: Path, log: Path, epochs: int) -> Path:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        for run_dir in run_dirs(out):
            metrics = run_dir / "csv_logs" / "metrics.csv"
            with contextlib.suppress(OSError, ValueError):  # a row may be half written
                rows = list(csv.DictReader(metrics.open()))
                if max(int(r["epoch"]) for r in rows if r.get("epoch")) >= epochs:
                    return run_dir
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("training did not get going in time")


def test_ctrl_c_saves_last_ckpt_exits_130_and_prints_the_resume_command(tmp_path: Path) -> None:
    out, log = tmp_path / "outputs", tmp_path / "log"
    overrides = [*SMALL, "logger=csv", "trainer.max_epochs=100000",
                 "callbacks.last_checkpoint.every_n_epochs=100000"]  # fmt: skip
    proc = start_training(out, *overrides, log=log)
    run_dir = _wait_for_epochs(proc, out, log, epochs=3)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    text = log.read_text()
    last = run_dir / "checkpoints" / "last.ckpt"
    assert f"resume with: python -m project.train.run run.ckpt_path={last}" in text
    assert read_checkpoint(last)["epoch"] >= 3  # the epochs done are saved (0-based index)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"


def test_a_second_ctrl_c_aborts_at_once() -> None:
    from types import SimpleNamespace

    from project.callbacks.preemption import PreemptionCheckpoint

    before = signal.getsignal(signal.SIGINT)
    callback = PreemptionCheckpoint()
    trainer = SimpleNamespace(strategy=SimpleNamespace(launcher=None))
    callback.on_train_start(trainer, None)  # type: ignore[arg-type]
    try:
        os.kill(os.getpid(), signal.SIGINT)  # the first: save at the epoch end
        assert callback.received and callback.received_signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):  # the second: now
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        callback.on_train_end(trainer, None)  # type: ignore[arg-type]
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C is the user's again


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small_disk", "4m") as mnt:
        yield mnt


def test_a_full_disk_is_one_line_and_the_previous_checkpoint_is_intact(
    tmp_path: Path, small_disk: Path
) -> None:
    out, log = small_disk / "outputs", tmp_path / "log"
    overrides = [*QUIET, "trainer.max_epochs=100000", "callbacks.snapshots=null",
                 "callbacks.progress_measures=null", "callbacks.last_checkpoint.every_n_epochs=1",
                 "model.net.d_model=32", "model.net.d_mlp=64"]  # fmt: skip
    proc = start_training(out, *overrides, log=log)
    run_dir = wait_for_checkpoint(proc, out, min_step=2)
    with (small_disk / "filler").open("wb") as filler:  # another process fills the disk
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass
    assert proc.wait(timeout=120) == 4, log.read_text()[-3000:]
    errors = [ln for ln in log.read_text().splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: no space left on "), errors
    assert "while writing last.ckpt; the previous last.ckpt is intact" in errors[0]
    read_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # loads, and its hash matches
    assert not list((run_dir / "checkpoints").glob(".*.tmp")), "a temp file was left"


def test_rerunning_the_resume_command_of_a_finished_run_leaves_it_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = train_in_process(tmp_path, *QUIET, "trainer.max_epochs=2")
    last = run_dir / "checkpoints" / "last.ckpt"
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main_in_process([f"run.ckpt_path={last}"])
    assert exc.value.code == 0
    assert "is finished (2 epochs" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    # raising max_epochs trains on, in the run's own dir
    argv = resume_argv([f"run.ckpt_path={last}", "trainer.max_epochs=4"])
    assert argv[-2:] == ["trainer.max_epochs=4", f"hydra.run.dir={run_dir}"]
