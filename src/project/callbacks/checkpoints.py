"""Run checkpoints: ``last.ckpt`` (for resume) and snapshots ``epoch_000400.ckpt`` (analysis).

Writes are atomic (``AtomicCheckpointIO``: a ``kill -9`` mid-write keeps the previous file), reads
are ``weights_only=True``, contents are plain types (RNG states included, for exact resume), and
nothing is written from non-finite weights (a diverged run keeps its last good ``last.ckpt``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from project.lit_module import NonFiniteLossError


def require_int(name: str, value: Any, minimum: int, note: str = "") -> None:
    """A callback argument that must be an integer >= ``minimum``: else a one-line ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid: allowed an integer >= {minimum}{note}")


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets you open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, ...); the previous file is untouched."""


def _write_failure(path: Path, exc: BaseException) -> str:
    """One line for a failed write (torch reports a full disk as "file write failed", no errno)."""
    short_write = "write failed" in str(exc) or "unexpected pos" in str(exc)  # torch's zip writer
    no_space = getattr(exc, "errno", None) == errno.ENOSPC or short_write
    with contextlib.suppress(OSError):
        no_space = no_space or shutil.disk_usage(path.parent).free < 1 << 20
    kept = f"the previous {path.name} is intact" if path.exists() else "earlier files are intact"
    if no_space:
        return f"no space left on {path.parent} while writing {path.name}; {kept}"
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"could not write {path} ({reason}); {kept}"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves: temp file, fsync, ``os.replace``, with a content hash (``with_integrity``); a failed
    write raises ``CheckpointWriteError``. Loads: ``read_checkpoint`` (safe, hash verified)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        from project.checkpoint import with_integrity

        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as exc:
            raise CheckpointWriteError(_write_failure(path, exc)) from None
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(with_integrity(checkpoint), f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; checkpoints are ordinary readable files
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:
            line = _write_failure(path, exc)  # while the partial file still takes its space
            Path(tmp).unlink(missing_ok=True)
            raise CheckpointWriteError(line) from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        from project.checkpoint import read_checkpoint

        return read_checkpoint(path)


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU + CUDA) RNG states as plain types (``weights_only``-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`."""
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in states:
        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        with contextlib.suppress(Exception):  # fewer GPUs than when saved
            torch.cuda.set_rng_state_all(states["cuda"])


def check_finite_weights(trainer: L.Trainer, pl_module: L.LightningModule, path: Path) -> None:
    """Raise ``NonFiniteLossError`` on a non-finite parameter or logged ``*loss`` (huge finite
    weights can make val/loss NaN an epoch before train/loss) instead of writing ``path``."""
    # the epoch being run, 1-based
    progress = trainer.fit_loop.epoch_progress.current
    epoch = int(getattr(progress, "processed", trainer.current_epoch + 1))
    params = [p.detach() for p in pl_module.parameters()]
    if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
        raise NonFiniteLossError(
            f"non-finite weights in epoch {epoch} (an optimizer step diverged); "
            f"not writing {path.name}"
        )
    for key, value in trainer.callback_metrics.items():
        if key.endswith("loss") and not bool(torch.isfinite(torch.as_tensor(value)).all()):
            raise NonFiniteLossError(
                f"non-finite {key} ({float(value)}) in epoch {epoch}; not writing {path.name}"
            )


