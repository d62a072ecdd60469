"""Resumable sweeps: kill -9 a real sweep mid-job, rerun the same command into the same sweep dir:
finished jobs are skipped, the interrupted one resumes from its last.ckpt (epoch count continued),
every job ends exactly once. Basic launcher by default; joblib as a slow test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from project.train.sweep_jobs import config_differences, decide, read_attempts
from project.train.threads import effective_jobs, threads_per_job
from tests.conftest import cli_env
from tests.sweeps.conftest import SWEEP

EPOCHS = 12


def sweep_command(sweep: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "project.train.run",
        "-m",
        "seed=0,1",
        *SWEEP,
        f"trainer.max_epochs={EPOCHS}",
        f"hydra.sweep.dir={sweep}",
        *extra,
    ]


def kill_mid_job(cmd: list[str], cwd: Path, job_dir: Path, timeout: float = 600) -> None:
    """Start the sweep in its own process group; SIGKILL the whole group once ``job_dir`` has a
    last.ckpt (the job is mid-training: fewer than ``EPOCHS`` epochs done)."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not (job_dir / "checkpoints" / "last.ckpt").is_file():
            assert proc.poll() is None, f"sweep ended before {job_dir} started"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_log_finishes(job_dir: Path) -> int:
    return (job_dir / "run.log").read_text().count("status:      finished")


def check_resumed_sweep(sweep: Path, interrupted: str) -> None:
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "finished"
        assert summary["epochs"] == EPOCHS and summary["steps"] == EPOCHS  # full batch
        assert run_log_finishes(sweep / job) == 1, f"job {job} finished more than once"
    attempts = read_attempts(sweep / interrupted)
    assert [a["action"] for a in attempts] == ["fresh", "resume"]
    assert 1 <= attempts[1]["from_epoch"] < EPOCHS  # continued, not restarted


@pytest.mark.parametrize(
    "launcher",
    ["basic", pytest.param("joblib", marks=pytest.mark.slow)],
)
def test_killed_sweep_resumes_and_every_job_ends_once(tmp_path: Path, launcher: str) -> None:
    sweep = tmp_path / "sweep"
    extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    cmd = sweep_command(sweep, *extra)
    interrupted = "1" if launcher == "basic" else "0"
    kill_mid_job(cmd, tmp_path, sweep / interrupted)
    before = read_attempts(sweep / interrupted)
    assert [a["action"] for a in before] == ["fresh"]
    assert not (sweep / interrupted / "summary.json").exists()

    proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"sweep job {interrupted}: resumed after epoch" in proc.stdout
    check_resumed_sweep(sweep, interrupted)
    if launcher == "basic":  # job 0 had finished before the kill
        assert [a["action"] for a in read_attempts(sweep / "0")] == ["fresh", "skip"]
        assert "sweep job 0: finished before: skipped" in proc.stdout
    else:  # two jobs at once, so jobs x threads <= cores
        cores = len(os.sched_getaffinity(0))
        for job in ("0", "1"):
            assert read_attempts(sweep / job)[-1]["torch_threads"] == max(1, cores // 2)

    # a third run of the same command trains nothing
    proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.count("finished before: skipped") == 2

    # seed statistics over this real sweep
    from project.runs import collect_runs
    from project.runs.sweep import format_seed_stats, seed_stats

    stats = seed_stats(collect_runs(sweep))
    assert len(stats) == 1 and stats["n"].iloc[0] == 2 and stats["seeds"].iloc[0] == [0, 1]
    assert 0 <= stats["best_val_acc_mean"].iloc[0] <= 1 and stats["val_loss_n"].iloc[0] == 2
    assert "± " in format_seed_stats(stats)


def test_decide_skip_resume_fresh_and_refuse_a_changed_sweep(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"seed": 0, "run": {"ckpt_path": None}, "model": {"d_vocab": None}})
    assert decide(cfg, tmp_path).action == "fresh"
    (tmp_path / "resolved_config.yaml").write_text("seed: 0\nrun: {ckpt_path: null}\n")
    assert decide(cfg, tmp_path).action == "fresh"  # started, but no checkpoint yet
    (tmp_path / "summary.json").write_text(json.dumps({"status": "finished", "final": {"a": 1}}))
    plan = decide(cfg, tmp_path)
    assert plan.skip and plan.metrics == {"a": 1.0}
    other = OmegaConf.create({"seed": 1, "run": {"ckpt_path": None}})
    with pytest.raises(SystemExit) as exc:
        decide(other, tmp_path)
    assert exc.value.code == 2
    assert config_differences({"a": {"b": 1}, "c": 2}, {"a": {"b": 2}, "c": 2}) == ["a.b"]
    assert config_differences({"net": {"d_vocab": 24}}, {"net": {"d_vocab": None}}) == []


def test_threads_per_job() -> None:
    assert threads_per_job(2, 16) == 8
    assert threads_per_job(3, 2) == 1
    assert threads_per_job(-1, 16) == 1 and effective_jobs(-2, 16) == 15
    assert threads_per_job(None, 4) == 4
