"""Lightning's ``RichProgressBar``, whose epoch line shows one epoch's numbers.

Lightning refreshes the bar's metrics in its ``on_train_epoch_end``, which runs before the
module's own (where ``train/loss`` and ``train/acc`` of the epoch are logged) but after
validation: the line that stays on screen showed the previous epoch's train numbers next to this
epoch's val numbers. This bar refreshes them once more when the next epoch starts (before a
``leave``-ing bar is closed) and when training ends, so train and val on a line are the same
epoch's, as in ``run.log`` and the summary.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import RichProgressBar as _LightningRichProgressBar


class RichProgressBar(_LightningRichProgressBar):
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch > 0:  # the epoch just ended: its train metrics are logged now
            self._update_metrics(trainer, pl_module)
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._update_metrics(trainer, pl_module)
        self.refresh()
        super().on_train_end(trainer, pl_module)
