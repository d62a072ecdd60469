"""N nets of one architecture as stacked tensors, one vectorised forward, and a stacked AdamW.

``StackedNets(nets)`` stacks the members' parameters (``torch.func.stack_module_state``): every
parameter becomes one leaf tensor ``[N, *shape]``. ``logits(tokens [N, b, pos])`` runs the
shared architecture once under ``torch.func.vmap`` (``functional_call`` on a template copy on
the ``meta`` device): ``[N, b, d_vocab_out]`` for the last position when ``last_only``, else
``[N, b, pos, d_vocab_out]``. Member ``i`` comes back as an ordinary ``state_dict``
(``member_state_dict(i)``) that its architecture loads.

``StackedAdamW`` is ``torch.optim.AdamW`` (the single-tensor CPU path, decoupled weight decay, no
amsgrad) on the stacked tensors with a learning rate and a weight decay per member (``[N]``),
betas and eps shared. It performs the same float operations in the same order as torch's
implementation, the per-member scalars rounded to float32 exactly as torch rounds a Python float
scalar, so a member's update is the one torch would make (``tests/ensemble``). Its per-member
state exports in ``torch.optim.AdamW.state_dict()`` form (``member_state_dict(i, lr, wd)``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class StackedNets:
    """The parameters of ``N`` same-architecture nets as leaf tensors ``[N, *shape]``."""

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        if not nets:
            raise ValueError("nets is invalid: allowed one net or more")
        shapes = [[(k, tuple(v.shape)) for k, v in net.state_dict().items()] for net in nets]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("nets is invalid: allowed nets of one architecture (same shapes)")
        self.n = len(nets)
        params, buffers = stack_module_state(list(nets))  # type: ignore[arg-type]
        self.params: dict[str, torch.Tensor] = params
        self.buffers: dict[str, torch.Tensor] = buffers
        self.template = copy.deepcopy(nets[0]).to("meta")
        self.takes_last_only = "last_only" in _forward_args(self.template)
        self._persistent = set(nets[0].state_dict().keys())

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def logits(self, tokens: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``tokens [N, b, pos]`` -> ``[N, b, d_vocab_out]`` (last position) when ``last_only``,
        else ``[N, b, pos, d_vocab_out]``. One vectorised call for all members."""

        def one(params: dict[str, Any], buffers: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
            if last_only and self.takes_last_only:
                out = functional_call(self.template, (params, buffers), (x,), {"last_only": True})
                return out[:, -1]  # type: ignore[no-any-return]
            out = functional_call(self.template, (params, buffers), (x,))
            return out[:, -1] if last_only else out  # type: ignore[no-any-return]

        return vmap(one)(self.params, self.buffers, tokens)  # type: ignore[no-any-return]

    def member_state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s ``state_dict`` (copies, detached), keys as its net's own."""
        state = {k: v[i].detach().clone() for k, v in self.params.items()}
        state.update({k: v[i].clone() for k, v in self.buffers.items() if k in self._persistent})
        return state


def _forward_args(net: nn.Module) -> tuple[str, ...]:
    import inspect

    return tuple(inspect.signature(net.forward).parameters)


class StackedAdamW:
    """AdamW over stacked ``[N, ...]`` parameters, ``lr`` and ``weight_decay`` per member.

    ``step(lrs)`` takes this step's learning rates (``[N]`` Python floats: the members' schedulers
    already applied), as torch's AdamW reads ``param_group["lr"]``.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        weight_decays: Sequence[float],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.n = len(weight_decays)
        self.wds = torch.tensor([float(w) for w in weight_decays], dtype=torch.float64)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _per_member(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``[N]`` float64 -> ``[N, 1, ...]`` in ``like``'s dtype/device (rounded as torch rounds a
        Python scalar)."""
        return values.to(like.dtype).to(like.device).view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, lrs: Sequence[float]) -> None:
        if len(lrs) != self.n:
            raise ValueError(f"lrs has {len(lrs)} values for {self.n} members")
        self.steps += 1
        lr = torch.tensor([float(v) for v in lrs], dtype=torch.float64)
        decay = 1 - lr * self.wds  # torch: param.mul_(1 - lr * weight_decay), in double
        bias_correction1 = 1 - self.beta1**self.steps
        bias_correction2_sqrt = (1 - self.beta2**self.steps) ** 0.5
        neg_step = -(lr / bias_correction1)  # torch: addcdiv_(value=-step_size)
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            g = p.grad
            p.mul_(self._per_member(decay, p))
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
            # addcdiv_(m, denom, value=s) computes p + s * m / denom, left to right
            p.add_(self._per_member(neg_step, p) * m / denom)

    def member_state_dict(
        self, i: int, names: Sequence[str], lr: float, initial_lr: float
    ) -> dict[str, Any]:
        """Member ``i``'s state as ``torch.optim.AdamW(net.parameters()).state_dict()`` gives it
        (``names``: the parameters in the net's order; ``lr``: its current learning rate)."""
        state = {
            j: {
                "step": torch.tensor(float(self.steps)),
                "exp_avg": self.exp_avg[j][i].clone(),
                "exp_avg_sq": self.exp_avg_sq[j][i].clone(),
            }
            for j in range(len(names))
        }
        group = {
            "lr": lr, "betas": (self.beta1, self.beta2), "eps": self.eps,
            "weight_decay": float(self.wds[i]), "amsgrad": False, "maximize": False,
            "foreach": None, "capturable": False, "differentiable": False, "fused": None,
            "decoupled_weight_decay": True, "initial_lr": initial_lr,
            "params": list(range(len(names))),
        }  # fmt: skip
        return {"state": state, "param_groups": [group]}

    def load_member_state(self, i: int, state: dict[str, Any]) -> None:
        """Member ``i``'s moments and step count from a ``member_state_dict``-shaped dict."""
        for j, entry in state["state"].items():
            self.exp_avg[int(j)][i].copy_(entry["exp_avg"])
            self.exp_avg_sq[int(j)][i].copy_(entry["exp_avg_sq"])
            self.steps = int(float(entry["step"]))
