"""Integrations never cost the run: a sync destination that is full (a real 64 KiB tmpfs) fails at
the end, yet the local run is complete and the failure is named; a destination that cannot be a
directory (a path below a regular file) is refused before anything is created."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import SMALL, cli_env, run_cli, run_dirs
from tests.reliability.helpers import DEFAULT_THREADS, tmpfs

pytestmark = pytest.mark.skipif(shutil.which("rclone") is None, reason="needs the rclone binary")


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "tiny_disk", "64k") as mnt:
        yield mnt


def test_full_sync_destination_leaves_local_run_complete(tmp_path: Path, full_disk: Path) -> None:
    out = tmp_path / "outputs"
    env = cli_env(RCLONE_DEST=str(full_disk / "runs"), **DEFAULT_THREADS)
    proc = run_cli(
        f"run.output_root={out}",
        *SMALL,
        "trainer.max_epochs=3",
        "logger=csv",
        cwd=tmp_path,
        env=env,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]  # a failed sync never fails the run
    assert "sync: FAILED" in text and str(full_disk) in text, text[-3000:]
    (run_dir,) = run_dirs(out)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3
    assert (run_dir / "resolved_config.yaml").is_file()
    assert (run_dir / "csv_logs" / "metrics.csv").is_file()


@pytest.mark.slow
def test_sync_destination_below_a_file_never_costs_the_run(tmp_path: Path) -> None:
    """Refused up front (exit 2, nothing created), or the run completes and the sync is FAILED."""
    (tmp_path / "not_a_dir").write_text("x")
    dest = tmp_path / "not_a_dir" / "runs"
    env = cli_env(RCLONE_DEST=str(dest), **DEFAULT_THREADS)
    out = tmp_path / "outputs"
    proc = run_cli(
        f"run.output_root={out}",
        *SMALL,
        "trainer.max_epochs=2",
        "logger=csv",
        cwd=tmp_path,
        env=env,
    )
    text = proc.stdout + proc.stderr
    if proc.returncode == 2:
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("error: RCLONE_DEST=") and "invalid" in line
        assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_dir"]
        return
    assert proc.returncode == 0, text[-3000:]
    assert "sync: FAILED" in text and str(dest) in text, text[-3000:]
    (run_dir,) = run_dirs(out)
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