class SnapshotCheckpoint(ModelCheckpoint):
    """A snapshot every ``every_n_epochs`` epochs (kept all), named by *completed* epochs
    (``epoch_000500.ckpt``; ``save_initial``: ``epoch_000000.ckpt``), saved at train epoch end,
    never from non-finite weights. Denser where training moves (off by default):

    * ``log_spaced=n``: also after epochs ``round(10 ** (i / n))`` (n per decade);
    * ``dense_every_n_epochs=d``: also every ``d`` epochs while ``dense_monitor`` has moved by
      ``dense_min_change`` in log (absolute when a value is <= 0) since the last snapshot.
    """

    def __init__(
        self,
        dirpath: str,
        every_n_epochs: int = 500,
        filename: str = "epoch_{epoch:06d}",
        save_top_k: int = -1,
        save_initial: bool = True,
        log_spaced: int = 0,
        dense_every_n_epochs: int = 0,
        dense_monitor: str = "val/loss",
        dense_min_change: float = 0.1,
        **kwargs: Any,
    ) -> None:
        require_int("log_spaced", log_spaced, 0, " (0 = off)")
        require_int("dense_every_n_epochs", dense_every_n_epochs, 0, " (0 = off)")
        require_int("every_n_epochs", every_n_epochs, 0, " (0 = off)")
        if not float(dense_min_change) > 0:
            raise ValueError(
                f"dense_min_change={dense_min_change!r} is invalid: allowed a number > 0"
            )
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            every_n_epochs=every_n_epochs,
            save_top_k=save_top_k if every_n_epochs else 0,
            save_on_train_epoch_end=True,
            auto_insert_metric_name=False,
            enable_version_counter=False,
            **kwargs,
        )
        self.save_initial = save_initial and every_n_epochs > 0
        self.log_spaced = log_spaced if every_n_epochs else 0
        self.dense_every_n_epochs = dense_every_n_epochs if every_n_epochs else 0
        self.dense_monitor = dense_monitor
        self.dense_min_change = float(dense_min_change)
        self._dense_ref: float | None = None  # monitored value at the last snapshot

    def _ModelCheckpoint__warn_if_dir_not_empty(self, dirpath: Any) -> None:
        """No "directory exists and is not empty" warning: a resume writes there by design."""

    def is_log_epoch(self, epoch: int) -> bool:
        """Whether ``epoch`` (completed) is one of the ``log_spaced`` epochs."""
        if not self.log_spaced or epoch < 1:
            return False
        i = round(self.log_spaced * np.log10(epoch))
        return any(round(10 ** (j / self.log_spaced)) == epoch for j in (i - 1, i, i + 1))

    def _monitored(self, trainer: L.Trainer) -> float | None:
        raw = trainer.callback_metrics.get(self.dense_monitor)
        if raw is None:
            return None
        value = float(raw)
        return value if np.isfinite(value) else None

    def _moved(self, value: float | None) -> bool:
        if value is None or self._dense_ref is None:
            return False
        if value > 0 and self._dense_ref > 0:
            return abs(np.log(value) - np.log(self._dense_ref)) >= self.dense_min_change
        return abs(value - self._dense_ref) >= self.dense_min_change

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # under DDP on every epoch: reading callback_metrics is a collective (skipping it hung
        # DDP); a single process skips non-save epochs (a deep copy of the metrics for nothing)
        every = self._every_n_epochs
        due = every >= 1 and (trainer.current_epoch + 1) % every == 0
        if due or self.save_last or trainer.world_size > 1:
            super().on_train_epoch_end(trainer, pl_module)
        if not (self.log_spaced or self.dense_every_n_epochs) or not trainer.is_global_zero:
            return
        if self._last_global_step_saved == trainer.global_step:
            return  # already written this epoch
        done = trainer.current_epoch + 1
        value = self._monitored(trainer) if self.dense_every_n_epochs else None
        if self._dense_ref is None:
            self._dense_ref = value  # the first value seen is the reference
        dense = bool(self.dense_every_n_epochs) and done % self.dense_every_n_epochs == 0
        if self.is_log_epoch(done) or (dense and self._moved(value)):
            name = self.format_checkpoint_name(
                {"epoch": torch.tensor(trainer.current_epoch), "step": trainer.global_step}
            )
            self._save_checkpoint(trainer, name)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "dense_ref": self._dense_ref}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._dense_ref = state_dict.get("dense_ref", self._dense_ref)
        super().load_state_dict(state_dict)

    def format_checkpoint_name(self, metrics: dict[str, Any], *args: Any, **kwargs: Any) -> str:
        if "epoch" in metrics:  # Lightning passes the 0-based index of the epoch just finished
            metrics = {**metrics, "epoch": int(metrics["epoch"]) + 1}
        return super().format_checkpoint_name(metrics, *args, **kwargs)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.is_global_zero and self.dirpath and Path(self.dirpath).is_dir():
            for stale in Path(self.dirpath).glob(".*.ckpt.*.tmp"):  # temp files of a killed write
                stale.unlink(missing_ok=True)
        if self.save_initial and trainer.current_epoch == 0 and trainer.global_step == 0:
            initial = self.format_checkpoint_name({"epoch": torch.tensor(-1), "step": 0})
            self._save_checkpoint(trainer, initial)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        check_finite_weights(trainer, trainer.lightning_module, Path(filepath))
        super()._save_checkpoint(trainer, filepath)
        value = self._monitored(trainer) if self.dense_every_n_epochs else None
        if value is not None:
            self._dense_ref = value


class LastCheckpoint(SnapshotCheckpoint):
    """``last.ckpt`` every ``every_n_epochs`` epochs, at the first epoch end ``every_n_minutes``
    (0 or null: off) after the last write, and at the end of fit. Also saves and restores the RNG
    states in every checkpoint, so a resumed run continues bit for bit.
    """

    def __init__(
        self,
        dirpath: str,
        every_n_epochs: int = 50,
        every_n_minutes: float | None = 1.0,
        **kwargs: Any,
    ) -> None:
        require_int("every_n_epochs", every_n_epochs, 1)
        minutes = every_n_minutes
        if minutes is not None and (
            isinstance(minutes, bool)
            or not isinstance(minutes, int | float)
            or not 0 <= minutes < float("inf")
        ):
            raise ValueError(
                f"every_n_minutes={every_n_minutes!r} is invalid: allowed a number >= 0 "
                "(0 or null = off)"
            )
        super().__init__(
            dirpath, every_n_epochs, filename="last", save_top_k=1, save_initial=False, **kwargs
        )
        self.every_n_seconds = 60.0 * float(minutes or 0.0)
        self._last_write_time = time.monotonic()

    def _time_is_up(self, trainer: L.Trainer) -> bool:
        """Whether ``every_n_minutes`` have passed since the last write (rank zero decides)."""
        if not self.every_n_seconds:
            return False
        due = time.monotonic() - self._last_write_time >= self.every_n_seconds
        if trainer.world_size > 1:
            due = bool(trainer.strategy.broadcast(due, src=0))
        return due

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_write_time = time.monotonic()

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._last_write_time = time.monotonic()

    @property
    def last_path(self) -> Path:
        return Path(str(self.dirpath)) / "last.ckpt"

    def save_now(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` for the current step (once per step)."""
        if self._last_global_step_saved != trainer.global_step or not self.last_path.exists():
            self._save_checkpoint(trainer, str(self.last_path))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        final = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if final or self._time_is_up(trainer):
            self.save_now(trainer)  # the final epoch, saved like any other (epoch field alike)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save_now(trainer)  # a run stopped early (EarlyStopping, should_stop)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])
