"""Run checkpoints: ``last.ckpt`` (for resume) and periodic snapshots (for analysis over training).

Snapshots are named by completed epochs, ``epoch=000400.ckpt`` (``epoch=000000.ckpt`` is the
initial model). Every write goes through ``AtomicCheckpointIO``: temp file, fsync, ``os.replace``,
so a crash mid-write never leaves a truncated ``last.ckpt``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic on local filesystems."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def snapshot_name(epoch: int) -> str:
    return f"epoch={epoch:06d}.ckpt"


class RunCheckpoints(Checkpoint):
    """Save ``last.ckpt`` every ``last_every_n_epochs`` and at the end of fit, and a snapshot every
    ``snapshot_every_n_epochs`` (0 disables snapshots)."""

    def __init__(
        self,
        dirpath: str,
        last_every_n_epochs: int = 50,
        snapshot_every_n_epochs: int = 500,
        save_initial: bool = True,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.last_every_n_epochs = max(1, int(last_every_n_epochs))
        self.snapshot_every_n_epochs = int(snapshot_every_n_epochs)
        self.save_initial = save_initial
        self._last_saved_step = -1

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_initial and self.snapshot_every_n_epochs > 0 and trainer.current_epoch == 0:
            trainer.save_checkpoint(self.dirpath / snapshot_name(0), weights_only=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.current_epoch + 1  # epochs completed
        if self.snapshot_every_n_epochs > 0 and done % self.snapshot_every_n_epochs == 0:
            trainer.save_checkpoint(self.dirpath / snapshot_name(done), weights_only=False)
        if done % self.last_every_n_epochs == 0 or done >= (trainer.max_epochs or 0):
            self.save_last(trainer)

    def save_last(self, trainer: L.Trainer) -> None:
        if trainer.global_step == self._last_saved_step and self.last_path.exists():
            return
        trainer.save_checkpoint(self.last_path, weights_only=False)
        self._last_saved_step = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save_last(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"dirpath": str(self.dirpath)}
