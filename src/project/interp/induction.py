"""Previous-token, duplicate-token and induction head scores (TransformerLens ``head_detector``).

Detection patterns ``[batch, q_pos, k_pos]`` are built from the tokens, as TransformerLens's
``get_*_detection_pattern`` build them:

- ``previous_token``: 1 at ``(i, i - 1)``.
- ``duplicate_token``: 1 at ``(i, j)`` for ``j < i`` with ``tokens[j] == tokens[i]``.
- ``induction``: the duplicate pattern shifted one key to the right: 1 at ``(i, j + 1)`` for
  ``j < i`` with ``tokens[j] == tokens[i]`` (attend to the token *after* the earlier copy).

With a span repeated at period ``P`` these are attention from ``i`` to ``i - 1``, ``i - P`` and
``i - P + 1``. A head's score is its attention mass on the detection pattern, averaged over the
query positions that have a target (``query_mask``; by default every query whose detection row is
non-empty): 1 = a perfect detector head. TransformerLens divides by the attention of *all* query
positions instead (``score_pattern(..., reduce="tl")``), which caps the induction score of a
sequence repeated once at about 1/2; the per-query mean is the number quoted in the literature
and in ``docs/zoo.md``.

Works on any ``HookedRootModule`` with ``blocks.{i}.attn.hook_pattern`` hooks ``[batch, head,
q_pos, k_pos]``.
"""

from __future__ import annotations

import re

import pandas as pd
import torch
from torch import nn

KINDS = ("previous_token", "duplicate_token", "induction")


def previous_token_pattern(tokens: torch.Tensor) -> torch.Tensor:
    """``[batch, pos, pos]``: 1 where the query attends to the position just before it."""
    b, n = tokens.shape
    eye = torch.diag(torch.ones(n - 1, dtype=torch.bool, device=tokens.device), diagonal=-1)
    return eye.expand(b, n, n).clone()


def duplicate_token_pattern(tokens: torch.Tensor) -> torch.Tensor:
    """``[batch, pos, pos]``: 1 at ``(i, j)``, ``j < i``, where ``tokens[j] == tokens[i]``."""
    n = tokens.shape[1]
    same = tokens[:, :, None] == tokens[:, None, :]
    strictly_before = torch.tril(
        torch.ones(n, n, dtype=torch.bool, device=tokens.device), diagonal=-1
    )
    return same & strictly_before


def induction_pattern(tokens: torch.Tensor) -> torch.Tensor:
    """``[batch, pos, pos]``: the duplicate pattern shifted one key right (``(i, j + 1)``)."""
    dup = duplicate_token_pattern(tokens)
    out = torch.zeros_like(dup)
    out[:, :, 1:] = dup[:, :, :-1]
    return out


PATTERNS = {
    "previous_token": previous_token_pattern,
    "duplicate_token": duplicate_token_pattern,
    "induction": induction_pattern,
}


def score_pattern(
    pattern: torch.Tensor,
    detection: torch.Tensor,
    query_mask: torch.Tensor | None = None,
    reduce: str = "query",
) -> torch.Tensor:
    """Attention mass of ``pattern [batch, head, q, k]`` on ``detection [batch, q, k]`` -> ``[head]``.

    ``reduce="query"``: mean over the (batch, query) pairs selected by ``query_mask [batch, q]``
    (default: queries whose detection row is non-empty). ``reduce="tl"``: TransformerLens's
    ``sum(pattern * detection) / sum(pattern)`` over every position (``query_mask`` ignored).
    """
    if pattern.ndim != 4:
        raise ValueError(f"pattern must be [batch, head, q, k], got {tuple(pattern.shape)}")
    det = detection.to(pattern.dtype)[:, None]  # [batch, 1, q, k]
    on_target = (pattern * det).sum(-1)  # [batch, head, q]
    if reduce == "tl":
        return on_target.sum((0, 2)) / pattern.sum((0, 2, 3))
    if reduce != "query":
        raise ValueError(f"reduce={reduce!r}; allowed: 'query', 'tl'")
    mask = detection.any(-1) if query_mask is None else query_mask.bool()
    mask = mask.to(pattern.device)[:, None].to(pattern.dtype)  # [batch, 1, q]
    count = mask.sum((0, 2)).clamp_min(1.0)
    return (on_target * mask).sum((0, 2)) / count


