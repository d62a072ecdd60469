"""Numerical faults and unsafe checkpoints.

* An absurd learning rate (still inside validation's range) diverges: the run stops with one clear
  line naming the epoch, exits 3, and ``last.ckpt`` keeps the last good (finite) state.
* A crafted checkpoint whose pickle payload would run code is refused by ``load_checkpoint``, by
  the trainer's checkpoint IO and by resume (``run.ckpt_path``); the payload never runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from project.callbacks.checkpoints import AtomicCheckpointIO
from project.train.composition import DIVERGED_EXIT_CODE
from project.utils.helpers import CheckpointError, load_checkpoint, read_checkpoint
from tests.conftest import SMALL, run_cli, run_dirs, train_in_process


def test_nan_stops_run_names_epoch_keeps_last_good_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overrides = [*SMALL, "model.optimizer.lr=10", "trainer.max_epochs=200", "logger=csv"]
    with pytest.raises(SystemExit) as exc:
        train_in_process(tmp_path, *overrides, "callbacks.last_checkpoint.every_n_epochs=1")
    assert exc.value.code == DIVERGED_EXIT_CODE
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, lines
    match = re.search(r"non-finite (\S+) \((nan|inf|-inf)\) in epoch (\d+)", lines[0])
    assert match, lines[0]
    bad_epoch = int(match.group(3))  # 1-based: bad_epoch - 1 epochs completed
    assert "last good checkpoint kept" in lines[0]

    (run_dir,) = run_dirs(tmp_path / "outputs")
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == bad_epoch - 2  # Lightning's 0-based index of the last good epoch
    assert f"after {bad_epoch - 1} epochs" in lines[0]  # saved every epoch
    for name, value in ckpt["state_dict"].items():
        assert torch.isfinite(value).all(), name
    model, hparams = load_checkpoint(last)  # and it is a usable model
    tokens = torch.tensor([[1, 2, 23]])
    assert torch.isfinite(model(tokens)).all()
    assert hparams["optimizer"]["lr"] == 10
    log = (run_dir / "run.log").read_text()  # the epochs up to the fault, then the fault
    assert f"epoch {bad_epoch - 1}/200 " in log.splitlines()[-2]  # the last epoch completed
    assert f"in epoch {bad_epoch};" in log.splitlines()[-1]


class _Payload:
    """Pickles to ``os.system('touch <marker>')``: would run on an unsafe ``torch.load``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil_ckpt(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "evil.ckpt"
    torch.save(
        {
            "state_dict": {"net.embed.W_E": torch.zeros(24, 128)},
            "hyper_parameters": {"d_model": 128},
            "payload": _Payload(marker),
        },
        path,
    )
    return path, marker


def test_malicious_checkpoint_refused_by_loaders(evil_ckpt: tuple[Path, Path]) -> None:
    path, marker = evil_ckpt
    for load in (load_checkpoint, read_checkpoint, AtomicCheckpointIO().load_checkpoint):
        with pytest.raises(CheckpointError, match="refused: .*pickle payload.*posix.system"):
            load(path)
    assert not marker.exists(), "the payload ran"


def test_malicious_checkpoint_refused_by_resume(
    evil_ckpt: tuple[Path, Path], tmp_path: Path
) -> None:
    path, marker = evil_ckpt
    # where resume expects it: <run_dir>/checkpoints/last.ckpt of an existing run dir
    run_dir = tmp_path / "outputs" / "2026-01-01" / "00-00-00"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(path.read_bytes())
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = run_cli(f"run.ckpt_path={last}", *SMALL, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: run.ckpt_path='{last}' is invalid")
    assert "refused" in line and "pickle payload" in line
    assert not marker.exists(), "the payload ran"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
