"""Validate the final weights, whatever ``max_epochs`` and ``check_val_every_n_epoch`` are.

Lightning validates after epoch ``e`` only when ``e % check_val_every_n_epoch == 0``: a run of
``max_epochs=25`` with validation every 10 epochs would end without validating its last 5 epochs,
and a 1-epoch sanity run would log no ``val/*`` at all. This callback turns validation on for the
last epoch, so the summary's ``final`` line always describes the final model.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback


class FinalValidation(Callback):
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if last and trainer.check_val_every_n_epoch not in (None, 1):
            trainer.check_val_every_n_epoch = 1
