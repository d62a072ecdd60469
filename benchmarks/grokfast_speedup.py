"""Grokfast's claim on its own setup: optimiser steps to 95% val accuracy with and without the filter.

    uv run python benchmarks/grokfast_speedup.py                         # ema, ma, none; seeds 0 1 2
    uv run python benchmarks/grokfast_speedup.py --filters ema ma --seeds 0 --cap 400
    uv run python benchmarks/grokfast_speedup.py --filters none --seeds 0 --cap 3000

Each (filter, seed) runs the real CLI, ``experiment=grokfast_mul97`` (x*y mod 97, 50% split, batch
512, Adam, 2-layer LayerNorm transformer; see the preset), with the official command's settings:
``ema`` = alpha 0.98, lamb 2.0, weight decay 0.005; ``ma`` = window 100, lamb 5.0, weight decay
0.01; ``none`` = no filter at weight decay 0.005 (the same run as ``ema`` without the filter);
``none_wd0`` = no filter, weight decay 0 (the official baseline command). Validation every epoch (10 steps), an
EarlyStopping callback stops at the first val/acc >= 0.95; steps = completed epochs x steps per
epoch. A run that hits ``--cap`` epochs first reports ``> cap x steps``. One JSON line per run is
appended to ``--out`` (default ``benchmarks/grokfast_speedup.jsonl``) and a table printed last.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILTERS = {
    "ema": ["grokfast=ema", "model.optimizer.weight_decay=0.005"],
    "ma": ["grokfast=ma", "model.optimizer.weight_decay=0.01"],
    "none": ["grokfast=none", "model.optimizer.weight_decay=0.005"],
    "none_wd0": ["grokfast=none", "model.optimizer.weight_decay=0.0"],  # their baseline
}
CLAIM = {
    "ema": 910,
    "ma": 790,
    "none": 39890,
    "none_wd0": 39890,
}  # Grokfast README / paper, steps to 95% val acc
THRESHOLD = 0.95


def steps_per_epoch() -> int:
    from project.data.modular import ModularDataModule

    dm = ModularDataModule(operation="mul", modulus=97, frac_train=0.5, batch_size=512)
    return math.ceil(len(dm.train_idx) / 512)


def first_epoch_at(run_dir: Path, threshold: float = THRESHOLD) -> int | None:
    """Completed epochs at the first logged val/acc >= threshold (csv_logs/metrics.csv)."""
    path = next(run_dir.glob("csv_logs/**/metrics.csv"), None)
    if path is None:
        return None
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("val/acc") and float(row["val/acc"]) >= threshold:
                return int(row["epoch"]) + 1
    return None


def run_one(kind: str, seed: int, cap: int, out_root: Path) -> dict:
    overrides = [
        "experiment=grokfast_mul97",
        *FILTERS[kind],
        f"seed={seed}",
        f"trainer.max_epochs={cap}",
        "logger=csv",
        f"run.output_root={out_root}",
        f"run.name={kind}-s{seed}",
        "~callbacks.progress_bar",
        "+callbacks.stop_at._target_=lightning.pytorch.callbacks.EarlyStopping",
        "+callbacks.stop_at.monitor=val/acc",
        "+callbacks.stop_at.mode=max",
        f"+callbacks.stop_at.stopping_threshold={THRESHOLD}",
        "+callbacks.stop_at.patience=1000000",
        "+callbacks.stop_at.check_on_train_epoch_end=false",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "project.train.run", *overrides],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.time() - start
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"{kind} seed {seed}: training exited {proc.returncode}")
    run_dir = sorted(out_root.glob(f"*/*-{kind}-s{seed}"))[-1]
    epochs = first_epoch_at(run_dir)
    spe = steps_per_epoch()
    return {"filter": kind, "seed": seed, "epochs": epochs, "cap_epochs": cap,
            "steps": epochs * spe if epochs else None, "steps_per_epoch": spe,
            "claim_steps": CLAIM[kind], "wall_s": round(wall, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--filters", nargs="+", default=["ema", "ma", "none"], choices=FILTERS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cap", type=int, default=4000, help="epochs (10 steps each)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "grokfast_speedup.jsonl"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.filters:
            for seed in args.seeds:
                row = run_one(kind, seed, args.cap, Path(tmp))
                rows.append(row)
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    print("| filter | seed | steps to 95% val (here) | Grokfast's claim | wall s |")
    print("|---|---|---|---|---|")
    for r in rows:
        steps = r["steps"] if r["steps"] else f"> {r['cap_epochs'] * r['steps_per_epoch']}"
        print(f"| {r['filter']} | {r['seed']} | {steps} | {r['claim_steps']} | {r['wall_s']} |")


if __name__ == "__main__":
    main()
