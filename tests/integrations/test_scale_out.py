"""Rank-safe CPU DDP (2 processes, gloo), Hydra multirun on three launchers, and collect_runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, cli_env, run_cli, run_dirs, train_in_process
from tests.integrations.conftest import TINY, main_in_process

DDP_SETTINGS = [*TINY, "trainer.max_epochs=12", "model.scheduler.warmup_steps=2", "logger=csv"]


def test_data_shards_are_disjoint_and_complete() -> None:
    from project.data.base import DeviceBatches

    tokens, labels = torch.arange(21 * 3).view(21, 3), torch.arange(21)
    for batch_size, shuffle in ((None, False), (8, True)):
        per_rank = [
            list(DeviceBatches(tokens, labels, batch_size, shuffle, 0, rank, 2)) for rank in (0, 1)
        ]
        assert len(per_rank[0]) == len(per_rank[1])  # same number of steps on every rank
        seen = torch.cat([y for rank in per_rank for _, y in rank])
        assert sorted(seen.tolist()) == list(range(21))  # no duplicates, no drops


@pytest.fixture(scope="module")
def ddp_and_single(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("ddp")
    out = tmp / "ddp_outputs"
    proc = run_cli(
        *[ov for ov in DDP_SETTINGS if ov != "trainer=cpu"],
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"run.output_root={out}",
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dirs = run_dirs(out)
    assert len(dirs) == 1, f"DDP made {len(dirs)} run dirs: {dirs}"
    single = train_in_process(tmp, *DDP_SETTINGS)
    return dirs[0], single


def test_ddp_one_run_dir_written_once(ddp_and_single) -> None:
    ddp_dir, _ = ddp_and_single
    assert (ddp_dir / "resolved_config.yaml").is_file()
    assert sorted(p.name for p in (ddp_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    assert len(list(ddp_dir.rglob("metrics.csv"))) == 1
    assert len(list(ddp_dir.rglob("resolved_config.yaml"))) == 1
    assert len(list(ddp_dir.rglob("summary.json"))) == 1
    summary = json.loads((ddp_dir / "summary.json").read_text())
    assert summary["epochs"] == 12 and summary["steps"] == 12  # full batch: one step per epoch


def val_acc_of(ckpt: Path) -> float:
    from project.data.modular import ModularDataModule
    from project.utils.helpers import load_checkpoint

    model, _ = load_checkpoint(ckpt, device="cpu")
    data = ModularDataModule(modulus=23, frac_train=0.5)
    tokens, labels = data.split("val")
    with torch.no_grad():
        return (model(tokens)[:, -1].argmax(-1) == labels[:, -1]).float().mean().item()


def test_ddp_metrics_are_all_reduced_and_match_single_process(ddp_and_single) -> None:
    ddp_dir, single_dir = ddp_and_single
    ddp = json.loads((ddp_dir / "summary.json").read_text())["final"]
    single = json.loads((single_dir / "summary.json").read_text())["final"]
    # rank 0 holds half the val split; the logged value covers all of it (all-reduced)
    assert ddp["val/acc"] == pytest.approx(
        val_acc_of(ddp_dir / "checkpoints" / "last.ckpt"), abs=1e-6
    )
    assert single["train/acc"] > 0.1  # it learned something (chance = 1/23)
    # same global (full) batch on 1 or 2 processes: the same optimisation up to float error
    for key in ("train/loss", "val/loss"):
        assert ddp[key] == pytest.approx(single[key], rel=1e-3)
    for key in ("train/acc", "val/acc"):
        assert ddp[key] == pytest.approx(single[key], abs=0.02)


LAUNCHERS = {
    "basic": [],
    "joblib": ["hydra/launcher=joblib"],
    "submitit": ["hydra/launcher=submitit_local"],
}


def _sweep_dir(cwd: Path) -> Path:
    sweep_dirs = [p for p in (cwd / "multirun").glob("*/*") if p.is_dir()]
    assert len(sweep_dirs) == 1, sweep_dirs
    return sweep_dirs[0]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, Path]:
    """A 2-job ``-m seed=0,1`` sweep on each launcher; returns launcher -> sweep dir.

    joblib and submitit_local run as real CLI subprocesses (they start their own workers) at the
    same time; the basic launcher runs the same entrypoint in this process meanwhile.
    """
    cwds = {name: tmp_path_factory.mktemp(f"sweep_{name}") for name in LAUNCHERS}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "project.train.run", "-m", "seed=0,1", *TINY, *extra],
            cwd=cwds[name],
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, extra in LAUNCHERS.items()
        if name != "basic"
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwds["basic"])
        main_in_process("-m", "seed=0,1", *TINY)
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
    return {name: _sweep_dir(cwd) for name, cwd in cwds.items()}


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_multirun_makes_complete_run_dirs(sweeps, launcher) -> None:
    sweep = sweeps[launcher]
    assert (sweep / "multirun.yaml").is_file()
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    seeds = set()
    for job in jobs:
        run_dir = sweep / job
        for rel in (".hydra/overrides.yaml", "resolved_config.yaml", "run.log", "summary.json"):
            assert (run_dir / rel).is_file(), f"{launcher}: {run_dir / rel} missing"
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
        assert list((run_dir / "tb_logs").glob("events.out.tfevents.*"))
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["epochs"] == 3
        seeds.add((run_dir / "resolved_config.yaml").read_text().split("\n", 1)[0])
    assert seeds == {"seed: 0", "seed: 1"}


def test_collect_runs_over_the_sweeps(sweeps, ddp_and_single, capsys) -> None:
    from project.runs import collect_runs
    from project.runs.table import main

    roots = [p.parent.parent for p in sweeps.values()]  # <tmp>/multirun
    df = collect_runs(*roots, ddp_and_single[0].parent.parent)
    assert len(df) == 7
    assert sorted(df["seed"].dropna().astype(int).tolist()) == [0, 0, 0, 1, 1, 1]
    assert set(df["status"]) == {"finished"}
    assert df["val_acc"].between(0, 1).all() and df["epochs"].isin([3, 12]).all()
    row = df[df["run_dir"] == str(ddp_and_single[0])].iloc[0]
    summary = json.loads((ddp_and_single[0] / "summary.json").read_text())
    assert row["val_acc"] == pytest.approx(summary["final"]["val/acc"])
    assert "trainer.devices=2" in row["overrides"]

    main([str(r) for r in roots])
    out = capsys.readouterr().out
    assert out.startswith("common overrides: ")
    assert "seed=0" in out and "seed=1" in out
    assert out.count("finished") == 6  # one table row per sweep job


def test_sbatch_example_is_valid_bash() -> None:
    script = ROOT / "scripts" / "slurm_ddp.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "trainer.num_nodes" in text and "srun" in text
