"""Tracks what the end-of-run summary needs: best val acc, epochs of memorisation and grokking.

Everything is kept as tensors on the training device and updated with tensor ops, so tracking adds
no host sync per epoch. Epochs are counted as *completed* epochs (like the snapshot names):
``grok_epoch`` is the first validated epoch with ``val/acc >= threshold``, ``memorise_epoch`` the
first with ``train/acc >= threshold`` (-1 = not reached). The state is saved in checkpoints, so a
resumed run keeps its history.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

_NONE = -1.0


class RunSummary(Callback):
    def __init__(self, threshold: float = 0.99) -> None:
        self.threshold = float(threshold)
        self._state: dict[str, torch.Tensor] = {}
        self._loaded: dict[str, float] = {}

    def _update(self, trainer: Any, key: str, epoch: int) -> None:
        value = trainer.callback_metrics.get(key)
        if not isinstance(value, torch.Tensor):
            return
        value = value.detach().float()
        split = key.split("/")[0]
        best_key, first_key = f"best_{split}_acc", f"{split}_first_epoch"
        if best_key not in self._state:
            init = self._loaded
            self._state[best_key] = value.new_tensor(init.get(best_key, -1.0))
            self._state[f"best_{split}_epoch"] = value.new_tensor(
                init.get(f"best_{split}_epoch", _NONE)
            )
            self._state[first_key] = value.new_tensor(init.get(first_key, _NONE))
        better = value > self._state[best_key]
        self._state[f"best_{split}_epoch"] = torch.where(
            better, value.new_tensor(float(epoch)), self._state[f"best_{split}_epoch"]
        )
        self._state[best_key] = torch.maximum(value, self._state[best_key])
        first = self._state[first_key]
        self._state[first_key] = torch.where(
            (first < 0) & (value >= self.threshold), value.new_tensor(float(epoch)), first
        )

    # val metrics are fresh right after validation
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self._update(trainer, "val/acc", trainer.current_epoch + 1)

    # train metrics of epoch e are logged in the module's on_train_epoch_end: read them next epoch
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch > 0:
            self._update(trainer, "train/acc", trainer.current_epoch)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._update(trainer, "train/acc", trainer.current_epoch)

    def summary(self) -> dict[str, float | int | None]:
        """Plain numbers (one host sync): best accuracies and epochs; None where not reached."""
        values = {**self._loaded, **{k: float(v) for k, v in self._state.items()}}
        out: dict[str, float | int | None] = {"threshold": self.threshold}
        for split, name in (("val", "grok_epoch"), ("train", "memorise_epoch")):
            best = values.get(f"best_{split}_acc", -1.0)
            out[f"best_{split}_acc"] = best if best >= 0 else None
            best_epoch = values.get(f"best_{split}_epoch", _NONE)
            out[f"best_{split}_epoch"] = int(best_epoch) if best_epoch >= 0 else None
            first = values.get(f"{split}_first_epoch", _NONE)
            out[name] = int(first) if first >= 0 else None
        return out

    def state_dict(self) -> dict[str, Any]:
        return {k: float(v) for k, v in self._state.items()} | {"threshold": self.threshold}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = {k: float(v) for k, v in state_dict.items() if k != "threshold"}
        self._state = {}
