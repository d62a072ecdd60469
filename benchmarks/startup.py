"""Start-up cost: seconds from process start to the first training step, and for ``--help``.

    uv run python benchmarks/startup.py [--repeats 3]

Each measurement is a fresh ``python -m project.train.run`` process (what a user pays per run);
the first step is stamped by a tiny callback added through a Hydra override. Reference rows: bare
``import torch`` and ``import lightning`` in fresh processes. Prints a table last.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._common import machine, print_table  # noqa: E402


class FirstStepStamp(L.Callback):
    """Writes ``time.time()`` at the first training step to ``path``, then stops the run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not Path(self.path).exists():
            Path(self.path).write_text(repr(time.time()))


def timed(cmd: list[str], stamp: Path | None = None) -> float:
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    end = float(stamp.read_text()) if stamp is not None else time.time()
    return end - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    py = sys.executable
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            stamp = Path(tmp) / f"stamp{i}"
            results.setdefault("python -c 'import torch'", []).append(
                timed([py, "-c", "import torch"])
            )
            results.setdefault("python -c 'import lightning'", []).append(
                timed([py, "-c", "import lightning"])
            )
            results.setdefault("project.train.run --help", []).append(
                timed([py, "-m", "project.train.run", "--help"])
            )
            results.setdefault("project.train.run: bad override -> error", []).append(
                timed(
                    [
                        py,
                        "-c",
                        "import subprocess, sys; sys.exit(0 if subprocess.run([sys.executable, '-m', 'project.train.run', 'data.modulus=1'], capture_output=True).returncode == 2 else 1)",
                    ]
                )
            )
            results.setdefault("project.train.run: start -> first train step", []).append(
                timed(
                    [
                        py,
                        "-m",
                        "project.train.run",
                        "trainer=cpu",
                        "trainer.max_epochs=1",
                        f"run.output_root={tmp}/outputs",
                        "+callbacks.first_step._target_=benchmarks.startup.FirstStepStamp",
                        f"+callbacks.first_step.path={stamp}",
                    ],
                    stamp,
                )
            )
    rows = [(name, f"{statistics.median(v):.2f}", f"{min(v):.2f}") for name, v in results.items()]
    print_table(
        f"start-up (seconds, {args.repeats} fresh processes each), {machine()}",
        rows,
        ("what", "median s", "min s"),
    )


if __name__ == "__main__":
    main()
