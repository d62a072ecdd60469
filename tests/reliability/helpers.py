"""Shared pieces of the reliability tests: start/stop real training processes, compare runs."""

from __future__ import annotations

import contextlib
import csv
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from tests.conftest import ROOT, cli_env, run_dirs

# One BLAS/OpenMP thread: with several, some CPU kernels are not bit-reproducible even between two
# uninterrupted runs (measured: ~1e-7 after one step with 2 threads); trainer.deterministic=true
# also fixes that, but costs ~3x here. Resume itself is exact either way.
# Default settings: as many threads as torch picks by itself (bit-reproducible on CPU since the
# embedding backward is F.embedding's); children and in-process runs use the same count.
DEFAULT_THREADS = {"OMP_NUM_THREADS": str(torch.get_num_threads())}


@contextlib.contextmanager
def default_threads() -> Iterator[None]:
    """In-process runs with the thread count the child processes use (torch's default)."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(DEFAULT_THREADS["OMP_NUM_THREADS"]))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# what a resumed run must reproduce bit for bit (loop progress counters legitimately differ)
EXACT_KEYS = (
    "epoch", "global_step", "state_dict", "optimizer_states", "lr_schedulers", "grad_filter",
    "rng_states",
)  # fmt: skip


def start_training(out: Path, *overrides: str, log: Path) -> subprocess.Popen:
    """The real CLI in a child process (its own pid, so signals hit the trainer itself)."""
    with log.open("w") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "project.train.run", f"run.output_root={out}", *overrides],
            cwd=ROOT,
            env=cli_env(**DEFAULT_THREADS),
            stdout=f,
            stderr=subprocess.STDOUT,
            text=True,
        )


def wait_for_checkpoint(
    proc: subprocess.Popen, out: Path, min_step: int, timeout: float = 240
) -> Path:
    """Poll until ``<run_dir>/checkpoints/last.ckpt`` holds at least ``min_step`` steps."""
    deadline = time.monotonic() + timeout
    seen: dict[Path, int] = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"training exited early ({proc.returncode})"
        for run_dir in run_dirs(out):
            last = run_dir / "checkpoints" / "last.ckpt"
            stamp = last.stat().st_mtime_ns if last.is_file() else None
            if stamp is not None and seen.get(last) != stamp:
                seen[last] = stamp
                step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
                if step >= min_step:
                    return run_dir
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("no checkpoint appeared in time")


def resume_in_process(ckpt: Path) -> None:
    """``python -m project.train.run run.ckpt_path=<ckpt>`` through the real entrypoint."""
    from project.train import run as run_module
    from project.train.rundir import _CLAIMED

    argv = sys.argv
    _CLAIMED.clear()
    sys.argv = ["project.train.run", f"run.ckpt_path={ckpt}"]
    try:
        with default_threads():
            run_module.main()
    finally:
        sys.argv = argv
        _CLAIMED.clear()


def final_metrics(run_dir: Path) -> dict[str, str]:
    """Metrics of the last epoch in ``csv_logs/metrics.csv``, as written (exact decimal text)."""
    with (run_dir / "csv_logs" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("epoch")]
    last_epoch = max(int(r["epoch"]) for r in rows)
    merged: dict[str, str] = {}
    for row in rows:
        if int(row["epoch"]) == last_epoch:
            merged.update({k: v for k, v in row.items() if v not in ("", None)})
    return merged


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def assert_bit_identical(a: object, b: object, where: str = "ckpt") -> None:
    """Tensors equal bit for bit (dtype, shape, every value); containers recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        bits_a, bits_b = a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)
        assert torch.equal(bits_a, bits_b), f"{where}: values differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            assert_bit_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_bit_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A real, small filesystem mounted at ``mnt`` (skips the test where mounting is not
    allowed); unmounted afterwards."""
    import pytest

    mnt.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
