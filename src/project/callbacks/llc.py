"""Live local learning coefficient (any task): every ``every_n_epochs`` epochs, on rank zero,
``LLCMonitor`` estimates the LLC of the current weights on the train split with devinterp
(``project.interp.llc``), logs ``llc/mean`` and ``llc/std`` (over chains) and ``llc/converged`` (1 or 0: the estimate's
convergence diagnostic, ``project.interp.llc.diagnose``; a 0 means the value is not to be read as
an LLC) to every logger and adds the result (loss traces and diagnostic included) to
``<run_dir>/llc.json``, where ``python -m project.report`` finds it.

Off by default (``every_n_epochs: 0``): an estimate costs chains x draws SGLD steps (seconds to
minutes), and devinterp is an optional extra (``uv sync --extra llc``). The constructor checks that
devinterp is installed when the callback is on, so a run fails before training, not at the first
measurement; it never imports devinterp itself (the plain training path stays free of it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from project.interp.llc import INSTALL_HINT, LLCConfig, have_devinterp

log = logging.getLogger(__name__)


class LLCMonitor(Callback):
    """Estimate the LLC every ``every_n_epochs`` completed epochs (0 = off).

    The other arguments are ``project.interp.llc.LLCConfig``'s (SGLD step size ``lr``, ``n_beta``
    (None = b / ln b), ``localization``, ``num_chains``, ``num_draws``, ...).
    """

    def __init__(
        self,
        every_n_epochs: int = 0,
        lr: float = LLCConfig.lr,
        n_beta: float | None = LLCConfig.n_beta,
        localization: float = LLCConfig.localization,
        num_chains: int = LLCConfig.num_chains,
        num_draws: int = LLCConfig.num_draws,
        num_burnin_steps: int = LLCConfig.num_burnin_steps,
        num_steps_bw_draws: int = LLCConfig.num_steps_bw_draws,
        batch_size: int = LLCConfig.batch_size,
        max_examples: int = LLCConfig.max_examples,
        seed: int = LLCConfig.seed,
    ) -> None:
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int):
            raise ValueError(
                f"every_n_epochs={every_n_epochs!r} is invalid: allowed an integer >= 0"
            )
        if every_n_epochs < 0:
            raise ValueError(
                f"every_n_epochs={every_n_epochs!r} is invalid: allowed an integer >= 0"
            )
        self.config = LLCConfig(
            lr=lr, n_beta=n_beta, localization=localization, num_chains=num_chains,
            num_draws=num_draws, num_burnin_steps=num_burnin_steps,
            num_steps_bw_draws=num_steps_bw_draws, batch_size=batch_size,
            max_examples=max_examples, seed=seed,
        )  # fmt: skip
        if every_n_epochs and not have_devinterp():
            raise ValueError(f"every_n_epochs={every_n_epochs} is invalid here: {INSTALL_HINT}")
        self.every_n_epochs = every_n_epochs
        self.seconds = 0.0
        self._last_epoch = -1

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        if not trainer.is_global_zero or epoch == self._last_epoch:
            return
        from project.interp.llc import estimate_llc, write_result

        dm: Any = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "split"):
            log.warning("LLCMonitor: the task has no split('train'); LLC skipped")
            return
        tokens, labels = dm.split("train")
        net = getattr(pl_module, "net", pl_module)
        result = estimate_llc(net, tokens, labels, self.config)
        write_result(Path(trainer.default_root_dir), self.config, epoch, result)
        if not result["converged"]:
            log.warning(
                "LLCMonitor: the estimate at epoch %d did not converge (%s): not an LLC value",
                epoch, result["diagnostic"]["reason"],
            )  # fmt: skip
        scalars = {"llc/mean": result["llc_mean"], "llc/std": result["llc_std"],
                   "llc/converged": float(result["converged"]),
                   "llc/seconds": result["seconds"]}  # fmt: skip
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=trainer.global_step)
        self.seconds += result["seconds"]
        self._last_epoch = epoch

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and trainer.current_epoch == 0:
            self.measure(trainer, pl_module, 0)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.current_epoch + 1
        if self.every_n_epochs and (
            done % self.every_n_epochs == 0 or done >= (trainer.max_epochs or 0)
        ):
            self.measure(trainer, pl_module, done)
