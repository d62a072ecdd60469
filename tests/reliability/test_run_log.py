"""``run.log`` streams: epoch lines at the validation cadence, flushed as they are written, so a
run killed with ``kill -9`` leaves a log that shows how far it got; warnings go there too."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from tests.conftest import SMALL, cli_env, run_dirs

EPOCH = re.compile(r"epoch (\d+)/100000 \(step \d+\): .*train/loss=\S+ .*val/acc=\S+")


def test_a_killed_runs_log_shows_how_far_it_got(tmp_path: Path) -> None:
    env = cli_env(PYTHONWARNINGS="default")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "project.train.run",
            *SMALL,
            "trainer.max_epochs=100000",
            "logger=none",
            "callbacks.progress_bar=null",
            "callbacks.snapshots.every_n_epochs=0",
            "callbacks.run_summary.threshold=2",  # a threshold never reached: no early end
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, lines = time.monotonic() + 180, []
        while time.monotonic() < deadline and len(lines) < 3:
            time.sleep(0.5)
            logs = list((tmp_path / "outputs").glob("*/*/run.log"))
            text = logs[0].read_text() if logs else ""
            lines = [m for ln in text.splitlines() if (m := EPOCH.search(ln))]
        assert proc.poll() is None, "the run ended by itself"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    (run,) = run_dirs(tmp_path / "outputs")
    epochs = [int(m.group(1)) for m in lines]
    assert epochs[:3] == [1, 2, 3], (run / "run.log").read_text()[-2000:]


def test_warnings_reach_the_log_and_the_console(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from project.callbacks import epoch_log

    shown: list[str] = []  # what the console's showwarning was given
    monkeypatch.setattr(epoch_log, "_ORIGINAL_SHOWWARNING", lambda m, *a: shown.append(str(m)))
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored afterwards
    epoch_log.capture_warnings()
    with caplog.at_level(logging.WARNING, logger="py.warnings"), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("the data loader is slow", UserWarning, stacklevel=1)
    assert "UserWarning: the data loader is slow" in caplog.text  # -> run.log (root handler)
    assert shown == ["the data loader is slow"]  # still on the console
