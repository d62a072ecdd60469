"""TransformerLens-style hook points, in-house and dependency-free.

A ``HookPoint`` is an identity module placed on every intermediate activation. With no hook
attached it costs one module call. ``HookedRootModule`` names every hook point after its path
in the module tree (``blocks.0.attn.hook_pattern``) and offers the TransformerLens API:

- ``run_with_hooks(*args, fwd_hooks=[(name_or_filter, fn)], bwd_hooks=[...])``
- ``run_with_cache(*args, names_filter=None)`` -> ``(output, ActivationCache)``
- ``with model.hooks(fwd_hooks=[...]): ...`` (nestable; hooks removed even when the body raises)

Hook functions are ``fn(activation, hook)``; ``hook.name`` is the full name; returning a tensor
replaces the activation.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

HookFn = Callable[..., Any]
NamesFilter = None | str | Sequence[str] | Callable[[str], bool]


class HookPoint(nn.Module):
    """Identity module that exposes an activation to hooks. ``name`` is set by the root module."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None

    def add_hook(self, fn: HookFn, dir: str = "fwd") -> RemovableHandle:
        """Attach ``fn(activation, hook)``; returns a handle whose ``remove()`` detaches it."""
        if dir == "fwd":

            def fwd_wrapper(module: nn.Module, inputs: Any, output: torch.Tensor) -> Any:
                return fn(output, hook=self)

            return self.register_forward_hook(fwd_wrapper)
        if dir == "bwd":

            def bwd_wrapper(module: nn.Module, grad_input: Any, grad_output: Any) -> Any:
                result = fn(grad_output[0], hook=self)
                return None if result is None else (result,)

            return self.register_full_backward_hook(bwd_wrapper)
        raise ValueError(f"dir must be 'fwd' or 'bwd', got {dir!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def make_names_filter(names_filter: NamesFilter) -> Callable[[str], bool]:
    """Normalise a str / list of str / predicate / None (= everything) into a predicate."""
    if names_filter is None:
        return lambda name: True
    if isinstance(names_filter, str):
        target = names_filter
        return lambda name: name == target
    if callable(names_filter):
        return names_filter
    allowed = set(names_filter)
    return lambda name: name in allowed


_SHORT_NAMES = {
    # TransformerLens get_act_name shortcuts -> full-name template
    "embed": "hook_embed",
    "pos_embed": "hook_pos_embed",
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "q": "blocks.{layer}.attn.hook_q",
    "k": "blocks.{layer}.attn.hook_k",
    "v": "blocks.{layer}.attn.hook_v",
    "z": "blocks.{layer}.attn.hook_z",
    "attn_scores": "blocks.{layer}.attn.hook_attn_scores",
    "scores": "blocks.{layer}.attn.hook_attn_scores",
    "pattern": "blocks.{layer}.attn.hook_pattern",
    "attn": "blocks.{layer}.attn.hook_pattern",
    "pre": "blocks.{layer}.mlp.hook_pre",
    "post": "blocks.{layer}.mlp.hook_post",
    "normalized": "ln_final.hook_normalized",
}


def act_name(name: str, layer: int | None = None) -> str:
    """Full hook name from a TransformerLens-style shortcut: ``act_name("pattern", 0)``."""
    if name in _SHORT_NAMES:
        template = _SHORT_NAMES[name]
        if "{layer}" in template:
            if layer is None:
                raise KeyError(f"activation {name!r} needs a layer index")
            return template.format(layer=layer)
        return template
    return name


class ActivationCache(dict):
    """Dict of hook name -> activation; also indexable as ``cache["pattern", 0]``."""

    def __getitem__(self, key: str | tuple) -> torch.Tensor:
        if isinstance(key, tuple):
            key = act_name(key[0], key[1] if len(key) > 1 else None)
        elif key not in self and not key.startswith(("blocks.", "hook_", "ln_final")):
            key = act_name(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, tuple):
            key = act_name(key[0], key[1] if len(key) > 1 else None)
        return super().__contains__(key)

    def to(self, device: torch.device | str) -> ActivationCache:
        return ActivationCache({k: v.to(device) for k, v in self.items()})

    def layer_names(self, pattern: str) -> list[str]:
        """Cached names matching a regex, sorted by layer (e.g. ``r"hook_resid_(pre|post)"``)."""
        rx = re.compile(pattern)
        return [k for k in self if rx.search(k)]


class HookedRootModule(nn.Module):
    """Base class: call ``self.setup_hooks()`` at the end of ``__init__``."""

    def setup_hooks(self) -> None:
        self.hook_dict: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    @property
    def hook_names(self) -> list[str]:
        return list(self.hook_dict)

    def reset_hooks(self) -> None:
        """Remove every hook from every HookPoint, including ones attached by hand with
        ``hook_dict[name].add_hook`` (TransformerLens' ``reset_hooks``)."""
        for hp in self.hook_dict.values():
            hp._forward_hooks.clear()
            hp._forward_pre_hooks.clear()
            hp._backward_hooks.clear()
            hp._backward_pre_hooks.clear()

    def _resolve(self, name_or_filter: str | Callable[[str], bool]) -> list[HookPoint]:
        if isinstance(name_or_filter, str):
            if name_or_filter not in self.hook_dict:
                raise KeyError(
                    f"no hook point {name_or_filter!r}; available: {', '.join(self.hook_dict)}"
                )
            return [self.hook_dict[name_or_filter]]
        return [hp for name, hp in self.hook_dict.items() if name_or_filter(name)]

    @contextlib.contextmanager
    def hooks(
        self,
        fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = (),
        bwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = (),
    ) -> Iterator[HookedRootModule]:
        """Attach hooks for the duration of the ``with`` block; only these hooks are removed."""
        handles: list[RemovableHandle] = []
        try:
            for direction, hook_list in (("fwd", fwd_hooks), ("bwd", bwd_hooks)):
                for name_or_filter, fn in hook_list:
                    for hp in self._resolve(name_or_filter):
                        handles.append(hp.add_hook(fn, dir=direction))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def run_with_hooks(
        self,
        *args: Any,
        fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = (),
        bwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = (),
        **kwargs: Any,
    ) -> Any:
        """Forward with temporary hooks. Backward hooks fire only inside this call's graph use,
        so call ``.backward()`` inside a ``with model.hooks(bwd_hooks=...)`` block instead."""
        with self.hooks(fwd_hooks=fwd_hooks, bwd_hooks=bwd_hooks):
            return self(*args, **kwargs)

    def run_with_cache(
        self,
        *args: Any,
        names_filter: NamesFilter = None,
        device: torch.device | str | None = None,
        detach: bool = True,
        **kwargs: Any,
    ) -> tuple[Any, ActivationCache]:
        """Forward pass that records every activation whose name passes ``names_filter``."""
        cache = ActivationCache()
        keep = make_names_filter(names_filter)

        def save(act: torch.Tensor, hook: HookPoint) -> None:
            value = act.detach() if detach else act
            cache[hook.name] = value.to(device) if device is not None else value

        names = [name for name in self.hook_dict if keep(name)]
        with self.hooks(fwd_hooks=[(name, save) for name in names]):
            out = self(*args, **kwargs)
        return out, cache
