"""The worked phase diagram of docs/sweeps.md as jobs per hour: joblib sweep vs the ensemble.

    uv run python benchmarks/sweep_time.py                    # the docs' grid: 18 jobs x 200 epochs
    uv run python benchmarks/sweep_time.py --epochs 100 --seeds 0   # scaled down (9 jobs)
    uv run python benchmarks/sweep_time.py --quick             # smoke test: 2 x 2 x 1 x 20 epochs

(a + b) mod 31, fast_grok's optimiser (AdamW lr 1e-2, betas 0.9/0.98, 10-step warm-up, full
batch, float64 loss), weight decay x train fraction x seeds, validation every 10 epochs, progress
measures, snapshots and the bar off, CSV logger. Three ways, in one run, each timed as wall clock:

* ``strong``: the hand-written ``StrongLoop`` (benchmarks/_common.py) over every job, one after
  the other in this process (no start-up, no run dirs): the plain-PyTorch reference; measured
  before and after the two sweeps, and the ratios use the mean of the two (the box drifts);
* ``joblib``: the docs' command, ``project.train.run -m ... hydra/launcher=joblib n_jobs=2``, a
  fresh process (imports, Hydra, worker start-up, run dirs all counted);
* ``ensemble``: the same command with ``hydra/launcher=ensemble`` (jobs that differ in seed and
  weight decay train together, one group per train fraction; the groups in parallel processes,
  ``hydra.launcher.n_jobs``: the launcher's default, or ``--ensemble-jobs``).

Prints jobs/hour, seconds, ratios to ``strong`` and ``ensemble / joblib``, and both phase
diagrams (epochs to 99% val acc per cell, ``project.runs.sweep.phase_table``) side by side.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import StrongLoop, load_note, machine, print_table  # noqa: E402

from project.data.modular import ModularDataModule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def grid_args(epochs: int, wds: list[str], fracs: list[str], seeds: list[str]) -> list[str]:
    return [
        "-m", f"seed={','.join(seeds)}", "data.modulus=31", f"data.frac_train={','.join(fracs)}",
        f"model.optimizer.weight_decay={','.join(wds)}", "model.optimizer.lr=1e-2",
        "trainer=cpu", f"trainer.max_epochs={epochs}", "trainer.check_val_every_n_epoch=10",
        "logger=csv", "callbacks.progress_measures.every_n_epochs=0",
        "callbacks.snapshots.every_n_epochs=0", "callbacks.progress_bar=null",
    ]  # fmt: skip


def run_sweep(args: list[str], sweep_dir: Path) -> float:
    """Wall seconds of one CLI multirun in a fresh process."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "project.train.run", *args, f"hydra.sweep.dir={sweep_dir}"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def strong_sweep(epochs: int, wds: list[str], fracs: list[str], seeds: list[str]) -> float:
    """Every job of the grid in ``StrongLoop``, one after the other; wall seconds."""
    t0 = time.perf_counter()
    for frac in fracs:
        dm = ModularDataModule(modulus=31, frac_train=float(frac))
        x_tr, y_tr = dm.tokens[dm.train_idx], dm.answers[dm.train_idx]
        x_va, y_va = dm.tokens[dm.val_idx], dm.answers[dm.val_idx]
        for wd in wds:
            for seed in seeds:
                loop = StrongLoop(seed=int(seed), modulus=31, lr=1e-2, weight_decay=float(wd))
                history = []
                for epoch in range(1, epochs + 1):
                    history.append(loop.step(x_tr, y_tr))
                    if epoch % 10 == 0:
                        loop.validate(x_va, y_va)
                torch.stack([loss for loss, _ in history]).sum().item()
    return time.perf_counter() - t0


def phase_cells(sweep_dir: Path) -> dict[tuple[float, float], str]:
    from project.runs import collect_runs
    from project.runs.sweep import phase_table

    x, y = "model.optimizer.weight_decay", "data.frac_train"
    cells = phase_table(collect_runs(sweep_dir), x, y)
    out = {}
    for _, row in cells.iterrows():
        mean = row["reached_mean"]
        shown = f"{mean:.0f}" if mean == mean else f"acc {row['best']:.2f}"
        out[(float(row[x]), float(row[y]))] = f"{shown} ({int(row['reached'])}/{int(row['n'])})"
    return out


