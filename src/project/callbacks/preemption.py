"""Preemption and Ctrl-C: on SIGTERM (or SIGINT), finish the epoch, save ``last.ckpt``, stop,
exit 143 (130 for Ctrl-C, status ``interrupted``). A second Ctrl-C aborts at once.

Lightning's own SIGTERM handling stops after the current batch with exit 0 and no checkpoint (not
resumable, and a scheduler sees success); this handler only sets a flag, OR-reduced over DDP
ranks at each epoch end. Resume with ``run.ckpt_path=<run_dir>/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

from project.callbacks.checkpoints import LastCheckpoint, check_finite_weights

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: schedulers requeue it
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class Preempted(SystemExit):
    """Raised if the trainer could not be stopped at the epoch end (e.g. ``min_epochs`` not met)."""

    def __init__(self) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)


class PreemptionCheckpoint(Checkpoint):
    """Save ``<dirpath>/last.ckpt`` (default: ``LastCheckpoint``'s) and stop at the first epoch
    end after a SIGTERM; ``preempted`` says whether it did."""

    def __init__(
        self, dirpath: str | None = None, signum: int = signal.SIGTERM, ctrl_c: bool = True
    ) -> None:
        self.dirpath = Path(dirpath) if dirpath else None
        self.signum = signum
        self.signums = [signum, *([signal.SIGINT] if ctrl_c and signum != signal.SIGINT else [])]
        self.received = False
        self.received_signum: int | None = None
        self.preempted = False
        self.saved_path: Path | None = None
        self._previous: dict[int, Any] = {}
        self._trainer: L.Trainer | None = None

    @property
    def interrupted(self) -> bool:
        """Stopped by Ctrl-C (SIGINT) rather than a scheduler's SIGTERM."""
        return self.preempted and self.received_signum == signal.SIGINT

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.received and signum == signal.SIGINT:  # a second Ctrl-C: abort now
            self._restore()
            raise KeyboardInterrupt
        if not self.received and self._trainer is not None:
            launcher = self._trainer.strategy.launcher
            if launcher is not None:  # forward to the DDP child processes we started
                launcher.kill(signum)
        self.received, self.received_signum = True, signum
        again = " (Ctrl-C again aborts now, unsaved)" if signum == signal.SIGINT else ""
        print(
            f"received {signal.Signals(signum).name}: saving last.ckpt at the end of this epoch, "
            f"then stopping{again}",
            file=sys.stderr,
            flush=True,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import threading

        self._trainer = trainer
        if threading.current_thread() is threading.main_thread():
            for signum in self.signums:
                self._previous[signum] = signal.signal(signum, self._handler)

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def _last_path(self, trainer: L.Trainer) -> Path:
        if self.dirpath is not None:
            return self.dirpath / "last.ckpt"
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, LastCheckpoint):
                return cb.last_path
        return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.preempted:  # should_stop was overridden (min_epochs): stop anyway, state is saved
            raise Preempted()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stop = self.received
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop or self.preempted:
            return
        path = self._last_path(trainer)
        runs = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, LastCheckpoint)]
        if runs and runs[0].last_path == path:
            runs[0].save_now(trainer)  # no second write if it saved this step already
        else:
            check_finite_weights(trainer, pl_module, path)
            trainer.save_checkpoint(path, weights_only=False)
        self.saved_path, self.preempted = path, True
        trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def state_dict(self) -> dict[str, Any]:
        return {}


def preempted_exit(trainer: Any) -> int | None:
    """The exit code for a run a :class:`PreemptionCheckpoint` stopped, else None."""
    for cb in getattr(trainer, "callbacks", []):
        if isinstance(cb, PreemptionCheckpoint) and cb.preempted:
            what = "interrupted" if cb.interrupted else "preempted"
            line = (
                f"{what}: stopped after {trainer.current_epoch} epochs and saved "
                f"{cb.saved_path}; resume with: python -m project.train.run "
                f"run.ckpt_path={cb.saved_path}"
            )
            print(line, file=sys.stderr)
            logging.getLogger("project.train").warning(line)  # run.log
            return INTERRUPTED_EXIT_CODE if cb.interrupted else PREEMPTED_EXIT_CODE
    return None