def pattern_hooks(model: nn.Module) -> list[str]:
    """``blocks.{i}.attn.hook_pattern`` names of ``model``, in layer order."""
    names = [
        n
        for n in getattr(model, "hook_dict", {})
        if re.fullmatch(r"blocks\.\d+\.attn\.hook_pattern", n)
    ]
    if not names:
        raise ValueError("model has no 'blocks.{i}.attn.hook_pattern' hook points")
    return sorted(names, key=lambda n: int(n.split(".")[1]))


def attention_patterns(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Every layer's attention pattern: ``[n_layers, batch, head, q, k]`` (no grad)."""
    names = pattern_hooks(model)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)  # type: ignore[operator]
    return torch.stack([cache[n] for n in names])


def head_scores(
    model: nn.Module,
    tokens: torch.Tensor,
    kind: str = "induction",
    query_mask: torch.Tensor | None = None,
    reduce: str = "query",
) -> torch.Tensor:
    """One score per head ``[n_layers, n_heads]`` for ``kind`` (see :data:`KINDS`)."""
    if kind not in PATTERNS:
        raise ValueError(f"kind={kind!r}; allowed: {', '.join(KINDS)}")
    patterns = attention_patterns(model, tokens)
    detection = PATTERNS[kind](tokens.to(patterns.device))
    return torch.stack([score_pattern(p, detection, query_mask, reduce) for p in patterns])


def head_detector(
    model: nn.Module,
    tokens: torch.Tensor,
    query_mask: torch.Tensor | None = None,
    reduce: str = "query",
) -> pd.DataFrame:
    """Table ``layer, head, previous_token, duplicate_token, induction`` (one row per head).

    ``query_mask [batch, q]`` restricts the duplicate and induction scores to chosen queries
    (e.g. the repeated half: :func:`repeat_query_mask`); previous-token always uses every
    query but the first.
    """
    patterns = attention_patterns(model, tokens)
    tokens = tokens.to(patterns.device)
    scores = {}
    for kind, build in PATTERNS.items():
        mask = None if kind == "previous_token" else query_mask
        det = build(tokens)
        scores[kind] = torch.stack([score_pattern(p, det, mask, reduce) for p in patterns])
    n_layers, n_heads = scores["induction"].shape
    rows = [
        {"layer": i, "head": h, **{k: float(v[i, h]) for k, v in scores.items()}}
        for i in range(n_layers)
        for h in range(n_heads)
    ]
    return pd.DataFrame(rows)


def repeat_query_mask(labels: torch.Tensor) -> torch.Tensor:
    """``[batch, pos]`` mask of the positions a task supervises (``labels != -100``): for the
    induction task, the repeated tokens."""
    return labels != -100


def period_pattern(
    seq_len: int, period: torch.Tensor, offset: int, start: torch.Tensor | None = None
) -> torch.Tensor:
    """Positional detection pattern ``[batch, q, k]``: 1 at ``(i, i - period + offset)``.

    ``offset=1`` is the induction target, ``0`` the duplicate, and ``period=1, offset=0`` the
    previous token. With ``start`` only queries in the second copy (``i >= start + period``) get
    a target."""
    period = period.long()
    i = torch.arange(seq_len)
    j = i[None, :] - period[:, None] + offset  # [batch, q]
    valid = (j >= 0) & (j < i[None, :] + 1)
    if start is not None:
        valid &= i[None, :] >= (start + period)[:, None]
    out = torch.zeros(len(period), seq_len, seq_len, dtype=torch.bool)
    b, q = valid.nonzero(as_tuple=True)
    out[b, q, j[b, q]] = True
    return out


__all__ = [
    "KINDS",
    "attention_patterns",
    "duplicate_token_pattern",
    "head_detector",
    "head_scores",
    "induction_pattern",
    "pattern_hooks",
    "period_pattern",
    "previous_token_pattern",
    "repeat_query_mask",
    "score_pattern",
]