def ensemble_train_seconds(sweep_dir: Path) -> float:
    """Seconds the ensemble groups spent training, summed (``summary.json``: one value per
    group; groups trained in parallel overlap in wall time)."""
    import json

    per_group = {}
    for path in sweep_dir.glob("*/summary.json"):
        info = json.loads(path.read_text()).get("ensemble") or {}
        per_group[(info.get("members"), info.get("train_seconds"))] = info.get("train_seconds", 0)
    return float(sum(per_group.values()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--wds", default="1.0,3.0,10.0")
    parser.add_argument("--fracs", default="0.3,0.5,0.7")
    parser.add_argument("--quick", action="store_true", help="2 wd x 2 fracs x 1 seed x 20 epochs")
    parser.add_argument("--threads", type=int, default=0, help="TORCH_NUM_THREADS for all three")
    parser.add_argument("--no-joblib", action="store_true", help="skip the joblib sweep")
    parser.add_argument(
        "--ensemble-jobs", type=int, default=None,
        help="hydra.launcher.n_jobs for the ensemble sweep (default: the launcher's, -1)",
    )  # fmt: skip
    a = parser.parse_args(argv)
    if a.quick:
        a.epochs, a.seeds, a.wds, a.fracs = 20, "0", "1.0,3.0", "0.3,0.7"
    if a.threads:
        os.environ["TORCH_NUM_THREADS"] = str(a.threads)  # the sweeps' jobs and the ensemble
        torch.set_num_threads(a.threads)
    seeds, wds, fracs = a.seeds.split(","), a.wds.split(","), a.fracs.split(",")
    jobs = len(seeds) * len(wds) * len(fracs)
    print(f"{datetime.date.today()}  {machine()}  {load_note()}")
    print(f"grid: p=31, wd {wds} x frac {fracs} x seeds {seeds}, {a.epochs} epochs: {jobs} jobs")
    args = grid_args(a.epochs, wds, fracs, seeds)
    walls: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        strong_before = strong_sweep(a.epochs, wds, fracs, seeds)
        ensemble = ["hydra/launcher=ensemble"]
        if a.ensemble_jobs is not None:
            ensemble.append(f"hydra.launcher.n_jobs={a.ensemble_jobs}")
        walls["ensemble"] = run_sweep([*args, *ensemble], Path(tmp, "ensemble"))
        if not a.no_joblib:
            joblib = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
            walls["joblib"] = run_sweep([*args, *joblib], Path(tmp, "joblib"))
        strong_after = strong_sweep(a.epochs, wds, fracs, seeds)
        walls["strong"] = (strong_before + strong_after) / 2
        print(f"strong loop: {strong_before:.1f} s before the sweeps, {strong_after:.1f} s after")
        trained = ensemble_train_seconds(Path(tmp, "ensemble"))
        print(f"ensemble: {trained:.1f} s of training, summed over its groups (in parallel with"
              " n_jobs > 1; the rest of the wall time: start-up, building members)")  # fmt: skip
        rows = []
        for name in ("strong", "ensemble", "joblib"):
            if name in walls:
                wall = walls[name]
                rows.append((name, f"{wall:.1f}", f"{jobs / wall * 3600:.0f}",
                             f"{wall / walls['strong']:.2f}"))  # fmt: skip
        print_table("wall seconds, jobs per hour", rows, ("how", "s", "jobs/h", "/ strong"))
        if "joblib" in walls:
            print(f"\nensemble speed-up over joblib: {walls['joblib'] / walls['ensemble']:.2f}x")
            ens, job = phase_cells(Path(tmp, "ensemble")), phase_cells(Path(tmp, "joblib"))
            rows = [(f"wd {x:g} frac {y:g}", job.get((x, y), "?"), ens.get((x, y), "?"))
                    for x, y in sorted(ens)]  # fmt: skip
            title = "epochs to 99% val acc, mean over seeds that grokked (grokked/n)"
            print_table(title, rows, ("cell", "joblib", "ensemble"))
        else:
            ens = phase_cells(Path(tmp, "ensemble"))
            rows = [(f"wd {x:g} frac {y:g}", v) for (x, y), v in sorted(ens.items())]
            print_table("ensemble phase diagram", rows, ("cell", "epochs to 99% (n)"))
    print(f"\n{load_note()}")


if __name__ == "__main__":
    main()
