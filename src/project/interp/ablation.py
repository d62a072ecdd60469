"""Ablation of any hook: zero, mean and resample, restricted to heads / positions / neurons or
a direction, plus sweeps over components returning a tidy table sorted by effect.

    from project.interp import Ablation, run_with_ablation, ablation_sweep, head_ablations
    from project.interp.metrics import accuracy

    logits = run_with_ablation(model, tokens, Ablation("blocks.0.hook_mlp_out", kind="mean"))
    table = ablation_sweep(model, tokens, lambda lg: accuracy(lg, labels), head_ablations(model))

Kinds (TransformerLens conventions):

- ``zero``: the slice becomes 0.
- ``mean``: the slice becomes its mean over the reference batch (per position, per head ...:
  only the batch axis is averaged).
- ``resample``: each example's slice is replaced by the slice of a random reference example
  (seeded; ``reference_tokens`` default to the evaluated tokens themselves).

With ``direction`` (a vector along the hook's last axis) only the component along that
direction is ablated: ``x - (x.d) d + (r.d) d`` with ``d`` normalised and ``r`` the replacement.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from project.interp.cache import Index, Site
from project.models.hooks import HookedRootModule, HookPoint

ABLATION_KINDS = ("zero", "mean", "resample")
Metric = Callable[[torch.Tensor], torch.Tensor | float]


@dataclass(frozen=True, eq=False)
class Ablation:
    """Ablate ``hook`` (restricted to ``head`` / ``pos`` / ``neuron``; see :class:`Site`)."""

    hook: str
    kind: str = "zero"
    head: Index = None
    pos: Index = None
    neuron: Index = None
    direction: torch.Tensor | None = field(default=None, repr=False)
    site: Site = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ABLATION_KINDS:
            raise ValueError(
                f"ablation kind={self.kind!r} for {self.hook!r}; allowed: {', '.join(ABLATION_KINDS)}"
            )
        object.__setattr__(self, "site", Site(self.hook, self.head, self.pos, self.neuron))

    @property
    def label(self) -> str:
        extra = "" if self.direction is None else "+direction"
        return f"{self.site.label}{extra}"


def ablation_hook(
    ablation: Ablation, reference: torch.Tensor | None = None, seed: int = 0
) -> Callable[[torch.Tensor, HookPoint], torch.Tensor]:
    """Hook function applying ``ablation``; ``reference`` is the hook's activation on the
    reference batch ``[ref_batch, ...]`` (needed for ``mean`` and ``resample``)."""
    if ablation.kind != "zero" and reference is None:
        raise ValueError(
            f"{ablation.kind} ablation of {ablation.hook!r} needs reference activations"
        )
    site = ablation.site

    def hook_fn(act: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        if ablation.kind == "zero":
            replacement = torch.zeros_like(act)
        elif ablation.kind == "mean":
            assert reference is not None
            replacement = reference.to(act.dtype).mean(0, keepdim=True).expand_as(act)
        else:
            assert reference is not None
            gen = torch.Generator().manual_seed(seed)
            idx = torch.randint(reference.shape[0], (act.shape[0],), generator=gen)
            replacement = reference.to(act.dtype)[idx.to(reference.device)]
        if replacement.shape != act.shape:
            raise ValueError(
                f"reference activation for {ablation.hook!r} has shape {tuple(replacement.shape)}"
                f" but the activation is {tuple(act.shape)} (same positions needed)"
            )
        if ablation.direction is not None:
            d = ablation.direction.to(act.device, act.dtype).flatten()
            if d.shape[0] != act.shape[-1]:
                raise ValueError(
                    f"direction of size {d.shape[0]} does not match the last axis "
                    f"({act.shape[-1]}) of {ablation.hook!r}"
                )
            d = d / d.norm()
            along = (act @ d)[..., None] * d
            replacement = act - along + (replacement @ d)[..., None] * d
        return torch.where(site.mask(act.shape, act.device), replacement, act)

    return hook_fn


def _as_list(ablations: Ablation | Sequence[Ablation]) -> list[Ablation]:
    return [ablations] if isinstance(ablations, Ablation) else list(ablations)


def reference_cache(
    model: HookedRootModule,
    ablations: Sequence[Ablation],
    reference_tokens: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Activations of the hooks that mean/resample ablations need, on ``reference_tokens``."""
    names = sorted({a.hook for a in ablations if a.kind != "zero"})
    if not names:
        return {}
    for name in names:
        if name not in model.hook_dict:
            raise KeyError(f"no hook point {name!r}; available: {', '.join(model.hook_dict)}")
    with torch.no_grad():
        _, cache = model.run_with_cache(reference_tokens, names_filter=names)
    return dict(cache)


