"""Optimiser pieces: linear warm-up and the ⊥Grad wrapper ``OrthoGrad`` (Prieto et al. 2025).
(The Grokfast gradient filters are a callback of the grokking plugin: ``project.grokking.grokfast``.)

The warm-up is the official schedules' ``min(step / warmup_steps, 1)`` (Nanda et al.'s
``lambda step: min(step/10, 1)``; Grokfast's ``1 if update > 10 else update / 10`` is the same
for 10 steps): the first step runs at lr 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class LinearWarmup:
    """LR multiplier ``min(1, step / warmup_steps)`` (step 0 = the first optimiser step, at lr 0),
    as the official code: a picklable LambdaLR function."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, step / self.warmup_steps)


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


def linear_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int = 10) -> Any:
    """``LambdaLR`` with a linear warm-up over ``warmup_steps`` steps, then constant (Nanda et al.)."""
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps={warmup_steps!r} is invalid: allowed an integer >= 0")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LinearWarmup(warmup_steps))
