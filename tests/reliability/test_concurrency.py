"""Load: 4 training processes started in the same second on the same ``outputs/`` each get their
own, complete run dir (``rundir.py`` claims names with an atomic ``os.mkdir``)."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch

from project.train.rundir import claim_run_dir
from tests.conftest import ROOT, SMALL, cli_env, run_dirs
from tests.reliability.helpers import DEFAULT_THREADS


@pytest.mark.slow  # ~60 s on 2 loaded cores; the same-second claim test below is the fast check
def test_four_concurrent_runs_same_second_get_distinct_complete_dirs(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    cmd = [sys.executable, "-m", "project.train.run", f"run.output_root={out}", *SMALL]
    cmd += ["trainer.max_epochs=3", "logger=csv"]
    # start all four at the beginning of a fresh second so their HH-MM-SS names collide
    time.sleep(1 - time.time() % 1)
    procs = [
        subprocess.Popen(
            [*cmd, f"seed={i}"],
            cwd=ROOT,
            env=cli_env(**DEFAULT_THREADS),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    errors = [p.communicate(timeout=400)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(e[-2000:] for e in errors)

    dirs = run_dirs(out)
    assert len(dirs) == 4, dirs
    seeds = set()
    for run_dir in dirs:
        for name in (".hydra/config.yaml", "resolved_config.yaml", "csv_logs/metrics.csv"):
            assert (run_dir / name).is_file(), f"{run_dir} lacks {name}"
        last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        assert last["global_step"] == 3
        resolved = (run_dir / "resolved_config.yaml").read_text()
        seeds |= {line for line in resolved.splitlines() if line.startswith("seed:")}
    assert len(seeds) == 4, "two processes wrote into the same run dir"


def _claim(args: tuple[str, str]) -> str:
    root, name = args
    return claim_run_dir(root, name or None, now=datetime(2026, 1, 2, 3, 4, 5))


def test_claims_in_the_same_second_from_many_processes_are_distinct(tmp_path: Path) -> None:
    """The same second for sure: 8 processes claim ``03-04-05`` at once."""
    jobs = [(str(tmp_path), "")] * 6 + [(str(tmp_path), "named")] * 2
    # one claim per process, like the CLI (a process caches its claim for later resolutions)
    with multiprocessing.get_context("fork").Pool(8, maxtasksperchild=1) as pool:
        claimed = pool.map(_claim, jobs, chunksize=1)
    assert len(set(claimed)) == 8
    names = sorted(Path(c).name for c in claimed)
    expected = ["03-04-05", *(f"03-04-05_{i}" for i in range(1, 6))]
    assert names == sorted([*expected, "03-04-05-named", "03-04-05-named_1"])
    assert all(Path(c).is_dir() and Path(c).parent.name == "2026-01-02" for c in claimed)