def run_with_ablation(
    model: HookedRootModule,
    tokens: torch.Tensor,
    ablations: Ablation | Sequence[Ablation],
    reference_tokens: torch.Tensor | None = None,
    seed: int = 0,
    reference: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Forward ``tokens [batch, pos]`` with every ablation applied -> logits (no grad).

    Several ablations of one hook apply in order. ``reference`` (hook -> activation) skips the
    reference forward pass; otherwise it runs on ``reference_tokens`` (default ``tokens``)."""
    items = _as_list(ablations)
    if reference is None:
        ref_tokens = tokens if reference_tokens is None else reference_tokens
        reference = reference_cache(model, items, ref_tokens)
    hooks = [(a.hook, ablation_hook(a, reference.get(a.hook), seed)) for a in items]
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=hooks)


def _metric_value(metric: Metric, logits: torch.Tensor) -> float:
    value = metric(logits)
    return float(value.item() if isinstance(value, torch.Tensor) else value)


def ablation_sweep(
    model: HookedRootModule,
    tokens: torch.Tensor,
    metric: Metric,
    ablations: Sequence[Ablation],
    reference_tokens: torch.Tensor | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Ablate each item of ``ablations`` on its own and measure ``metric(logits)``.

    Returns one row per ablation, sorted by ``|effect|`` (largest first; ties keep the input
    order), with columns ``component, hook, kind, head, pos, neuron, baseline, metric, effect``
    where ``effect = metric - baseline``.
    """
    items = list(ablations)
    if not items:
        raise ValueError("ablation_sweep needs at least one ablation")
    reference = reference_cache(
        model, items, tokens if reference_tokens is None else reference_tokens
    )
    with torch.no_grad():
        baseline = _metric_value(metric, model(tokens))
    rows = []
    for order, ablation in enumerate(items):
        logits = run_with_ablation(model, tokens, ablation, seed=seed, reference=reference)
        value = _metric_value(metric, logits)
        rows.append(
            {
                "component": ablation.label,
                "hook": ablation.hook,
                "kind": ablation.kind,
                "head": ablation.head,
                "pos": ablation.pos,
                "neuron": ablation.neuron,
                "baseline": baseline,
                "metric": value,
                "effect": value - baseline,
                "_order": order,
            }
        )
    table = pd.DataFrame(rows)
    table["_abs"] = table["effect"].abs()
    table = table.sort_values(["_abs", "_order"], ascending=[False, True], kind="stable")
    return table.drop(columns=["_abs", "_order"]).reset_index(drop=True)


def model_layers(model: nn.Module) -> int:
    """Number of blocks (from ``blocks.{i}.hook_resid_pre`` hook names)."""
    hook_dict = getattr(model, "hook_dict", {})
    layers = [int(m.group(1)) for n in hook_dict if (m := re.match(r"blocks\.(\d+)\.", n))]
    if not layers:
        raise ValueError("model has no 'blocks.{i}.*' hook points")
    return max(layers) + 1


def _n_heads(model: nn.Module, layer: int) -> int:
    return int(model.get_parameter(f"blocks.{layer}.attn.W_Q").shape[0])


def head_ablations(
    model: nn.Module, kind: str = "mean", hook: str = "hook_z", layers: Sequence[int] | None = None
) -> list[Ablation]:
    """One ablation per attention head, on ``blocks.{i}.attn.<hook>`` (``hook_z`` by default;
    ``hook_pattern``, ``hook_q`` ... work too: the head axis follows the hook's shape)."""
    layers = range(model_layers(model)) if layers is None else layers
    return [
        Ablation(f"blocks.{i}.attn.{hook}", kind=kind, head=h)
        for i in layers
        for h in range(_n_heads(model, i))
    ]


def neuron_ablations(
    model: nn.Module, layer: int = 0, kind: str = "mean", neurons: Sequence[int] | None = None
) -> list[Ablation]:
    """One ablation per MLP neuron of ``blocks.{layer}.mlp.hook_post``."""
    if f"blocks.{layer}.mlp.hook_post" not in getattr(model, "hook_dict", {}):
        raise ValueError(f"block {layer} has no MLP (attention-only model): no neurons to ablate")
    d_mlp = int(model.get_parameter(f"blocks.{layer}.mlp.W_in").shape[1])
    chosen = range(d_mlp) if neurons is None else neurons
    return [Ablation(f"blocks.{layer}.mlp.hook_post", kind=kind, neuron=n) for n in chosen]


def layer_ablations(model: nn.Module, kind: str = "mean") -> list[Ablation]:
    """Whole attention and whole MLP output of every layer (no MLP entry for attention-only
    blocks)."""
    hooks = getattr(model, "hook_dict", {})
    return [
        Ablation(f"blocks.{i}.hook_{part}_out", kind=kind)
        for i in range(model_layers(model))
        for part in ("attn", "mlp")
        if f"blocks.{i}.hook_{part}_out" in hooks
    ]
