"""``run.log`` as the run goes (flushed per record: a ``kill -9`` leaves how far it got)::

    epoch 20/25000 (step 20): train/acc=0.0413 train/loss=4.6921 val/acc=0.0098 val/loss=4.7348 lr=0.001

every ``every_n_epochs`` completed epochs (default: the validation cadence) and after the last.
Epoch ``N``'s line is written when ``N + 1`` starts: its train metrics are logged after the
callbacks' ``on_train_epoch_end``.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

from lightning.pytorch.callbacks import Callback

from project.callbacks.checkpoints import require_int

log = logging.getLogger("project.train")


def epoch_line(trainer: Any, epoch: int | None = None) -> str:
    """``epoch N/M (step S): k=v ...`` from the trainer's current metrics (completed epochs)."""
    done = trainer.current_epoch if epoch is None else epoch
    total = f"/{trainer.max_epochs}" if trainer.max_epochs not in (None, -1) else ""
    shown = []
    for key, value in sorted(trainer.callback_metrics.items()):
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        shown.append(f"{key}={number:.4g}" if math.isfinite(number) else f"{key}={number}")
    return f"epoch {done}{total} (step {trainer.global_step}): " + " ".join(shown)


class EpochLog(Callback):
    """One ``run.log`` line per ``every_n_epochs`` completed epochs and at the end (0 = off)."""

    def __init__(self, every_n_epochs: int | None = None) -> None:
        if every_n_epochs is not None:
            note = " (0 = off), or null for the validation cadence"
            require_int("every_n_epochs", every_n_epochs, 0, note)
        self.every_n_epochs = every_n_epochs
        self._cadence = every_n_epochs or 0
        self._logged = -1

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self.every_n_epochs is None:
            self._cadence = int(trainer.check_val_every_n_epoch or 1)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._logged = trainer.current_epoch  # a resumed run: its epochs so far were logged before

    def _emit(self, trainer: Any, final: bool) -> None:
        done = trainer.current_epoch
        if not self._cadence or not trainer.is_global_zero or done <= 0 or done == self._logged:
            return
        if final or done % self._cadence == 0:
            self._logged = done
            log.info(epoch_line(trainer, done))

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._emit(trainer, final=False)  # the epoch that just ended

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._emit(trainer, final=True)


_ORIGINAL_SHOWWARNING = warnings.showwarning


def capture_warnings() -> None:
    """Every warning shown from now on also goes to ``run.log`` (the console still shows it)."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        _ORIGINAL_SHOWWARNING(message, category, filename, lineno, file, line)
        logging.getLogger("py.warnings").warning(
            "%s:%s: %s: %s", filename, lineno, category.__name__, message
        )

    warnings.showwarning = show
