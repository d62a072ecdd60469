"""``LitCausalLM``'s checks on its rare paths: the cadences ``steps_per_batch=K > 1`` needs, and
a constructor's error (the optimiser's) as the one line a config error is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def config_line(node_key: str, spec: Any, exc: BaseException) -> str:
    """``model.optimizer.lr=-1 is invalid: allowed what AdamW accepts (<its message>)``."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    values = {k: v for k, v in (spec if isinstance(spec, Mapping) else {}).items() if k[0] != "_"}
    named = [k for k in values if k in message] or [
        k for k, v in values.items() if isinstance(v, int | float) and str(v) in message
    ]
    name = str(spec.get("_target_", "it")) if isinstance(spec, Mapping) else "it"
    short = name.rpartition(".")[2]
    if named:
        key = named[0]
        return (
            f"{node_key}.{key}={values[key]!r} is invalid: allowed what {short} accepts ({message})"
        )
    return f"{node_key}: {short}: {message}"


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
