"""``steps_per_batch=K`` (``LitCausalLM``): the checks a run with K > 1 needs at its start."""

from __future__ import annotations

from typing import Any


def check_block_cadences(trainer: Any, k: int) -> None:
    """``steps_per_batch=k`` needs one batch an epoch and every epoch cadence a multiple of k;
    raises ``ValueError`` naming the first offender."""
    what = f"steps_per_batch={k}"
    if trainer.num_training_batches != 1:
        raise ValueError(
            f"{what} is invalid here: allowed with full-batch training only (data.batch_size=null;"
            f" this run has {trainer.num_training_batches} batches an epoch)"
        )
    cadences = [("trainer.check_val_every_n_epoch", trainer.check_val_every_n_epoch)]
    for cb in trainer.callbacks:
        for attr in ("every_n_epochs", "_every_n_epochs", "dense_every_n_epochs"):
            cadences.append((f"{type(cb).__name__}.{attr.lstrip('_')}", getattr(cb, attr, 0)))
        if getattr(cb, "log_spaced", 0):
            raise ValueError(
                f"{what} is invalid with {type(cb).__name__}.log_spaced={cb.log_spaced}: "
                "log-spaced snapshots need every epoch's end (use steps_per_batch=1)"
            )
    for name, every in cadences:
        if isinstance(every, int) and not isinstance(every, bool) and every > 0 and every % k:
            raise ValueError(
                f"{what} is invalid with {name}={every}: allowed when every epoch cadence is a "
                f"multiple of {k} (epoch hooks run once per block of {k} epochs)"
            )
        if name == "trainer.check_val_every_n_epoch" and every is None:
            raise ValueError(f"{what} is invalid with {name}=null: validate every N epochs")
