"""Experiment loggers from the ``logger`` config group (tensorboard | wandb | csv | none)."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig


def build_loggers(cfg: DictConfig) -> list[Any]:
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return []
    return [hydra.utils.instantiate(cfg.logger)]
