"""Activation patching and path patching, normalised so 0 = corrupted and 1 = clean behaviour.

    clean = tokens; corrupted = corrupt_operand(tokens, "a")
    metric = lambda lg: logit_diff(lg, clean_labels, corrupted_labels)
    result = activation_patching(model, clean, corrupted, metric)      # hooks x positions
    result.values            # [n_hooks, n_pos]: (m_patched - m_corrupted) / (m_clean - m_corrupted)

**Activation patching** runs the corrupted input with one slice of one hook replaced by its
value on the clean input. **Path patching** (Wang et al. 2022) measures a sender's effect *only
through* chosen receivers: (1) run the base input with the sender slice taken from the source
input and every *frozen* hook (by default each attention head's ``hook_z`` and each
``hook_mlp_out``) held at its base value, recording the receivers; (2) run the base input with
only the receivers replaced by those recordings. Everything but sender -> receiver stays at its
base value. ``direction="denoise"`` (default) uses base = corrupted, source = clean;
``"noise"`` the reverse. Both report the normalised metric (0 = corrupted, 1 = clean).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from project.data.arithmetic import OPERATIONS
from project.interp.cache import Site, as_site, head_axis, resolve_names
from project.models.hooks import HookedRootModule, HookPoint, NamesFilter

Metric = Callable[[torch.Tensor], torch.Tensor | float]
HookFn = Callable[[torch.Tensor, HookPoint], torch.Tensor | None]
DEFAULT_FREEZE = re.compile(r"(attn\.hook_z|hook_mlp_out)$")


def default_freeze(name: str) -> bool:
    """Hooks path patching holds at their base value by default: every head's ``attn.hook_z``
    and every ``hook_mlp_out``."""
    return DEFAULT_FREEZE.search(name) is not None


OPERANDS = {"a": (0,), "b": (1,), "both": (0, 1)}


# ----------------------------------------------------------------------------- corrupted inputs
def resample_positions(
    tokens: torch.Tensor, positions: Sequence[int], n_values: int, seed: int = 0
) -> torch.Tensor:
    """Copy of ``tokens [batch, pos]`` with each listed position replaced by a *different*
    value in ``[0, n_values)`` (uniform over the other ``n_values - 1``; seeded)."""
    if n_values < 2:
        raise ValueError(f"n_values={n_values}: need at least 2 values to resample")
    gen = torch.Generator().manual_seed(seed)
    out = tokens.clone()
    for pos in positions:
        shift = torch.randint(1, n_values, (tokens.shape[0],), generator=gen).to(tokens.device)
        out[:, pos] = (tokens[:, pos] + shift) % n_values
    return out


def _modulus(tokens: torch.Tensor, p: int | None) -> int:
    if p is not None:
        return p
    eq = tokens[:, -1]
    if not bool((eq == eq[0]).all()):
        raise ValueError("cannot infer p: the last token differs across examples; pass p=")
    return int(eq[0])


def corrupt_operand(
    tokens: torch.Tensor,
    operand: str | int | Sequence[int] = "a",
    p: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Corrupted copy of ``tokens``.

    Modular arithmetic ``[a, b, =]``: ``operand`` ``"a"``, ``"b"`` or ``"both"`` resamples that
    operand to a different residue (``p`` defaults to the ``=`` token, which is ``p``).
    Any task (the per-position form): ``operand`` is a position or a list of positions, each
    resampled to a different value in ``[0, p)``; ``p`` (the number of values, e.g. 2 for bits,
    ``vocab_size`` for tokens) is then required.
    """
    if isinstance(operand, str):
        if operand not in OPERANDS:
            raise ValueError(
                f"operand={operand!r}; allowed: {', '.join(OPERANDS)}, or positions (ints)"
            )
        return resample_positions(tokens, OPERANDS[operand], _modulus(tokens, p), seed)
    positions = [operand] if isinstance(operand, int) else list(operand)
    if not positions or not all(isinstance(i, int) and not isinstance(i, bool) for i in positions):
        raise ValueError(f"operand={operand!r}: give a position (int) or a list of positions")
    n = tokens.shape[1]
    if any(not -n <= i < n for i in positions):
        raise IndexError(f"positions {positions} out of range for sequences of length {n}")
    if p is None:
        raise ValueError("corrupting positions needs p= (the number of token values to draw from)")
    return resample_positions(tokens, [i % n for i in positions], p, seed)


