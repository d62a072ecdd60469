"""The run record: best value of ``monitor`` (and its train twin) and when it reached ``threshold``.

For ``monitor`` (default ``val/acc``) and ``train/...``: the best value and its epoch, and the
first completed epoch at ``threshold`` (``>=`` for ``mode=max``, ``<=`` for ``mode=min``);
``reached_as`` / ``train_reached_as`` name those epochs in a task's words. Values stay tensors on
the device (no host sync per epoch) and are saved in checkpoints for resume.

``on_fit_end`` (rank zero) finalises the loggers and writes ``<run_dir>/summary.json`` (before
``CloudSync``'s final copy); ``teardown`` prints the summary. A failed checkpoint write gets a
record with status ``failed: <why>``; a diverged or crashed run gets none.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from project.summary import RunRecord, read_summary, summary_lines, task_words, train_twin

log = logging.getLogger(__name__)

_NONE = -1.0


class MonitorNotLoggedError(ValueError):
    """The monitored metric was not logged by the first validation."""


class RunSummary(Callback):
    end_of_fit_order = 1  # build_callbacks puts it after the others: it records their files

    def __init__(
        self,
        monitor: str = "val/acc",
        mode: str = "max",
        threshold: float = 0.99,
        reached_as: str | None = None,
        train_reached_as: str | None = None,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode={mode!r} is invalid: allowed max, min")
        if not isinstance(monitor, str) or not monitor.strip():
            raise ValueError(f"monitor={monitor!r} is invalid: allowed a logged metric's name")
        if isinstance(threshold, bool) or not math.isfinite(float(threshold)):
            raise ValueError(f"threshold={threshold!r} is invalid: allowed a finite number")
        self.monitor, self.mode, self.threshold = str(monitor), mode, float(threshold)
        self.names = task_words(reached_as, train_reached_as)
        self._state: dict[str, torch.Tensor] = {}
        self._loaded: dict[str, float] = {}
        self._train_logged_at = 0
        self.record: RunRecord | None = None  # written at fit end

    @classmethod
    def untracked(cls) -> RunSummary:
        """A record without a monitored metric (a config with ``callbacks.run_summary=null``)."""
        summary = cls()
        summary.monitor = ""
        return summary

    def _update(self, trainer: Any, key: str, epoch: int) -> None:
        value = trainer.callback_metrics.get(key)
        if not isinstance(value, torch.Tensor):
            return
        value = value.detach().float()
        sign = 1.0 if self.mode == "max" else -1.0
        best_key, best_epoch_key, first_key = f"{key}:best", f"{key}:best_epoch", f"{key}:first"
        if best_key not in self._state:
            init = self._loaded
            self._state[best_key] = value.new_tensor(init.get(best_key, float("nan")))
            self._state[best_epoch_key] = value.new_tensor(init.get(best_epoch_key, _NONE))
            self._state[first_key] = value.new_tensor(init.get(first_key, _NONE))
        best = self._state[best_key]
        better = (sign * value > sign * best) | torch.isnan(best)
        self._state[best_epoch_key] = torch.where(
            better, value.new_tensor(float(epoch)), self._state[best_epoch_key]
        )
        self._state[best_key] = torch.where(better, value, best)
        reached = sign * value >= sign * self.threshold
        first = self._state[first_key]
        self._state[first_key] = torch.where(
            (first < 0) & reached, value.new_tensor(float(epoch)), first
        )

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or not self.monitor:
            return
        if self.monitor not in trainer.callback_metrics and not self._state and not self._loaded:
            logged = ", ".join(sorted(k for k in trainer.callback_metrics if "/" in k))
            raise MonitorNotLoggedError(
                f"monitor={self.monitor!r} is invalid: allowed a metric the run logs ({logged})"
            )
        self._update(trainer, self.monitor, trainer.current_epoch + 1)  # fresh after validation

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        # the epoch the train metrics in callback_metrics were logged at (K > 1: a block back)
        self._train_logged_at = trainer.current_epoch

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        twin = train_twin(self.monitor)
        # train metrics are computed after the epoch-end hooks: read last epoch's here
        if twin and self._train_logged_at > 0:
            self._update(trainer, twin, self._train_logged_at)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if twin := train_twin(self.monitor):
            self._update(trainer, twin, trainer.current_epoch)

    def summary(self) -> dict[str, Any]:
        """This callback's ``RunRecord`` fields (one host sync); None: never logged / reached."""
        if not self.monitor:
            return {}
        values = {**self._loaded, **{k: float(v) for k, v in self._state.items()}}

        def read(key: str) -> tuple[float | None, int | None, int | None]:
            best = values.get(f"{key}:best", float("nan"))
            best_epoch = values.get(f"{key}:best_epoch", _NONE)
            first = values.get(f"{key}:first", _NONE)
            return (
                None if best != best else best,
                int(best_epoch) if best_epoch >= 0 else None,
                int(first) if first >= 0 else None,
            )

        best, best_epoch, first = read(self.monitor)
        out: dict[str, Any] = {
            "monitor": self.monitor,
            "mode": self.mode,
            "threshold": self.threshold,
            "best": best,
            "best_epoch": best_epoch,
            "reached_epoch": first,
        }
        twin = train_twin(self.monitor)
        if twin:
            t_best, t_epoch, t_first = read(twin)
            out.update(train_best=t_best, train_best_epoch=t_epoch, train_reached_epoch=t_first)
        out["names"] = dict(self.names)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {k: float(v) for k, v in self._state.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = {k: float(v) for k, v in state_dict.items() if ":" in k}
        self._state = {}

    def build_record(self, trainer: Any, final: dict[str, float]) -> RunRecord:
        """The run record from the trainer's state (without the W&B and sync lines)."""
        from project.callbacks.preemption import PreemptionCheckpoint

        run_dir = Path(trainer.default_root_dir)
        status = "interrupted" if getattr(trainer, "interrupted", False) else "finished"
        for cb in trainer.callbacks:  # SIGTERM: preempted (last.ckpt saved); Ctrl-C: interrupted
            if isinstance(cb, PreemptionCheckpoint) and cb.preempted:
                status = "interrupted" if cb.interrupted else "preempted"
        ckpt_dir = run_dir / "checkpoints"
        logs = [
            p.name for p in sorted(run_dir.iterdir()) if p.is_dir() and p.name.endswith("_logs")
        ]
        return RunRecord(
            run_dir=str(run_dir),
            status=status,
            epochs=int(trainer.current_epoch),
            steps=int(trainer.global_step),
            final={k: float(v) for k, v in sorted(final.items())},
            **self.summary(),
            checkpoints=sorted(p.name for p in ckpt_dir.glob("*.ckpt"))
            if ckpt_dir.is_dir()
            else [],
            logs=["run.log", *logs, *(["wandb"] if (run_dir / "wandb").is_dir() else [])],
        )

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:  # their files complete before the record and the copy
            logger.finalize("success")
        final = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.record = self.build_record(trainer, final)
        if any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
            from project.loggers import finish_wandb

            self.record.wandb = finish_wandb(list(trainer.loggers))
        self.record.write()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit" or self.record is None:
            return
        record = read_summary(self.record.run_dir) or self.record  # with the sync result
        self.record = None
        lines = summary_lines(record)
        for line in lines:
            log.info(line)
        failed = record.sync is not None and not record.sync["ok"]
        try:  # a rule with the title, then the lines (never cropped: long paths wrap)
            from rich.console import Console

            console = Console(highlight=False, soft_wrap=True)
            console.rule("[red]run summary" if failed else "[green]run summary")
            for line in lines:
                console.print(line, markup=False)
        except Exception:  # no usable terminal: plain text
            print("\n" + "\n".join(lines))

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """A failed checkpoint write: a record with status ``failed: <why>``, if it still fits."""
        from project.callbacks.checkpoints import CheckpointWriteError

        if isinstance(exception, CheckpointWriteError) and trainer.is_global_zero:
            try:
                record = self.build_record(trainer, {})
                record.status = f"failed: {exception}"
                record.write()
            except Exception:  # the disk is full: the record may not fit either
                pass
