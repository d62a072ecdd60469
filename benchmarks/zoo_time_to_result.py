"""Time-to-result of each task-zoo preset, over seeds, through the real entrypoint.

    uv run python benchmarks/zoo_time_to_result.py [--tasks induction sparse_parity s5 text]
        [--seeds 0 1 2] [--out /tmp/zoo_bench]

Each run is ``python -m project.train.run experiment=<task> seed=<s> logger=csv`` in a fresh
process (wall time includes start-up). "Result" is the preset's known result, read from the run:

- induction: val/acc (repeated tokens at unseen periods) >= 0.9 (and the induction score, after)
- sparse_parity: val/acc = 1.0
- s5: val/acc >= 0.99
- text (on README.md): val/loss < the file's unigram entropy

The s5 runs stop at the result (``EarlyStopping`` with ``stopping_threshold``), so their wall time
is the time to the result; the others run their preset length. Prints one row per run (wall
seconds, first epoch reaching the result, final value) and the median per task.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("induction", "sparse_parity", "s5", "text")
QUIET = ["logger=csv", "callbacks.progress_bar=null", "trainer=cpu"]


def first_epoch(run_dir: Path, task: str) -> tuple[int | None, float | None, float]:
    """(first epoch reaching the result, final metric, threshold) from csv_logs/metrics.csv."""
    metrics = pd.concat(pd.read_csv(p) for p in run_dir.rglob("metrics.csv"))
    if task == "text":
        from project.runs.load import load_run

        threshold = load_run(run_dir).datamodule().unigram_entropy()
        col, hit = "val/loss", lambda v: v < threshold
    else:
        threshold = {"induction": 0.9, "sparse_parity": 1.0, "s5": 0.99}[task]
        col, hit = "val/acc", lambda v: v >= threshold
    rows = metrics[["epoch", col]].dropna()
    reached = rows[[hit(v) for v in rows[col]]]
    epoch = int(reached.epoch.iloc[0]) + 1 if len(reached) else None  # completed epochs
    final = float(rows[col].iloc[-1]) if len(rows) else None
    return epoch, final, threshold


def induction_score(run_dir: Path) -> float:
    from project.interp.induction import head_detector, repeat_query_mask
    from project.runs.load import load_run

    run = load_run(run_dir)
    tokens, labels = run.datamodule().splits()["val"]
    scores = head_detector(
        run.final_model(), tokens[:256], repeat_query_mask(labels[:256]), reduce="supervised_query"
    )  # the number the zoo table quotes as "supervised-query"; TL's detect_head: reduce="tl"
    return float(scores[scores.layer == 1].induction.max())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="/tmp/zoo_bench")
    args = parser.parse_args()
    rows = []
    for task in args.tasks:
        for seed in args.seeds:
            name = f"{task}-s{seed}"
            extra = [f"data.path={ROOT / 'README.md'}"] if task == "text" else []
            if task == "s5":  # a long run: stop at the result (Lightning's EarlyStopping)
                extra.append(
                    "+callbacks.stop_at_result={_target_:lightning.pytorch.callbacks.EarlyStopping,"
                    "monitor:val/acc,mode:max,stopping_threshold:0.99,patience:1000000}"
                )
            cmd = [
                sys.executable,
                "-m",
                "project.train.run",
                f"experiment={task}",
                f"seed={seed}",
                f"run.output_root={args.out}",
                f"run.name={name}",
                *QUIET,
                *extra,
            ]
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - start
            run_dir = max(Path(args.out).glob(f"*/*-{name}"), key=lambda p: p.stat().st_mtime)
            if proc.returncode != 0:
                print(f"{name}: FAILED (exit {proc.returncode})\n{proc.stderr[-2000:]}")
                continue
            epoch, final, threshold = first_epoch(run_dir, task)
            summary = json.loads((run_dir / "summary.json").read_text())
            row = {
                "task": task,
                "seed": seed,
                "wall_s": round(wall, 1),
                "epochs": summary["epochs"],
                "result_epoch": epoch,
                "final": final,
                "threshold": round(threshold, 3),
            }
            # time to result ~ the wall time pro rata of epochs (start-up counted in full)
            row["result_s"] = round(wall * epoch / summary["epochs"], 1) if epoch else None
            if task == "induction":
                row["induction_score"] = round(induction_score(run_dir), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    for task, group in table.groupby("task"):
        ok = group.result_epoch.notna().sum()
        print(
            f"{task}: result in {ok}/{len(group)} seeds; median wall {statistics.median(group.wall_s):.0f} s"
        )


if __name__ == "__main__":
    main()
