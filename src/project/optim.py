"""Optimiser pieces: linear warm-up, the Grokfast gradient filters (Lee et al. 2024) and the
⊥Grad wrapper ``OrthoGrad`` (Prieto et al. 2025).

Grokfast amplifies the slow component of the gradient before each optimiser step:
EMA: ``ema = alpha * ema + (1 - alpha) * grad; grad += lamb * ema`` (official default lamb 2.0);
MA:  ``grad += lamb * mean(last `window` grads)`` (``filter_type="sum"``: the sum; official default
lamb 5.0), applied once the window is full.
Both follow ``gradfilter_ema`` / ``gradfilter_ma`` of the official code (github.com/ironjr/grokfast,
``grokfast.py``); ``tests/grokking/test_grokfast.py`` checks them against that algorithm on a fixed
gradient sequence. The filters keep their state as plain tensors so it can be checkpointed and
resumed exactly.

The warm-up is the official schedules' ``min(step / warmup_steps, 1)`` (Nanda et al.'s
``lambda step: min(step/10, 1)``; Grokfast's ``1 if update > 10 else update / 10`` is the same
for 10 steps): the first step runs at lr 0.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


class LinearWarmup:
    """LR multiplier ``min(1, step / warmup_steps)`` (step 0 = the first optimiser step, at lr 0),
    as the official code: a picklable LambdaLR function."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, step / self.warmup_steps)


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


ORTHO_EPS = 1e-30  # as in the official orthograd.py


@torch.no_grad()
def orthogonalize_gradients_(params: Iterable[torch.Tensor], eps: float = ORTHO_EPS) -> None:
    """⊥Grad (Prieto et al. 2025), in place, per parameter (flattened ``w`` and its ``g``):
    ``g_orth = g - (w.g / (w.w + eps)) w``, rescaled to ``|g|``: ``g <- g_orth |g| / (|g_orth| + eps)``.

    The update then has no component along the weights, so it cannot just scale them up (the
    "naive loss minimisation" direction that leads to softmax collapse).
    """
    for p in params:
        if p.grad is None:
            continue
        w, g = p.detach().reshape(-1), p.grad.reshape(-1)
        g_orth = g - (torch.dot(w, g) / (torch.dot(w, w) + eps)) * w
        p.grad.copy_((g_orth * (g.norm() / (g_orth.norm() + eps))).view_as(p.grad))


class OrthoGrad(torch.optim.Optimizer):
    """Wraps any torch optimiser: each ``step`` projects every gradient orthogonal to its weights
    (``orthogonalize_gradients_``), then lets ``base`` step.

    Shares ``param_groups`` and ``state`` with ``base`` (LR schedulers and Lightning see one
    optimiser); ``state_dict`` is ``base``'s, so checkpoints resume exactly. A ``closure`` (as
    Lightning passes one) runs first, so the projection sees the fresh gradients.
    """

    def __init__(self, base: torch.optim.Optimizer, eps: float = ORTHO_EPS) -> None:
        if not isinstance(base, torch.optim.Optimizer):
            raise ValueError(f"base={base!r} is invalid: allowed a torch.optim.Optimizer")
        super().__init__(base.param_groups, {})  # the same group dicts as base's
        self.base, self.eps = base, eps
        self.param_groups = base.param_groups
        self.state = base.state

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            orthogonalize_gradients_(group["params"], self.eps)
        self.base.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups, self.state = self.base.param_groups, self.base.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)


def make_grad_filter(
    kind: str | None,
    alpha: float,
    lamb: float | None,
    window: int,
    filter_type: str = "mean",
) -> GrokfastEMA | GrokfastMA | None:
    """``none``/None -> no filter; ``ema`` -> ``GrokfastEMA``; ``ma`` -> ``GrokfastMA``.

    ``lamb=None`` takes the official default of the chosen filter (EMA 2.0, MA 5.0)."""
    if kind in (None, "none"):
        return None
    if kind not in DEFAULT_LAMB:
        raise ValueError(f"grokfast={kind!r} is invalid: allowed none, ema, ma")
    lamb_ = DEFAULT_LAMB[kind] if lamb is None else lamb
    if kind == "ema":
        return GrokfastEMA(alpha=alpha, lamb=lamb_)
    return GrokfastMA(window=window, lamb=lamb_, filter_type=filter_type)


def check_grokfast_args(alpha: float, lamb: float | None, window: int) -> None:
    """Range checks of the Grokfast arguments (whether or not a filter is on: a value set but
    unused is still a mistake to report)."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha < 1:
        raise ValueError(f"grokfast_alpha={alpha!r} is invalid: allowed a number in [0, 1)")
    if lamb is not None and (
        isinstance(lamb, bool) or not isinstance(lamb, int | float) or not math.isfinite(lamb)
    ):
        raise ValueError(f"grokfast_lamb={lamb!r} is invalid: allowed a finite number or null")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"grokfast_window={window!r} is invalid: allowed an integer >= 1")


def linear_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int = 10) -> Any:
    """``LambdaLR`` with a linear warm-up over ``warmup_steps`` steps, then constant (Nanda et al.)."""
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps={warmup_steps!r} is invalid: allowed an integer >= 0")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LinearWarmup(warmup_steps))
