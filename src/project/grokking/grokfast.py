"""Grokfast (Lee et al. 2024) as a Lightning callback: the slow gradient component amplified
before each optimiser step.

EMA: ``ema = alpha * ema + (1 - alpha) * grad; grad += lamb * ema`` (official default lamb 2.0);
MA:  ``grad += lamb * mean(last `window` grads)`` (``filter_type="sum"``: the sum; official default
lamb 5.0), applied once the window is full.
Both follow ``gradfilter_ema`` / ``gradfilter_ma`` of the official code (github.com/ironjr/grokfast,
``grokfast.py``); ``tests/grokking/test_grokfast.py`` checks them against that algorithm on a fixed
gradient sequence. The filter's state (plain tensors) is the callback's ``state_dict``, so
Lightning saves it in ``last.ckpt`` and a resumed run continues it exactly.

    uv run python -m project.train.run experiment=fast_grok grokfast=ema   # configs/grokfast/
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn


class GrokfastEMA:
    """EMA filter: per parameter ``ema = alpha*ema + (1-alpha)*grad`` (ema starts at the first
    grad), then ``grad += lamb*ema``. Call ``apply(model)`` between ``backward()`` and ``step()``."""

    def __init__(self, alpha: float = 0.98, lamb: float = 2.0) -> None:
        self.alpha, self.lamb = alpha, lamb
        self.ema: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        for name, param in model.named_parameters():
            if param.grad is None:
                continue
            ema = self.ema.get(name)
            if ema is None:
                ema = self.ema[name] = param.grad.detach().clone()
            else:
                if ema.device != param.grad.device or ema.dtype != param.grad.dtype:
                    ema = self.ema[name] = ema.to(param.grad)  # resumed on another device
                ema.mul_(self.alpha).add_(param.grad, alpha=1 - self.alpha)
            param.grad.add_(ema, alpha=self.lamb)

    def state_dict(self) -> dict:
        return {"ema": self.ema}

    def load_state_dict(self, state: dict) -> None:
        self.ema = dict(state["ema"])


FILTER_TYPES = ("mean", "sum")
DEFAULT_LAMB = {"ema": 2.0, "ma": 5.0}  # the official defaults of gradfilter_ema / gradfilter_ma


class GrokfastMA:
    """MA filter: ``grad += lamb * mean(last window grads)`` (``filter_type="sum"``: their sum);
    with ``warmup`` it waits until the window is full (as the official ``gradfilter_ma``). The
    window holds the raw (unfiltered) gradients, as the official deque does."""

    def __init__(
        self, window: int = 100, lamb: float = 5.0, warmup: bool = True, filter_type: str = "mean"
    ) -> None:
        if filter_type not in FILTER_TYPES:
            raise ValueError(f"filter_type={filter_type!r} is invalid: allowed mean, sum")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window={window!r} is invalid: allowed an integer >= 1")
        self.window, self.lamb, self.warmup = window, lamb, warmup
        self.filter_type = filter_type
        self.history: dict[str, deque[torch.Tensor]] = {}

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        for name, param in model.named_parameters():
            if param.grad is None:
                continue
            queue = self.history.setdefault(name, deque(maxlen=self.window))
            if queue and queue[0].device != param.grad.device:  # resumed on another device
                queue = self.history[name] = deque(
                    (g.to(param.grad) for g in queue), maxlen=self.window
                )
            queue.append(param.grad.detach().clone())
            if not self.warmup or len(queue) == self.window:
                stacked = torch.stack(tuple(queue))
                slow = stacked.mean(0) if self.filter_type == "mean" else stacked.sum(0)
                param.grad.add_(slow, alpha=self.lamb)

    def state_dict(self) -> dict:
        return {"history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.history = {k: deque(v, maxlen=self.window) for k, v in state["history"].items()}


FILTERS = ("ema", "ma")


class Grokfast(Callback):
    """Filters every gradient of the module between ``backward()`` and the optimiser step
    (Lightning's ``on_before_optimizer_step``: before gradient clipping, as in the official
    loop). ``lamb=None`` takes the official default of the filter (EMA 2.0, MA 5.0)."""

    def __init__(
        self,
        filter: str = "ema",
        alpha: float = 0.98,
        lamb: float | None = None,
        window: int = 100,
        filter_type: str = "mean",
    ) -> None:
        if filter not in FILTERS:
            raise ValueError(f"filter={filter!r} is invalid: allowed ema, ma")
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha < 1:
            raise ValueError(f"alpha={alpha!r} is invalid: allowed a number in [0, 1)")
        if lamb is not None and (
            isinstance(lamb, bool) or not isinstance(lamb, int | float) or not math.isfinite(lamb)
        ):
            raise ValueError(f"lamb={lamb!r} is invalid: allowed a finite number or null")
        lamb_ = DEFAULT_LAMB[filter] if lamb is None else float(lamb)
        self.filter: GrokfastEMA | GrokfastMA = (
            GrokfastEMA(alpha=alpha, lamb=lamb_)
            if filter == "ema"
            else GrokfastMA(window=window, lamb=lamb_, filter_type=filter_type)
        )
        self.kind = filter

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.filter.apply(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return self.filter.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.filter.load_state_dict(state_dict)
