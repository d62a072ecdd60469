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
Key frequencies are found from the model at each measurement unless ``key_freqs`` fixes them
(the paper uses the final model's; ``project.runs.report`` recomputes the measures that way).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from project.interp.fourier import progress_measures

log = logging.getLogger(__name__)

PREFIX = "progress/"


class ProgressMeasures(Callback):
    """Compute and record Fourier progress measures every ``every_n_epochs`` epochs.

    Args:
        every_n_epochs: cadence in completed epochs (>= 1); 0 disables the callback.
        filename: JSONL file; relative paths are under the trainer's ``default_root_dir`` (the
            run dir when started through ``project.train.run``).
        key_freqs: fixed key frequencies, or None to find them from the model each time.
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
        self.every_n_epochs = every_n_epochs
        self.filename = filename
        self.key_freqs = [int(k) for k in key_freqs] if key_freqs is not None else None
        self.threshold = float(threshold)
        self.at_start = at_start
        self.seconds = 0.0  # total time spent measuring in this process
        self.calls = 0
        self._warned = False
        self._last_epoch = -1

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
                key_freqs=self.key_freqs,
                threshold=self.threshold,
            )
        )
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

    def _write(self, trainer: L.Trainer, record: dict[str, Any]) -> None:
        path = self.path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()
        }
        with path.open("a") as f:
            f.write(json.dumps(clean) + "\n")

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
        return {"every_n_epochs": self.every_n_epochs}
