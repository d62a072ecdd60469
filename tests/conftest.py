"""Shared test helpers: run the real CLI (subprocess) or the real entrypoint in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# small and fast: p=23, half the pairs for training, fast_grok optimiser
SMALL = [
    "data.modulus=23",
    "data.frac_train=0.5",
    "model.optimizer.lr=1e-2",
    "trainer=cpu",
    "trainer.check_val_every_n_epoch=1",
]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RCLONE_DEST"))}
    env.update({"PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"})
    env.update(extra)
    return env


def run_cli(
    *overrides: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m project.train.run <overrides>`` in ``cwd``; returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "project.train.run", *overrides],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_dirs(root: Path) -> list[Path]:
    """Run dirs (``<root>/<date>/<time>...``) under an output root, oldest first."""
    return sorted(p for p in root.glob("*/*") if p.is_dir())


def main_in_process(argv: list[str]) -> None:
    """``python -m project.train.run <argv>`` in this process (``SystemExit`` propagates)."""
    from project.train import run as run_module
    from project.train.rundir import _CLAIMED

    _CLAIMED.clear()
    saved = sys.argv
    sys.argv = ["project.train.run", *argv]
    try:
        run_module.main()
    finally:
        sys.argv = saved
        _CLAIMED.clear()


def train_in_process(tmp_path: Path, *overrides: str) -> Path:
    """Run the real entrypoint in this process; returns the run dir it created."""
    from project.train import run as run_module
    from project.train.rundir import _CLAIMED

    out = tmp_path / "outputs"
    before = set(run_dirs(out))
    _CLAIMED.clear()
    argv = sys.argv
    sys.argv = ["project.train.run", f"run.output_root={out}", *overrides]
    try:
        run_module.main()
    finally:
        sys.argv = argv
        _CLAIMED.clear()
    new = [p for p in run_dirs(out) if p not in before]
    if not new:  # resumed into an existing run dir: the one Hydra wrote to last
        return max(run_dirs(out), key=lambda p: (p / ".hydra" / "overrides.yaml").stat().st_mtime)
    assert len(new) == 1, f"expected one new run dir, got {new}"
    return new[0]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
