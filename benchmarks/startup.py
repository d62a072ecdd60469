"""Start-up cost: seconds from process start to the first training step, ``--help`` and errors.

    uv run python benchmarks/startup.py [--repeats 3]
    uv run python benchmarks/startup.py --quick        # one repeat each

Each row is a fresh process (what a user pays per run), median and min over ``--repeats``:

* ``import torch`` / ``import lightning.pytorch`` (references);
* ``python -m project.train.run --help``;
* a bad input caught by the static validation (``trainer.max_epochs=0``: before anything heavy);
* a bad input caught when the task is built (``data.modulus=1``: the constructor's ``ValueError``);
* start -> first training step of the default config (stamped by a callback added with a Hydra
  override), and the whole 1-epoch run.

Then ``python -X importtime -c "import lightning.pytorch"``: the 10 biggest cumulative imports.
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
from benchmarks._common import load_note, machine, print_table  # noqa: E402


class FirstStepStamp(L.Callback):
    """Writes ``time.time()`` at the first training step to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not Path(self.path).exists():
            Path(self.path).write_text(repr(time.time()))


def timed(cmd: list[str], stamp: Path | None = None, expect: str = "ok") -> tuple[float, str]:
    """(seconds, note): wall time of ``cmd`` (or process start -> ``stamp``); ``expect`` is
    ``ok`` (exit 0) or ``error`` (a non-zero exit; the note is the first stderr line)."""
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    end = time.time()
    if (proc.returncode == 0) != (expect == "ok"):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    if stamp is not None:
        return float(stamp.read_text()) - t0, "first step"
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    note = f"exit {proc.returncode}" + (f": {lines[0][:60]}" if lines and expect == "error" else "")
    return end - t0, note


def import_offenders(module: str = "lightning.pytorch", top: int = 10) -> list[tuple]:
    """The ``top`` biggest cumulative times in ``python -X importtime -c 'import module'``."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        # "import time: self [us] | cumulative | imported package"
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        head, cum, name = line.split("|", 2)
        rows.append((name.strip(), int(head.split(":", 1)[1]), int(cum)))
    rows.sort(key=lambda r: -r[2])
    return [(name, f"{cum / 1e6:.2f}", f"{own / 1e6:.3f}") for name, own, cum in rows[:top]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat of each")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    py = sys.executable
    run = [py, "-m", "project.train.run"]
    results: dict[str, list[float]] = {}
    notes: dict[str, str] = {}

    def add(name: str, result: tuple[float, str]) -> None:
        results.setdefault(name, []).append(result[0])
        notes[name] = result[1]

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            stamp = Path(tmp) / f"stamp{i}"
            add("python -c 'import torch'", timed([py, "-c", "import torch"]))
            add(
                "python -c 'import lightning.pytorch'",
                timed([py, "-c", "import lightning.pytorch"]),
            )
            add("(a) project.train.run --help", timed([*run, "--help"]))
            add(
                "(b) static error: trainer.max_epochs=0",
                timed([*run, "trainer.max_epochs=0"], expect="error"),
            )
            add(
                "(c) constructor error: data.modulus=1",
                timed([*run, "data.modulus=1", f"run.output_root={tmp}/err"], expect="error"),
            )
            t0 = time.time()
            first, _ = timed(
                [
                    *run,
                    "trainer.max_epochs=1",
                    f"run.output_root={tmp}/outputs",
                    "+callbacks.first_step._target_=benchmarks.startup.FirstStepStamp",
                    f"+callbacks.first_step.path={stamp}",
                ],
                stamp,
            )
            add("(d) start -> first training step", (first, "default config"))
            add("    whole 1-epoch run (process wall)", (time.time() - t0, "exit 0"))
    rows = [
        (name, f"{statistics.median(v):.2f}", f"{min(v):.2f}", notes[name])
        for name, v in results.items()
    ]
    print_table(
        f"start-up (seconds, {args.repeats} fresh process(es) each); {machine()}; {load_note()}",
        rows,
        ("what", "median s", "min s", "note"),
    )
    print_table(
        "(e) python -X importtime -c 'import lightning.pytorch': 10 biggest cumulative",
        import_offenders(),
        ("module", "cumulative s", "self s"),
    )


if __name__ == "__main__":
    main()
