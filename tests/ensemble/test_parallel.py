"""``hydra.launcher.n_jobs``: ensemble groups trained in parallel worker processes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ensemble._workers import fake_train, train_until_sigterm
from tests.ensemble.test_equivalence import COMMON, run_main


def test_a_failing_group_does_not_lose_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """n_jobs=2: this process trains the first group (it fails here), a spawned worker or this
    process the others; their results come back, each trained on cores // n_jobs threads."""
    from project.ensemble.parallel import GroupRunner
    from project.train.threads import cpu_cores, threads_per_job

    monkeypatch.delenv("TORCH_NUM_THREADS", raising=False)
    with GroupRunner(2, 3, target=fake_train) as runner:
        assert runner.pool is not None and runner.workers == 2
        runner.submit("a", [("bad", Path("a"))], [None])
        runner.submit("b", [("x", Path("b")), ("y", Path("c"))], [None, None])
        runner.submit("c", [("z", Path("d"))], [None])
        out = runner.outcomes()
    assert isinstance(out["a"], ValueError) and "cannot train" in str(out["a"])
    assert not isinstance(out["b"], BaseException) and not isinstance(out["c"], BaseException)
    threads = str(threads_per_job(2, cpu_cores()))
    assert [(r["member"], r["threads"]) for r in out["b"]] == [("x", threads), ("y", threads)]
    assert [(r["member"], r["threads"]) for r in out["c"]] == [("z", threads)]
    with GroupRunner(1, 3, target=fake_train) as serial:  # n_jobs=1: no pool, same outcomes
        assert serial.pool is None
        serial.submit("a", [("bad", Path("a"))], [None])
        serial.submit("b", [("x", Path("b"))], [None])
        out = serial.outcomes()
    assert isinstance(out["a"], ValueError)
    assert not isinstance(out["b"], BaseException) and out["b"][0]["pid"] == os.getpid()


@pytest.mark.parametrize("first", ["wait", "quick"])
def test_sigterm_stops_every_worker_and_exits_143(tmp_path: Path, first: str) -> None:
    """SIGTERM to the launcher while it trains a group itself (``wait``: that group's handler
    catches it) or waits for its worker (``quick``: its own handler): every started group saves
    and stops, a queued one never starts, and the launcher exits 143 once all have stopped."""
    from project.ensemble.parallel import GroupRunner

    names = [first, "wait", "wait"] if first == "wait" else [first, "wait"]
    dirs = [tmp_path / str(k) for k in range(len(names))]
    waiting = [d for d, name in zip(dirs[:2], names, strict=False) if name == "wait"]

    def kill_when_started() -> None:
        deadline = time.monotonic() + 60
        while not all((d / "started").exists() for d in waiting):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    for d in dirs:
        d.mkdir()
    killer = threading.Thread(target=kill_when_started, daemon=True)
    with GroupRunner(2, len(dirs), target=train_until_sigterm) as runner:
        for d, name in zip(dirs, names, strict=True):
            runner.submit(d.name, [(name, d)], [None])
        killer.start()
        with pytest.raises(SystemExit) as exc:
            runner.outcomes()
    assert exc.value.code == 143
    assert all((d / "saved").exists() for d in waiting)
    assert not any((d / "started").exists() for d in dirs[2:])


def _sweep(sweep: Path, n_jobs: int, *extra: str) -> None:
    run_main(
        "-m", *COMMON, "seed=0,1", "data.frac_train=0.3,0.5", *extra, "hydra/launcher=ensemble",
        f"hydra.launcher.n_jobs={n_jobs}", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip


def test_groups_in_two_workers_equal_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two groups (train fraction 0.3 / 0.5) x 2 seeds through the CLI with n_jobs=2: every member
    a complete run dir, weights bitwise those of the same sweep trained in-process (n_jobs=1),
    one torch thread in both."""
    import torch

    from project.checkpoint import read_checkpoint
    from project.runs import collect_runs

    monkeypatch.setenv("TORCH_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    try:
        _sweep(tmp_path / "serial", 1)
        _sweep(tmp_path / "parallel", 2)
    finally:
        torch.set_num_threads(threads)
    table = collect_runs(tmp_path / "parallel")
    assert len(table) == 4 and set(table["status"]) == {"finished"}
    trained_by = [
        json.loads((tmp_path / "parallel" / job / "summary.json").read_text())["ensemble"]
        for job in ("0", "1", "2", "3")
    ]
    assert {e["torch_threads"] for e in trained_by} == {1}
    assert len({e["pid"] for e in trained_by}) == 2  # this process and a worker, a group each
    assert os.getpid() in {e["pid"] for e in trained_by}
    for job in ("0", "1", "2", "3"):
        run_dir = tmp_path / "parallel" / job
        for name in (".hydra/config.yaml", "attempts.jsonl", "resolved_config.yaml",
                     "csv_logs/metrics.csv", "summary.json", "checkpoints/epoch_000002.ckpt"):  # fmt: skip
            assert (run_dir / name).is_file(), f"job {job}: no {name}"
        a = read_checkpoint(tmp_path / "serial" / job / "checkpoints" / "last.ckpt")
        b = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
        assert a["state_dict"].keys() == b["state_dict"].keys()
        for key, value in a["state_dict"].items():
            assert torch.equal(value, b["state_dict"][key]), f"job {job}: {key}"
        assert (tmp_path / "serial" / job / "csv_logs" / "metrics.csv").read_text() == (
            run_dir / "csv_logs" / "metrics.csv"
        ).read_text()


def test_a_failing_group_marks_its_jobs_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A group whose training raises: its jobs are Hydra's failed jobs (the sweep exits 1 with
    the error after the batch, as the basic launcher's sweep does), the other group finishes."""
    from project.ensemble import train as ensemble_train
    from project.runs import collect_runs

    real = ensemble_train.train_ensemble

    def fails_at_30_percent(members: Any, **kwargs: Any) -> Any:
        if float(members[0][0].data.frac_train) == 0.3:
            raise RuntimeError("injected failure")
        return real(members, **kwargs)

    monkeypatch.setattr(ensemble_train, "train_ensemble", fails_at_30_percent)
    with pytest.raises(SystemExit) as exc:
        _sweep(tmp_path / "sweep", 1)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "jobs 0, 1 failed: RuntimeError('injected failure')" in err
    table = collect_runs(tmp_path / "sweep")
    finished = table[table["status"] == "finished"]
    assert sorted(float(f) for f in finished["data.frac_train"]) == [0.5, 0.5]
    for job in ("0", "1"):
        log = (tmp_path / "sweep" / job / "run.log").read_text()
        assert "error: the ensemble group failed: RuntimeError('injected failure')" in log