def modular_labels(tokens: torch.Tensor, operation: str, p: int | None = None) -> torch.Tensor:
    """Answers ``op(a, b) mod p`` of ``[a, b, =]`` tokens -> ``[batch]``."""
    if operation not in OPERATIONS:
        raise ValueError(f"operation={operation!r}; allowed: {', '.join(OPERATIONS)}")
    p = _modulus(tokens, p)
    a, b = tokens[:, 0], tokens[:, 1]
    if operation == "div" and bool((b == 0).any()):
        raise ValueError("operation='div' needs b != 0 in every example")
    return OPERATIONS[operation](a, b, p)


# ----------------------------------------------------------------------------- helpers
def normalise(value: float, clean: float, corrupted: float) -> float:
    """``(value - corrupted) / (clean - corrupted)``: 0 = corrupted, 1 = clean."""
    if clean == corrupted:
        raise ValueError(
            f"clean and corrupted metric are both {clean}: the corruption does not change the "
            "metric, so patching effects cannot be normalised (pick another corruption/metric)"
        )
    return (value - corrupted) / (clean - corrupted)


def _metric(metric: Metric, logits: torch.Tensor) -> float:
    value = metric(logits)
    return float(value.item() if isinstance(value, torch.Tensor) else value)


def patch_hook(site: Site, source: torch.Tensor) -> HookFn:
    """Hook function replacing ``site``'s slice of the activation by ``source``'s (same shape)."""

    def hook_fn(act: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        if source.shape != act.shape:
            raise ValueError(
                f"patch source for {site.hook!r} has shape {tuple(source.shape)}, activation "
                f"{tuple(act.shape)}: clean and corrupted batches must have the same shape"
            )
        return torch.where(site.mask(act.shape, act.device), source.to(act.dtype), act)

    return hook_fn


def _check_pair(clean: torch.Tensor, corrupted: torch.Tensor) -> None:
    if clean.shape != corrupted.shape:
        raise ValueError(
            f"clean tokens {tuple(clean.shape)} and corrupted tokens {tuple(corrupted.shape)} "
            "must have the same shape"
        )


# ----------------------------------------------------------------------------- activation patching
@dataclass
class PatchingResult:
    """Normalised patching effects ``values`` ``[n_hooks, n_pos]`` (``[n_hooks, n_pos, n_heads]``
    when patched per head) and the raw metric values ``raw`` of the same shape."""

    values: torch.Tensor
    raw: torch.Tensor
    hooks: list[str]
    positions: list[int | str]
    heads: list[int] | None
    clean_metric: float
    corrupted_metric: float

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per patch with ``hook, pos, head, metric, normalised``."""
        rows = []
        for i, hook in enumerate(self.hooks):
            for j, pos in enumerate(self.positions):
                for k, head in enumerate(self.heads or [None]):
                    idx = (i, j) if self.heads is None else (i, j, k)
                    rows.append(
                        {
                            "hook": hook,
                            "pos": pos,
                            "head": head,
                            "metric": float(self.raw[idx]),
                            "normalised": float(self.values[idx]),
                        }
                    )
        return pd.DataFrame(rows)


def default_patch_hooks(model: HookedRootModule) -> list[str]:
    """``blocks.{i}.hook_resid_pre`` of every layer plus the last ``hook_resid_post``."""
    pre = [n for n in model.hook_dict if n.endswith("hook_resid_pre")]
    post = [n for n in model.hook_dict if n.endswith("hook_resid_post")]
    return pre + post[-1:]


def activation_patching(
    model: HookedRootModule,
    clean_tokens: torch.Tensor,
    corrupted_tokens: torch.Tensor,
    metric: Metric,
    hooks: NamesFilter = None,
    positions: str | Sequence[int] = "each",
    by_head: bool = False,
) -> PatchingResult:
    """Patch clean activations into the corrupted run, one (hook, position[, head]) at a time.

    ``hooks``: names filter (str / list / predicate) over the model's hook points; default
    :func:`default_patch_hooks`. ``positions``: ``"each"`` (every position separately),
    ``"all"`` (all at once, one column) or a list. ``by_head`` patches each head separately
    (every hook must have a head axis: ``hook_z``, ``hook_q``, ``hook_pattern`` ...).
    """
    _check_pair(clean_tokens, corrupted_tokens)
    names = (
        default_patch_hooks(model) if hooks is None else resolve_names(list(model.hook_dict), hooks)
    )
    if not names:
        raise ValueError(f"hooks={hooks!r} selects no hook point")
    if by_head:
        no_head = [n for n in names if head_axis(n) is None]
        if no_head:
            raise ValueError(f"by_head=True but {', '.join(no_head)} have no head axis")
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(clean_tokens, names_filter=names)
        clean_metric = _metric(metric, clean_logits)
        corrupted_metric = _metric(metric, model(corrupted_tokens))
        normalise(clean_metric, clean_metric, corrupted_metric)  # fail early when undefined
        n_pos = clean_tokens.shape[1]
        if positions == "each":
            pos_list: list[int | str] = list(range(n_pos))
        elif positions == "all":
            pos_list = ["all"]
        elif isinstance(positions, str):
            raise ValueError(f"positions={positions!r}; allowed: 'each', 'all' or a list of ints")
        else:
            pos_list = list(positions)
        heads: list[int] | None = None
        if by_head:
            counts = {clean_cache[n].shape[head_axis(n)] for n in names}  # type: ignore[index]
            if len(counts) != 1:
                raise ValueError(f"hooks {names} have different head counts {sorted(counts)}")
            heads = list(range(counts.pop()))
        shape = (len(names), len(pos_list)) + ((len(heads),) if heads else ())
        raw = torch.zeros(shape, dtype=torch.float64)
        for i, name in enumerate(names):
            for j, pos in enumerate(pos_list):
                for k, head in enumerate(heads or [None]):
                    site = Site(name, head=head, pos=None if isinstance(pos, str) else pos)
                    logits = model.run_with_hooks(
                        corrupted_tokens, fwd_hooks=[(name, patch_hook(site, clean_cache[name]))]
                    )
                    raw[(i, j) if heads is None else (i, j, k)] = _metric(metric, logits)
    values = (raw - corrupted_metric) / (clean_metric - corrupted_metric)
    return PatchingResult(values, raw, names, pos_list, heads, clean_metric, corrupted_metric)


# ----------------------------------------------------------------------------- path patching
@dataclass
class PathPatchingResult:
    """Outcome of :func:`path_patching`: the metric with the receivers patched, normalised
    (0 = corrupted, 1 = clean), and each receiver hook's activation in the final run (hook ->
    tensor: the receiver slices patched, the rest of that hook at its base value)."""

    metric: float
    normalised: float
    clean_metric: float
    corrupted_metric: float
    receiver_values: dict[str, torch.Tensor] = field(repr=False)


def _group(sites: Sequence[Site]) -> dict[str, list[Site]]:
    grouped: dict[str, list[Site]] = {}
    for site in sites:
        grouped.setdefault(site.hook, []).append(site)
    return grouped


def _union_mask(sites: Sequence[Site], act: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(act.shape, dtype=torch.bool, device=act.device)
    for site in sites:
        mask = mask | site.mask(act.shape, act.device)
    return mask


def path_patching(
    model: HookedRootModule,
    clean_tokens: torch.Tensor,
    corrupted_tokens: torch.Tensor,
    metric: Metric,
    sender: Site | str,
    receivers: Site | str | Sequence[Site | str],
    freeze: NamesFilter = default_freeze,
    direction: str = "denoise",
) -> PathPatchingResult:
    """Effect of ``sender`` on the metric that flows *only* through ``receivers``.

    ``sender`` / ``receivers``: :class:`Site` or hook name (e.g.
    ``Site("blocks.0.attn.hook_z", head=1)`` -> ``Site("blocks.1.attn.hook_q", head=0)``, or
    ``"blocks.0.hook_attn_out"`` -> ``"blocks.0.mlp.hook_pre"``). ``freeze``: names filter of
    the hooks held at their base value in the first pass (default: every ``attn.hook_z`` and
    ``hook_mlp_out``); the sender slice and the receiver slices are never frozen.
    """
    if direction not in ("denoise", "noise"):
        raise ValueError(f"direction={direction!r}; allowed: 'denoise', 'noise'")
    _check_pair(clean_tokens, corrupted_tokens)
    snd = as_site(sender)
    rcv = [as_site(r) for r in ([receivers] if isinstance(receivers, Site | str) else receivers)]
    if not rcv:
        raise ValueError("path_patching needs at least one receiver")
    available = list(model.hook_dict)
    resolve_names(available, [snd.hook] + [r.hook for r in rcv])  # clear error on unknown names
    if any(r.hook == snd.hook for r in rcv):
        raise ValueError(
            f"sender and receiver are the same hook {snd.hook!r}: nothing to path-patch"
        )
    frozen = resolve_names(available, freeze, "freeze hook")
    by_hook = _group(rcv)
    base_tokens, source_tokens = (
        (corrupted_tokens, clean_tokens)
        if direction == "denoise"
        else (clean_tokens, corrupted_tokens)
    )
    with torch.no_grad():
        clean_metric = _metric(metric, model(clean_tokens))
        corrupted_metric = _metric(metric, model(corrupted_tokens))
        needed = sorted(set(frozen) | {snd.hook})
        _, base = model.run_with_cache(base_tokens, names_filter=needed)
        _, source = model.run_with_cache(source_tokens, names_filter=snd.hook)

        def freeze_fn(name: str) -> HookFn:
            def fn(act: torch.Tensor, hook: HookPoint) -> torch.Tensor:
                keep_live = _union_mask(by_hook.get(name, []), act)  # receiver slices stay live
                value = torch.where(keep_live, act, base[name].to(act.dtype))
                if name == snd.hook:
                    value = torch.where(snd.mask(act.shape, act.device), source[name], value)
                return value

            return fn

        recorded: dict[str, torch.Tensor] = {}

        def record_fn(act: torch.Tensor, hook: HookPoint) -> None:
            recorded[hook.name] = act.detach().clone()  # type: ignore[index]

        first: list[tuple[str, HookFn]] = [(name, freeze_fn(name)) for name in frozen]
        if snd.hook not in frozen:
            first.append((snd.hook, patch_hook(snd, source[snd.hook])))
        first += [(name, record_fn) for name in by_hook]
        model.run_with_hooks(base_tokens, fwd_hooks=first)

        patched: dict[str, torch.Tensor] = {}

        def receive_fn(name: str) -> HookFn:
            def fn(act: torch.Tensor, hook: HookPoint) -> torch.Tensor:
                patched[name] = torch.where(_union_mask(by_hook[name], act), recorded[name], act)
                return patched[name]

            return fn

        logits = model.run_with_hooks(
            base_tokens, fwd_hooks=[(name, receive_fn(name)) for name in by_hook]
        )
        value = _metric(metric, logits)
    return PathPatchingResult(
        metric=value,
        normalised=normalise(value, clean_metric, corrupted_metric),
        clean_metric=clean_metric,
        corrupted_metric=corrupted_metric,
        receiver_values=patched,
    )


def path_patching_sweep(
    model: HookedRootModule,
    clean_tokens: torch.Tensor,
    corrupted_tokens: torch.Tensor,
    metric: Metric,
    senders: Sequence[Site | str],
    receivers: Site | str | Sequence[Site | str],
    freeze: NamesFilter = default_freeze,
    direction: str = "denoise",
) -> pd.DataFrame:
    """:func:`path_patching` for each sender -> table ``sender, metric, normalised`` (input order)."""
    rows = []
    for sender in senders:
        res = path_patching(
            model, clean_tokens, corrupted_tokens, metric, sender, receivers, freeze, direction
        )
        rows.append(
            {"sender": as_site(sender).label, "metric": res.metric, "normalised": res.normalised}
        )
    return pd.DataFrame(rows)
