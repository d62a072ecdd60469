"""rclone cloud sync with the real binary: local path, a loopback WebDAV server, failures."""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import pytest

from project.sync import check_rclone_dest, copy_run_dir, remote_name
from tests.conftest import train_in_process
from tests.integrations.conftest import TINY

pytestmark = pytest.mark.skipif(shutil.which("rclone") is None, reason="needs the rclone binary")


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def assert_complete_copy(run_dir: Path, copy: Path) -> None:
    assert copy.is_dir(), f"{copy} missing"
    files = tree(run_dir)
    assert {"resolved_config.yaml", "summary.json", "checkpoints/last.ckpt"} <= files
    assert files == tree(copy)
    assert filecmp.cmp(run_dir / "checkpoints/last.ckpt", copy / "checkpoints/last.ckpt", False)
    # the copied summary.json is the final one, with the sync result in it
    assert json.loads((copy / "summary.json").read_text())["sync"]["ok"] is True


def test_remote_name_is_unique_per_run() -> None:
    assert remote_name("outputs/2025-01-02/10-11-12-exp") == "2025-01-02_10-11-12-exp"
    assert remote_name("multirun/2025-01-02/10-11-12/3") == "2025-01-02_10-11-12_3"


def test_local_path_dest_with_background_sync(tmp_path, monkeypatch, capsys) -> None:
    dest = tmp_path / "remote" / "runs"
    monkeypatch.setenv("RCLONE_DEST", str(dest))
    run_dir = train_in_process(
        tmp_path, *TINY, "sync=rclone", "callbacks.cloud_sync.every_n_epochs=1"
    )
    out = capsys.readouterr().out
    assert f"sync: ok -> {dest}/{remote_name(run_dir)}" in out
    assert_complete_copy(run_dir, dest / remote_name(run_dir))


def test_rclone_dest_syncs_without_the_callbacks_config_entries(tmp_path, monkeypatch) -> None:
    """``callbacks.cloud_sync=null`` still copies when RCLONE_DEST is set, and
    ``callbacks.run_summary=null`` still writes a record (without a monitored metric)."""
    dest = tmp_path / "remote"
    monkeypatch.setenv("RCLONE_DEST", str(dest))
    nulls = ["callbacks.cloud_sync=null", "callbacks.run_summary=null"]
    run_dir = train_in_process(tmp_path, *TINY, *nulls)
    assert_complete_copy(run_dir, dest / remote_name(run_dir))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["monitor"] is None


def test_webdav_remote(tmp_path, monkeypatch, webdav) -> None:
    monkeypatch.setenv("RCLONE_DEST", "dav:team/runs")
    run_dir = train_in_process(tmp_path, *TINY)
    assert_complete_copy(run_dir, webdav.served / "team/runs" / remote_name(run_dir))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["sync"]["dest"] == f"dav:team/runs/{remote_name(run_dir)}"


def test_failed_transfer_keeps_local_run(tmp_path, monkeypatch, capsys, webdav) -> None:
    """A read-only server passes the start-up check (it lists) but refuses the upload."""
    monkeypatch.setenv("RCLONE_DEST", "davro:runs")
    run_dir = train_in_process(tmp_path, *TINY)  # returns normally: exit status 0
    captured = capsys.readouterr()
    assert "warning: cloud sync failed; the local run is complete" in captured.err
    assert "sync: FAILED (rclone exit" in captured.out
    sync = json.loads((run_dir / "summary.json").read_text())["sync"]
    assert sync["ok"] is False and sync["returncode"] > 0 and sync["error"]
    from project.utils.helpers import load_checkpoint

    model, hparams = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert hparams["net"]["d_model"] == 32
    assert not any((webdav.served / "runs").rglob("*.ckpt"))


def test_server_down_is_reported_before_anything_is_created(tmp_path, monkeypatch, capsys, webdav):
    from tests.conftest import main_in_process, run_dirs

    monkeypatch.setenv("RCLONE_DEST", "down:runs")
    out = tmp_path / "outputs"
    with pytest.raises(SystemExit) as exc:
        main_in_process([f"run.output_root={out}", *TINY])
    assert exc.value.code == 2
    # (in-process, a logging handler left from an earlier test may print noise; the CLI does not)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and err[0].startswith("error: RCLONE_DEST='down:runs' is invalid")
    assert "not reachable" in err[0] and "connection refused" in err[0].lower()
    assert run_dirs(out) == [] and not out.exists()
    # and a transfer to a dead server fails cleanly with rclone's error, source untouched
    src = tmp_path / "run"
    (src / "checkpoints").mkdir(parents=True)
    (src / "checkpoints" / "last.ckpt").write_bytes(b"x" * 100)
    result = copy_run_dir(src, "down:runs")
    assert not result.ok and result.returncode > 0 and "connection refused" in result.error.lower()
    assert result.line().startswith("sync: FAILED (rclone exit")
    assert (src / "checkpoints" / "last.ckpt").read_bytes() == b"x" * 100


def test_unknown_remote_and_missing_binary(tmp_path, monkeypatch, webdav) -> None:
    problem = check_rclone_dest("dva:runs")  # typo of dav
    assert problem is not None
    assert "remote 'dva:' is not configured" in problem and "dav, davro, down" in problem
    assert check_rclone_dest("dav:new/path/not/created/yet") is None
    assert check_rclone_dest(str(tmp_path / "not-yet")) is None
    assert check_rclone_dest("") is None  # unset: sync off

    monkeypatch.setenv("PATH", str(tmp_path))  # no rclone here
    problem = check_rclone_dest("dav:runs")
    assert problem is not None and "rclone binary is not on PATH" in problem
    result = copy_run_dir(tmp_path, "dav:runs")
    assert not result.ok and result.returncode == -1


def test_background_copy_runs_detached(tmp_path) -> None:
    """The periodic sync's copy: Popen'd, polled without waiting, same result as the final copy."""
    import time

    from project.sync import BackgroundCopy

    src = tmp_path / "outputs" / "2025-01-02" / "10-11-12"
    (src / "checkpoints").mkdir(parents=True)
    (src / "checkpoints" / "last.ckpt").write_bytes(b"w" * 10_000)
    (src / "checkpoints" / ".last.ckpt.abc.tmp").write_bytes(b"partial")  # atomic write in flight
    copy = BackgroundCopy(src, str(tmp_path / "dest"))
    result = copy.poll()
    while result is None:
        time.sleep(0.05)
        result = copy.poll()
    assert result.ok, result.line()
    assert tree(tmp_path / "dest" / "2025-01-02_10-11-12") == {"checkpoints/last.ckpt"}
