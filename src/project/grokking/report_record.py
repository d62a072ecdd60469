"""Record a modular run's trajectory, small enough to commit, so its report needs no checkpoints.

    uv run python -m project.grokking.report_record outputs/<date>/<time> docs/results/<name>

Writes to the output dir:

- ``resolved_config.yaml`` and ``summary.json`` (copied), ``progress.jsonl`` (the live measures,
  copied);
- ``csv_logs/metrics.csv``: the metric history, only ``epoch, step, lr, train/loss, train/acc,
  val/loss, val/acc`` (from whichever logger the run used);
- ``trajectory.jsonl``: the Nanda et al. measures of every snapshot recomputed with the final
  model's key frequencies (what the report computes from the checkpoints:
  ``report_fourier.trajectory``), one JSON object per snapshot;
- ``final.json``: the final model's measures and key frequencies, ``key_rule`` naming the rule
  that found them (neuron clusters for the transformer).

``python -m project.report <output dir>`` then recomputes the phases, key frequencies and measure
figures from these files (``trajectory.jsonl`` in place of the snapshots); the sections that need
weights are marked as such.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

METRIC_COLUMNS = ("epoch", "step", "lr", "train/loss", "train/acc", "val/loss", "val/acc")


def _plain(x: Any) -> Any:
    """JSON-ready value, floats to 7 significant digits, non-finite as None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray):
        return [_plain(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if hasattr(x, "tolist") and not isinstance(x, str):
        return _plain(x.tolist())
    if isinstance(x, float | np.floating):
        return float(f"{float(x):.7g}") if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def record(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the recorded trajectory of ``run_dir`` to ``out_dir``; returns ``out_dir``."""
    from project.grokking import report_fourier as rf
    from project.interp import fourier as fo
    from project.runs.load import load_run

    run, out = load_run(run_dir), Path(out_dir)
    if not rf.is_modular(run):
        raise ValueError(f"{run.run_dir}: not a modular-arithmetic run (no data.modulus)")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("resolved_config.yaml", "summary.json", "progress.jsonl"):
        if (run.run_dir / name).is_file():
            shutil.copy(run.run_dir / name, out / name)
    metrics = run.metrics[[c for c in METRIC_COLUMNS if c in run.metrics]]
    values = [c for c in metrics.columns if c not in ("epoch", "step")]
    metrics = metrics.dropna(how="all", subset=values)
    (out / "csv_logs").mkdir(exist_ok=True)
    metrics.to_csv(out / "csv_logs" / "metrics.csv", index=False, float_format="%.8g")
    dm, model = run.datamodule(), run.final_model()
    p, op = dm.modulus, dm.operation
    final = fo.progress_measures(model, p, dm.tokens, dm.answers, dm.train_idx, dm.val_idx, op)
    keys = list(final["key_freqs"])
    traj = rf.trajectory(run.snapshot_paths, dm, keys, max_snapshots=len(run.snapshot_paths))
    with (out / "trajectory.jsonl").open("w") as f:
        for row in traj.to_dict("records"):
            f.write(json.dumps(_plain(row)) + "\n")
    extra = {"key_rule": fo.key_rule(final), "source_run": str(run.run_dir)}
    (out / "final.json").write_text(json.dumps(_plain({**final, **extra}), indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m project.grokking.report_record", description=__doc__
    )
    parser.add_argument("run_dir", help="a modular run dir with checkpoint snapshots")
    parser.add_argument("out_dir", help="where the recorded trajectory goes")
    args = parser.parse_args(argv)
    try:
        out = record(args.run_dir, args.out_dir)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sizes = {p.relative_to(out).as_posix(): p.stat().st_size for p in out.rglob("*") if p.is_file()}
    print(f"recorded: {out} {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
