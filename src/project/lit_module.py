"""The one LightningModule: any net, cross-entropy on the supervised positions.

``net`` maps ``tokens [batch, pos]`` to ``logits [batch, pos, d_vocab_out]``; ``optimizer`` and
``scheduler`` are partials (``_partial_: true``) completed here. The loss is the mean
cross-entropy over positions whose label is not ``-100``. A ``last_position_only`` task gets the
last position's logits alone (a net whose ``forward`` takes ``last_only`` skips the rest; any
other net is sliced). Logged once per epoch: ``{train,val}/{loss,acc}``, token-weighted means
summed across DDP ranks; ``softmax_collapse=true`` adds ``train/softmax_collapse_f{32,64}``
(``project.losses``). Checkpoints carry the configs as plain dicts (``hyper_parameters``).

``steps_per_batch=K`` (full-batch only) runs up to K optimiser steps, one epoch each, in one
Lightning step (saves Lightning's few ms per step and epoch, a large share for small models),
moving Lightning's epoch and step counters after each: cadences, checkpoint names and the step
axis stay in real epochs, and the weights equal a K=1 run's. Epoch-level hooks (validation,
checkpoints, ``train/*`` logging) run once per block, at its last epoch, so every epoch cadence
must be a multiple of K; per-step hooks and precision plugins run at every step; no gradient
clipping or accumulation. The last epoch of a run is a block of its own.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from project.data.base import IGNORE_INDEX
from project.utils.quiet import quiet_libraries

quiet_libraries()  # every command that trains or evaluates imports this module: no library noise

Batch = tuple[torch.Tensor, torch.Tensor]  # tokens [batch, pos], labels [batch, pos]
LOSS_DTYPES = {"float32": torch.float32, "float64": torch.float64}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
LOSSES = ("cross_entropy", "stablemax")


class NonFiniteLossError(RuntimeError):
    pass


class ConfigValueError(ValueError):
    """A config value found wrong once training starts, as one line naming the key."""


def plain(spec: Any) -> Any:
    """A config node (DictConfig or dict) as plain Python containers; other values unchanged."""
    if isinstance(spec, DictConfig):
        return OmegaConf.to_container(spec, resolve=True)
    return spec


def build(spec: Any, *args: Any, **kwargs: Any) -> Any:
    """Instantiate a ``_target_`` mapping (with extra arguments), or call a ready callable."""
    if isinstance(spec, Mapping):
        from hydra.utils import instantiate

        return instantiate({**spec, "_partial_": True})(*args, **kwargs)
    return spec(*args, **kwargs)


class LitCausalLM(L.LightningModule):
    def __init__(
        self,
        net: nn.Module | Mapping[str, Any],
        optimizer: Callable[..., torch.optim.Optimizer] | Mapping[str, Any],
        scheduler: Callable[..., Any] | Mapping[str, Any] | None = None,
        scheduler_interval: str = "step",
        loss_dtype: str = "float64",
        compile: bool | str = False,
        loss: str = "cross_entropy",
        orthograd: bool = False,
        softmax_collapse: bool = False,
        steps_per_batch: int = 1,
    ) -> None:
        super().__init__()
        k = steps_per_batch
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"steps_per_batch={k!r} is invalid: allowed an integer >= 1 (K > 1: "
                             "K full-batch optimiser steps per Lightning step)")  # fmt: skip
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r} is invalid: allowed {', '.join(LOSSES)}")
        if loss_dtype not in LOSS_DTYPES:
            raise ValueError(f"loss_dtype={loss_dtype!r} is invalid: allowed float32, float64")
        if compile not in (True, False, *COMPILE_MODES):
            raise ValueError(
                f"compile={compile!r} is invalid: allowed true, false or a torch.compile mode "
                f"({', '.join(COMPILE_MODES)})"
            )
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(
                f"scheduler_interval={scheduler_interval!r} is invalid: allowed step, epoch"
            )
        net, optimizer, scheduler = plain(net), plain(optimizer), plain(scheduler)
        # plain dicts only: checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(
            {
                "net": net if isinstance(net, dict) else None,
                "optimizer": optimizer if isinstance(optimizer, dict) else None,
                "scheduler": scheduler if isinstance(scheduler, dict) else None,
                "scheduler_interval": scheduler_interval,
                "loss_dtype": loss_dtype,
                "compile": compile,
                "loss": loss,
                "orthograd": orthograd,
                "softmax_collapse": softmax_collapse,
                "steps_per_batch": steps_per_batch,
            }
        )
        self.steps_per_batch = steps_per_batch
        # K > 1: the module steps the optimiser itself (manual optimisation), K times a batch
        self.automatic_optimization = steps_per_batch == 1
        self.loss_kind, self.orthograd = loss, bool(orthograd)
        self.softmax_collapse = bool(softmax_collapse)
        self.net: nn.Module = net if isinstance(net, nn.Module) else build(net)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval = scheduler_interval
        self.loss_dtype = LOSS_DTYPES[loss_dtype]
        self.net_takes_last_only = "last_only" in inspect.signature(self.net.forward).parameters
        self.last_position_only = False  # set from the task in setup()
        self.expected_vocab_out: int | None = None
        self.output_checked = False
        # kept out of the module tree: no duplicate ``_orig_mod`` keys in the state_dict
        mode = compile if isinstance(compile, str) else None
        self.__dict__["_forward"] = torch.compile(self.net, mode=mode) if compile else self.net
        self._forward: Callable[..., torch.Tensor]
        # per split, the epoch's [loss * count, correct, count] on the device (float64); not
        # self.log per step, which costs ~1 ms a call
        self._sums: dict[str, torch.Tensor] = {}
        self._collapse = torch.zeros(2)  # the last train step's collapsed counts [f32, f64]

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        self.last_position_only = bool(getattr(datamodule, "last_position_only", False))
        vocab = getattr(datamodule, "d_vocab_out", None) or getattr(datamodule, "vocab_size", None)
        self.expected_vocab_out = vocab

    def check_output(self, tokens: torch.Tensor, logits: Any, last_only: bool) -> None:
        """Logits must be ``[batch, pos | 1, d_vocab_out]`` (else a wrong net trains silently)."""
        self.output_checked = True
        batch, pos = tokens.shape
        vocab = self.expected_vocab_out
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else None
        if (
            shape is not None
            and len(shape) == 3
            and shape[0] == batch
            and shape[1] in ((pos, 1) if last_only else (pos,))
            and (vocab is None or shape[2] == vocab)
        ):
            return
        got = "[" + ", ".join(map(str, shape)) + "]" if shape else f"a {type(logits).__name__}"
        target = (self.hparams.get("net") or {}).get("_target_", type(self.net).__name__)
        raise ConfigValueError(
            f"model.net is invalid: its forward returned {got} for tokens [{batch}, {pos}] of the "
            f"task; allowed logits [batch, pos, d_vocab_out] = [{batch}, "
            f"{'1 or ' if last_only else ''}{pos}, {vocab}] ({target})"
        )

    def _first_forward(self, tokens: torch.Tensor, last_only: bool) -> torch.Tensor:
        """The first forward; a net that fails on the task's tokens is a one-line config error."""
        try:
            return self._forward(tokens, last_only=True) if last_only else self._forward(tokens)
        except Exception as exc:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            target = (self.hparams.get("net") or {}).get("_target_", type(self.net).__name__)
            message = " ".join(str(exc).split()) or "(no message)"
            batch, pos = tokens.shape
            raise ConfigValueError(
                f"model.net: forward failed on a batch of {batch} examples of the task (tokens "
                f"[{batch}, {pos}], {target}): {type(exc).__name__}: {message}"
            ) from exc

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, pos] -> logits [batch, pos, d_vocab_out]."""
        return self._forward(tokens)

    def logits_and_labels(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[n, d_vocab_out]`` and labels ``[n]`` of the positions the loss looks at."""
        tokens, labels = batch
        last_only = self.last_position_only and self.net_takes_last_only
        if self.output_checked:
            out = self._forward(tokens, last_only=True) if last_only else self._forward(tokens)
        else:
            out = self._first_forward(tokens, last_only)
            self.check_output(tokens, out, last_only)
        if self.last_position_only:
            return out[:, -1], labels[:, -1]
        return out.flatten(0, 1), labels.flatten()

    def loss_and_correct(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over supervised positions, number correct, number supervised."""
        logits, labels = self.logits_and_labels(batch)
        supervised = labels != IGNORE_INDEX
        count = supervised.sum()
        loss = self.loss_fn(logits, labels)
        correct = ((logits.argmax(-1) == labels) & supervised).sum()
        if self.softmax_collapse and self.training:
            from project.losses import softmax_collapsed  # (only when switched on)

            self._collapse = torch.stack(
                [(softmax_collapsed(logits, dt) & supervised).sum() for dt in LOSS_DTYPES.values()]
            )
        return loss, correct, count

    def loss_fn(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss of ``logits [n, c]`` over the supervised ``labels [n]``, in ``loss_dtype``."""
        if self.loss_kind == "stablemax":
            from project.losses import stablemax_cross_entropy  # (only when switched on)

            return stablemax_cross_entropy(logits, labels, self.loss_dtype)
        supervised = (labels != IGNORE_INDEX).sum()
        return F.cross_entropy(
            logits.to(self.loss_dtype), labels, ignore_index=IGNORE_INDEX, reduction="sum"
        ) / supervised.clamp(min=1)

    def _accumulate(
        self, split: str, loss: torch.Tensor, correct: torch.Tensor, count: torch.Tensor
    ) -> None:
        sums = torch.stack([loss.detach().double() * count, correct.double(), count.double()])
        if split == "train" and self.softmax_collapse:
            sums = torch.cat([sums, self._collapse.double()])
        previous = self._sums.get(split)
        self._sums[split] = sums if previous is None else previous + sums

    def _log_epoch(self, split: str) -> torch.Tensor:
        """Logs ``<split>/loss`` and ``<split>/acc``; returns the loss. A collective under DDP."""
        sums = self._sums.pop(split, None)
        if sums is None:  # no batch on this rank
            size = 5 if split == "train" and self.softmax_collapse else 3
            sums = torch.zeros(size, dtype=torch.float64, device=self.device)
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        count = sums[2].clamp(min=1)
        loss, acc = sums[0] / count, sums[1] / count
        self.log(f"{split}/loss", loss, prog_bar=True)
        self.log(f"{split}/acc", acc, prog_bar=True)
        if len(sums) == 5:
            self.log(f"{split}/softmax_collapse_f32", sums[3] / count)
            self.log(f"{split}/softmax_collapse_f64", sums[4] / count)
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if self.steps_per_batch > 1:
            return self._block_step(batch)
        loss, correct, count = self.loss_and_correct(batch)
        self._accumulate("train", loss, correct, count)
        return loss

    def block_steps(self) -> int:
        """Steps (= epochs) in the block starting now: to the next multiple of K, never past
        ``max_epochs - 1`` (the last epoch is a block of its own) or ``max_steps``."""
        trainer, k = self.trainer, self.steps_per_batch
        epoch = trainer.current_epoch
        n = k - epoch % k
        last = trainer.max_epochs
        if last is not None and last >= 0:
            n = min(n, last - 1 - epoch) if epoch < last - 1 else 1
        if trainer.max_steps is not None and trainer.max_steps >= 0:
            n = min(n, trainer.max_steps - trainer.global_step)
        return max(n, 1)

    def _next_epoch(self) -> None:
        """Lightning's epoch counter and loggers' step axis one epoch on (K > 1)."""
        loop = self.trainer.fit_loop
        tracker: Any
        for tracker in (loop.epoch_progress.current, loop.epoch_progress.total):
            tracker.ready += 1
            tracker.started += 1
            tracker.processed += 1
            tracker.completed += 1
        loop.epoch_loop._batches_that_stepped += 1

    def _block_step(self, batch: Batch) -> torch.Tensor:
        """``block_steps()`` optimiser steps, one epoch each, via Lightning's optimiser wrapper."""
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        n = self.block_steps()
        for i in range(n):
            if i:
                self._next_epoch()
            loss, correct, count = self.loss_and_correct(batch)
            optimizer.zero_grad()  # type: ignore[union-attr]
            self.manual_backward(loss)
            optimizer.step()  # type: ignore[union-attr]
            if scheduler is not None:
                scheduler.step()  # type: ignore[union-attr]
        # the block's last epoch's metrics, as a K=1 run logs them
        self._accumulate("train", loss, correct, count)
        return loss.detach()

    def on_train_start(self) -> None:
        if self.steps_per_batch > 1:
            from project.utils.lit_checks import check_block_cadences

            try:
                check_block_cadences(self.trainer, self.steps_per_batch)
            except ValueError as exc:
                raise ConfigValueError(f"model.{exc}") from None

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, correct, count = self.loss_and_correct(batch)
        self._accumulate("val", loss, correct, count)

    def on_train_epoch_start(self) -> None:
        self._sums.pop("train", None)  # an interrupted epoch's leftovers

    def on_validation_epoch_start(self) -> None:
        self._sums.pop("val", None)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_train_epoch_end(self) -> None:
        # runs before the checkpoint callbacks' hook: a diverged epoch is never saved
        loss = self._log_epoch("train")
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite train loss ({loss.item()}) in epoch {self.current_epoch + 1}"
            )

    def configure_optimizers(self) -> Any:
        try:
            optimizer = build(self.optimizer_factory, params=self.parameters())
        except (ValueError, TypeError) as exc:
            from project.utils.lit_checks import config_line

            line = config_line("model.optimizer", self.optimizer_factory, exc)
            raise ConfigValueError(line) from exc
        if self.orthograd:
            from project.optim import OrthoGrad  # (only when switched on)

            optimizer = OrthoGrad(optimizer)
        if self.scheduler_factory is None:
            return optimizer
        try:
            scheduler = build(self.scheduler_factory, optimizer=optimizer)
        except (ValueError, TypeError) as exc:
            from project.utils.lit_checks import config_line

            raise ConfigValueError(
                config_line("model.scheduler", self.scheduler_factory, exc)
            ) from exc
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.scheduler_interval,
                "name": "lr",  # LearningRateMonitor logs it as `lr`
            },
        }
