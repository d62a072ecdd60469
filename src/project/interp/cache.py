"""Cache ergonomics: where a site lives in a hook's tensor, and TransformerLens-style stacks.

Hook-shape conventions (TransformerLens names, also ours):

- ``[batch, pos, head, d_head]``: ``attn.hook_q``, ``hook_k``, ``hook_v``, ``hook_z`` (and TL's
  ``hook_result``, ``hook_rot_q``, ``hook_rot_k``): head axis 2, position axis 1.
- ``[batch, head, q_pos, k_pos]``: ``attn.hook_attn_scores``, ``attn.hook_pattern``: head axis 1,
  position axis 2 (the *query* position); the last axis is the key position.
- everything else ``[batch, pos, ...]``: position axis 1, no head axis.

A :class:`Site` names a slice of one hook (head / position / last-axis index, e.g. an MLP neuron)
and turns it into a boolean mask that broadcasts against the activation, so ablation and
patching replace exactly that slice with ``torch.where`` whatever the hook's shape.

Stacking helpers (``stack_activation``, ``accumulated_resid``, ``decompose_resid``,
``stack_head_results``, ``logit_attribution``) work on an ``ActivationCache`` of a model with
TransformerLens hook names (``blocks.{i}.hook_resid_pre`` ...).
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from project.models.hooks import ActivationCache, NamesFilter, act_name

Index = None | int | Sequence[int]

HEAD_HOOKS_BPHD = (
    "hook_q",
    "hook_k",
    "hook_v",
    "hook_z",
    "hook_result",
    "hook_rot_q",
    "hook_rot_k",
)
HEAD_HOOKS_BHQK = ("hook_attn_scores", "hook_pattern")


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def head_axis(name: str) -> int | None:
    """Head axis of hook ``name``: 2 for ``[batch, pos, head, d_head]``, 1 for
    ``[batch, head, q_pos, k_pos]``, None for hooks without a head axis."""
    leaf = _leaf(name)
    if leaf in HEAD_HOOKS_BPHD:
        return 2
    if leaf in HEAD_HOOKS_BHQK:
        return 1
    return None


def pos_axis(name: str) -> int:
    """Position axis of hook ``name`` (the query position for attention-pattern hooks)."""
    return 2 if _leaf(name) in HEAD_HOOKS_BHQK else 1


def _as_list(value: Index, what: str, size: int, hook: str) -> list[int]:
    items = [value] if isinstance(value, int) else list(value)  # type: ignore[arg-type]
    if not items:
        raise ValueError(
            f"{what} for hook {hook!r} is an empty list; give an int or a non-empty list"
        )
    out = []
    for item in items:
        if not isinstance(item, int) or isinstance(item, bool):
            raise TypeError(f"{what}={item!r} for hook {hook!r} must be an int")
        if not -size <= item < size:
            raise IndexError(f"{what}={item} out of range for hook {hook!r} (size {size})")
        out.append(item % size)
    return out


@dataclass(frozen=True)
class Site:
    """A slice of one hook's activation: ``hook`` plus optional ``head``, ``pos`` and ``neuron``.

    ``head`` indexes the head axis (see :func:`head_axis`); ``pos`` the position axis (query
    position for ``[batch, head, q_pos, k_pos]`` hooks); ``neuron`` the last axis (an MLP neuron
    for ``mlp.hook_post``, a residual dimension for ``hook_resid_*``, the key position for
    ``hook_pattern``). Each is None (all), an int, or a list of ints; combinations intersect.
    """

    hook: str
    head: Index = None
    pos: Index = None
    neuron: Index = None

    def __post_init__(self) -> None:
        for key in ("head", "pos", "neuron"):
            value = getattr(self, key)
            if isinstance(value, list):  # keep the dataclass hashable
                object.__setattr__(self, key, tuple(value))
        if self.head is not None and head_axis(self.hook) is None:
            raise ValueError(
                f"head={self.head!r} given for hook {self.hook!r}, which has no head axis; "
                f"heads exist on {', '.join(HEAD_HOOKS_BPHD + HEAD_HOOKS_BHQK)}"
            )

    @property
    def label(self) -> str:
        """Readable name, e.g. ``blocks.0.attn.hook_z[head=1,pos=2]``."""
        parts = [
            f"{key}={_fmt(getattr(self, key))}"
            for key in ("head", "pos", "neuron")
            if getattr(self, key) is not None
        ]
        return f"{self.hook}[{','.join(parts)}]" if parts else self.hook

    def mask(self, shape: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
        """Boolean mask broadcastable to ``shape`` (the activation's), True inside the site."""
        ndim = len(shape)
        mask = torch.ones([1] * ndim, dtype=torch.bool, device=device)
        axes = []
        if self.head is not None:
            axes.append((head_axis(self.hook), self.head, "head"))
        if self.pos is not None:
            axes.append((pos_axis(self.hook), self.pos, "pos"))
        if self.neuron is not None:
            axes.append((ndim - 1, self.neuron, "neuron"))
        for axis, value, what in axes:
            if axis is None or axis >= ndim:
                raise ValueError(f"hook {self.hook!r} of shape {tuple(shape)} has no {what} axis")
            keep = torch.zeros(shape[axis], dtype=torch.bool, device=device)
            keep[_as_list(value, what, shape[axis], self.hook)] = True
            view = [1] * ndim
            view[axis] = shape[axis]
            mask = mask & keep.view(view)
        return mask


def _fmt(value: Index) -> str:
    if isinstance(value, int):
        return str(value)
    return "[" + ",".join(str(v) for v in value) + "]"  # type: ignore[union-attr]


def as_site(site: Site | str) -> Site:
    return site if isinstance(site, Site) else Site(site)


def resolve_names(
    available: Sequence[str], names_filter: NamesFilter, what: str = "hook"
) -> list[str]:
    """Names from ``available`` selected by ``names_filter`` (None = all, str, list, predicate).

    A str or list must name existing entries (a list may hold TransformerLens shortcut tuples
    such as ``("pattern", 0)``); unknown names raise one clear error listing what is available.
    Order follows ``available`` (forward order).
    """
    if names_filter is None:
        return list(available)
    if callable(names_filter) and not isinstance(names_filter, str):
        predicate: Callable[[str], bool] = names_filter
        return [name for name in available if predicate(name)]
    wanted = [names_filter] if isinstance(names_filter, str) else list(names_filter)
    full = [act_name(*w) if isinstance(w, tuple) else w for w in wanted]
    unknown = [w for w in full if w not in available]
    if unknown:
        raise KeyError(
            f"unknown {what} name(s) {', '.join(map(repr, unknown))}; available: "
            f"{', '.join(available)}"
        )
    return [name for name in available if name in set(full)]


def n_layers(cache: ActivationCache | dict) -> int:
    """Number of blocks seen in the cache (from ``blocks.{i}.`` names)."""
    layers = [int(m.group(1)) for k in cache if (m := re.match(r"blocks\.(\d+)\.", k))]
    if not layers:
        raise KeyError("the cache holds no 'blocks.{i}.*' activations")
    return max(layers) + 1


def stack_activation(cache: ActivationCache, name: str) -> torch.Tensor:
    """Stack one activation over layers: ``stack_activation(cache, "resid_post")`` ->
    ``[n_layers, *activation_shape]`` (a TransformerLens short name or a full name template
    containing ``{layer}``)."""
    template = name if "{layer}" in name else act_name(name, "{layer}")  # type: ignore[arg-type]
    if "{layer}" not in template:
        raise KeyError(f"{name!r} is not a per-layer activation (e.g. 'resid_post', 'pattern')")
    names = [template.format(layer=i) for i in range(n_layers(cache))]
    missing = [n for n in names if n not in cache]
    if missing:
        raise KeyError(f"cache lacks {', '.join(missing)}; run_with_cache with these names")
    return torch.stack([cache[n] for n in names])


def _select_pos(x: torch.Tensor, pos: int | None) -> torch.Tensor:
    return x if pos is None else x[:, pos]


def accumulated_resid(
    cache: ActivationCache, pos: int | None = None, incl_mid: bool = False
) -> tuple[torch.Tensor, list[str]]:
    """Residual stream before each layer and after the last: ``[n, batch, (pos,) d_model]`` with
    TransformerLens labels ``["0_pre", ("0_mid",) "1_pre", ..., "final_post"]``. ``pos`` picks
    one position (the pos axis is dropped). Attention-only blocks have no ``_mid`` entry."""
    layers = n_layers(cache)
    names, labels = [], []
    for i in range(layers):
        names.append(f"blocks.{i}.hook_resid_pre")
        labels.append(f"{i}_pre")
        if incl_mid and f"blocks.{i}.hook_resid_mid" in cache:  # attention-only: no resid_mid
            names.append(f"blocks.{i}.hook_resid_mid")
            labels.append(f"{i}_mid")
    names.append(f"blocks.{layers - 1}.hook_resid_post")
    labels.append("final_post")
    return torch.stack([_select_pos(cache[n], pos) for n in names]), labels


def decompose_resid(
    cache: ActivationCache, pos: int | None = None
) -> tuple[torch.Tensor, list[str]]:
    """The final residual stream split into the terms that add up to it:
    ``[embed, pos_embed, 0_attn_out, 0_mlp_out, ...]`` -> ``[n, batch, (pos,) d_model]``
    (attention-only blocks have no ``mlp_out`` term).

    Their sum is exactly ``blocks.{last}.hook_resid_post`` (LayerNorms sit on the branches)."""
    names, labels = ["hook_embed", "hook_pos_embed"], ["embed", "pos_embed"]
    for i in range(n_layers(cache)):
        names.append(f"blocks.{i}.hook_attn_out")
        labels.append(f"{i}_attn_out")
        if f"blocks.{i}.hook_mlp_out" in cache or f"blocks.{i}.hook_resid_mid" in cache:
            names.append(f"blocks.{i}.hook_mlp_out")  # absent in attention-only blocks
            labels.append(f"{i}_mlp_out")
    return torch.stack([_select_pos(cache[n], pos) for n in names]), labels


def stack_head_results(
    cache: ActivationCache, model: nn.Module, pos: int | None = None
) -> tuple[torch.Tensor, list[str]]:
    """Each head's write into the residual stream, ``z_h @ W_O[h]``:
    ``[n_layers * n_heads, batch, (pos,) d_model]`` labelled ``"L0H0", "L0H1", ...``.

    Summed over a layer's heads (plus ``b_O`` when the model has attention biases) this is
    ``blocks.{i}.hook_attn_out``."""
    parts, labels = [], []
    for i in range(n_layers(cache)):
        z = _select_pos(cache[f"blocks.{i}.attn.hook_z"], pos)  # [batch, (pos,) head, d_head]
        w_o = model.get_parameter(f"blocks.{i}.attn.W_O")  # [head, d_head, d_model]
        result = torch.einsum("...he,hed->h...d", z, w_o.to(z.dtype))
        parts.append(result)
        labels += [f"L{i}H{h}" for h in range(w_o.shape[0])]
    return torch.cat(parts), labels


def logit_attribution(
    components: torch.Tensor,
    model: nn.Module,
    labels: torch.Tensor,
    cache: ActivationCache | None = None,
    pos: int = -1,
) -> torch.Tensor:
    """Direct logit attribution: each component's contribution to the logit of ``labels``.

    ``components`` ``[n, batch, d_model]`` (e.g. ``decompose_resid(cache, pos=-1)[0]``) ->
    ``[n, batch]``. Without a final LayerNorm the rows sum to the label logit minus ``b_U``.
    With ``ln_final`` the components are centred, divided by the cached
    ``ln_final.hook_scale`` at ``pos`` and scaled by its weight (TransformerLens'
    ``apply_ln_to_stack``); pass ``cache`` then.
    """
    w_u = model.get_parameter("unembed.W_U")  # [d_model, d_vocab_out]
    comps = components
    if getattr(model, "ln_final", None) is not None:
        if cache is None or "ln_final.hook_scale" not in cache:
            raise ValueError("the model has ln_final: pass a cache holding ln_final.hook_scale")
        scale = cache["ln_final.hook_scale"][:, pos]  # [batch, 1]
        comps = (comps - comps.mean(-1, keepdim=True)) / scale * model.get_parameter("ln_final.w")
    directions = w_u[:, labels].T.to(comps.dtype)  # [batch, d_model]
    return (comps * directions).sum(-1)


@contextlib.contextmanager
def progress_bar(
    total: int, description: str, enabled: bool | None = None
) -> Iterator[Callable[[str], None]]:
    """A rich progress bar on stderr for ``total`` steps of a long call (``probe_cache``); yields
    ``advance(description)``, to call after each step. ``enabled``: None shows it only when stderr
    is a terminal (not in logs, pipes or tests); False never; True always (a terminal's control
    codes even where there is none). The bar is removed when done."""
    if enabled is None:
        enabled = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not enabled or total <= 0:
        yield lambda _description: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(file=sys.stderr, force_terminal=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(text: str) -> None:
            bar.update(task, advance=1, description=text)

        yield advance
