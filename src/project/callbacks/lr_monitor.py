"""Lightning's ``LearningRateMonitor`` with one stable metric name: ``lr``.

Lightning names the learning rate after the scheduler config's ``name`` (``lr``, set by
``LitCausalLM``) when there is a scheduler, and ``lr-<OptimizerClass>`` (``lr-AdamW``) when there
is none, so curves of runs with and without a scheduler did not line up. With one optimiser of one
parameter group this monitor always logs ``lr``; several optimisers or groups keep Lightning's
names.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import LearningRateMonitor as _LightningLearningRateMonitor


class LearningRateMonitor(_LightningLearningRateMonitor):
    def _find_names_from_optimizers(  # type: ignore[override]
        self, optimizers: list[Any], seen_optimizers: list[Any], seen_optimizer_types: Any
    ) -> tuple[list[list[str]], list[Any]]:
        first_unseen = not seen_optimizers
        names, found = super()._find_names_from_optimizers(
            optimizers, seen_optimizers, seen_optimizer_types
        )
        if first_unseen and len(optimizers) == 1 and len(names) == 1 and len(names[0]) == 1:
            names = [["lr"]]
        return names, found
