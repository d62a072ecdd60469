"""Live Fourier progress measures (Nanda et al. 2023) during training.

Every ``every_n_epochs`` epochs (and after the last one), on rank zero only, ``ProgressMeasures``
runs ``project.interp.fourier.progress_measures`` on the model: one no-grad forward over the p^2
grid plus a few small Fourier transforms. It logs the numbers as ``progress/<name>`` to every
active logger and appends one JSON line per measurement to ``<run_dir>/progress.jsonl``, so the
measures exist with ``logger=none`` too. A record::

    {"epoch": 100, "step": 100, "time": 1718000000.0, "key_freqs": [14, 35], "train_loss": ...,
     "val_acc": ..., "restricted_loss": ..., "excluded_loss": ..., "embed_gini": ..., ...}

``epoch`` counts completed epochs (the same numbering as checkpoint snapshots). Train/val loss and
accuracy in the record are measured after the epoch's last optimiser step, in eval mode.
Which key frequencies the key-dependent measures (restricted/excluded loss and accuracy, key
fractions) use is set by ``key_freqs_rule``, and every record says which rule gave its set
(``key_freqs_rule``) next to the current model's own set (``key_freqs_found``):

- ``stable`` (default): the union of every set found so far, until the found set has been the
  same non-empty set for ``stable_after`` measurements in a row; from then on that set, fixed for
  the rest of the run. The curves stop jumping once the circuit's frequencies have settled.
- ``union``: the union of every set found so far (grows, never shrinks).
- ``current``: the current model's set at each measurement (jumps as the set changes).
- ``key_freqs=[...]`` fixes the set from the start (rule ``fixed``).

The paper uses the final model's set throughout; ``project.runs.report`` recomputes the measures
that way on the checkpoint snapshots.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from project.interp.fourier import progress_measures

log = logging.getLogger(__name__)

PREFIX = "progress/"
KEY_RULES = ("stable", "union", "current")


class ProgressMeasures(Callback):
    """Compute and record Fourier progress measures every ``every_n_epochs`` epochs.

    Args:
        every_n_epochs: cadence in completed epochs (>= 1); 0 disables the callback.
        filename: JSONL file; relative paths are under the trainer's ``default_root_dir`` (the
            run dir when started through ``project.train.run``).
        key_freqs: fixed key frequencies, or None to find them from the model (see the rule).
        key_freqs_rule: ``stable`` | ``union`` | ``current`` (module docstring).
        stable_after: measurements in a row with the same found set before ``stable`` fixes it.
        threshold: neuron variance share for a neuron to join a frequency cluster (paper: 0.85).
        at_start: also measure the initial model (epoch 0).
    """

    def __init__(
        self,
        every_n_epochs: int = 50,
        filename: str = "progress.jsonl",
        key_freqs: list[int] | None = None,
        threshold: float = 0.85,
        at_start: bool = True,
        key_freqs_rule: str = "stable",
        stable_after: int = 3,
    ) -> None:
        if not isinstance(every_n_epochs, int) or isinstance(every_n_epochs, bool):
            raise ValueError(
                f"every_n_epochs must be an integer >= 0 (0 = off), got {every_n_epochs!r}"
            )
        if every_n_epochs < 0:
            raise ValueError(
                f"every_n_epochs must be an integer >= 0 (0 = off), got {every_n_epochs!r}"
            )
        if not 0.0 < float(threshold) <= 1.0:
            raise ValueError(f"threshold must be a number in (0, 1], got {threshold!r}")
        if key_freqs_rule not in KEY_RULES:
            raise ValueError(
                f"key_freqs_rule={key_freqs_rule!r} is invalid: allowed {', '.join(KEY_RULES)}"
            )
        if isinstance(stable_after, bool) or not isinstance(stable_after, int) or stable_after < 1:
            raise ValueError(f"stable_after={stable_after!r} is invalid: allowed an integer >= 1")
        self.key_freqs_rule = key_freqs_rule
        self.stable_after = stable_after
        self._union: set[int] = set()
        self._streak: tuple[list[int], int] = ([], 0)  # last found set, times in a row
        self._fixed: list[int] | None = None
        self._fixed_at: int | None = None
        self._rule_used = ""
        self.every_n_epochs = every_n_epochs
        self.filename = filename
        self.key_freqs = [int(k) for k in key_freqs] if key_freqs is not None else None
        self.threshold = float(threshold)
        self.at_start = at_start
        self.seconds = 0.0  # total time spent measuring in this process
        self.calls = 0
        self._warned = False
        self._last_epoch = -1

    def check_task(self, datamodule: Any) -> None:
        """Before training (``project.train.run`` calls it): fixed ``key_freqs`` must be
        frequencies of the task's modulus, 1 .. p // 2."""
        modulus = getattr(datamodule, "modulus", None)
        if self.key_freqs is None or not isinstance(modulus, int):
            return
        bad = [k for k in self.key_freqs if not 1 <= k <= modulus // 2]
        if bad:
            raise ValueError(
                f"key_freqs={self.key_freqs} is invalid: allowed frequencies in 1..{modulus // 2} "
                f"(modulus {modulus}); out of range: {bad}"
            )

    def path(self, trainer: L.Trainer) -> Path:
        path = Path(self.filename)
        return path if path.is_absolute() else Path(trainer.default_root_dir) / path

    def _data(self, trainer: L.Trainer) -> dict[str, Any] | None:
        dm = getattr(trainer, "datamodule", None)
        needed = ("modulus", "operation", "tokens", "answers", "train_idx", "val_idx")
        if dm is None or not all(hasattr(dm, key) for key in needed):
            if not self._warned:
                log.warning("ProgressMeasures: no modular-arithmetic datamodule; measures skipped")
                self._warned = True
            return None
        return {key: getattr(dm, key) for key in needed}

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        if not trainer.is_global_zero or epoch == self._last_epoch:
            return
        data = self._data(trainer)
        if data is None:
            return
        start = time.perf_counter()
        model = getattr(pl_module, "net", pl_module)
        if not hasattr(model, "run_with_hooks"):  # e.g. model=onehot_mlp: no W_E, no hooks
            if not self._warned:
                log.warning("ProgressMeasures: the net has no TransformerLens hooks; skipped")
                self._warned = True
            return
        device = next(model.parameters()).device
        record: dict[str, Any] = {"epoch": epoch, "step": trainer.global_step, "time": time.time()}
        record.update(
            progress_measures(
                model,
                data["modulus"],
                data["tokens"].to(device),
                data["answers"].to(device),
                data["train_idx"].to(device),
                data["val_idx"].to(device),
                operation=data["operation"],
                key_freqs=lambda found: self.choose_keys(found, epoch),
                threshold=self.threshold,
            )
        )
        record["key_freqs_rule"] = self._rule_used
        elapsed = time.perf_counter() - start
        record["seconds"] = elapsed
        self._write(trainer, record)
        scalars = {
            PREFIX + k: float(v)
            for k, v in record.items()
            if k not in ("epoch", "step", "time") and isinstance(v, int | float)
        }
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=trainer.global_step)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self._last_epoch = epoch

    def choose_keys(self, found: list[int], epoch: int) -> list[int]:
        """The key frequencies this measurement uses, by the rule; sets ``_rule_used``."""
        found = sorted(int(k) for k in found)
        if self.key_freqs is not None:
            self._rule_used = "fixed (key_freqs given)"
            return self.key_freqs
        self._union |= set(found)
        last, count = self._streak
        self._streak = (found, count + 1 if found == last else 1)
        if self.key_freqs_rule == "current":
            self._rule_used = "current (the model's own set at this epoch)"
            return found
        if self.key_freqs_rule == "stable":
            if self._fixed is None and found and self._streak[1] >= self.stable_after:
                self._fixed, self._fixed_at = found, epoch
            if self._fixed is not None:
                self._rule_used = (
                    f"stable: fixed at epoch {self._fixed_at} "
                    f"(same set for {self.stable_after} measurements)"
                )
                return self._fixed
            self._rule_used = "stable: union of the sets found so far (not yet stable)"
            return sorted(self._union)
        self._rule_used = "union of the sets found so far"
        return sorted(self._union)

    def _write(self, trainer: L.Trainer, record: dict[str, Any]) -> None:
        path = self.path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()
        }
        with path.open("a") as f:
            f.write(json.dumps(clean) + "\n")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """The measures read the MLP's neurons: an attention-only net is a config error."""
        net = getattr(pl_module, "net", None)
        blocks = getattr(net, "blocks", None)
        if (
            self.every_n_epochs
            and blocks
            and not all(isinstance(getattr(b, "mlp", None), torch.nn.Module) for b in blocks)
        ):
            from project.lit_module import ConfigValueError

            raise ConfigValueError(
                f"callbacks.progress_measures.every_n_epochs={self.every_n_epochs} is invalid "
                "with an attention-only net (model.net.d_mlp=0): the Fourier progress measures "
                "read the MLP neurons; allowed: 0, or model.net.d_mlp >= 1"
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and self.at_start and trainer.current_epoch == 0:
            self.measure(trainer, pl_module, 0)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.every_n_epochs:
            return
        done = trainer.current_epoch + 1
        if done % self.every_n_epochs == 0 or done >= (trainer.max_epochs or 0):
            self.measure(trainer, pl_module, done)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs:  # runs stopped early (e.g. EarlyStopping) still end with a record
            self.measure(trainer, pl_module, trainer.current_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {
            "every_n_epochs": self.every_n_epochs,
            "union": sorted(self._union),
            "streak": [list(self._streak[0]), self._streak[1]],
            "fixed": self._fixed,
            "fixed_at": self._fixed_at,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._union = {int(k) for k in state_dict.get("union", [])}
        found, count = state_dict.get("streak", [[], 0])
        self._streak = ([int(k) for k in found], int(count))
        fixed = state_dict.get("fixed")
        self._fixed = [int(k) for k in fixed] if fixed is not None else None
        self._fixed_at = state_dict.get("fixed_at")
