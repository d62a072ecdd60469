"""Previous-token, duplicate-token and induction head scores (TransformerLens ``head_detector``).

Detection patterns ``[batch, q_pos, k_pos]`` are built from the tokens, as TransformerLens's
``get_*_detection_pattern`` build them:

- ``previous_token``: 1 at ``(i, i - 1)``.
- ``duplicate_token``: 1 at ``(i, j)`` for ``j < i`` with ``tokens[j] == tokens[i]``.
- ``induction``: the duplicate pattern shifted one key to the right: 1 at ``(i, j + 1)`` for
  ``j < i`` with ``tokens[j] == tokens[i]`` (attend to the token *after* the earlier copy).

With a span repeated at period ``P`` these are attention from ``i`` to ``i - 1``, ``i - P`` and
``i - P + 1``. Two normalisations of a head's attention mass on the detection pattern:

- ``reduce="tl"`` (default): TransformerLens's ``detect_head`` with ``error_measure="mul"``, per
  sequence: ``sum(pattern * detection) / sum(pattern)`` over every (query, key) pair, then the
  mean over the sequences (what TL returns for a list of sequences). ``exclude_bos`` zeroes the
  attention to key 0 and ``exclude_current_token`` the diagonal *before* both sums, as TL does.
  Every query counts, including those with no target, so a sequence repeated once scores at most
  about 1/2 on ``induction``. Equal to TL's ``detect_head`` on the same model and tokens
  (``tests/interp/test_tl_head_detector.py``, ``tl`` group).
- ``reduce="supervised_query"``: the mean of the attention mass on the target over the queries
  that have one (``query_mask``, default every query whose detection row is non-empty): 1 = a
  perfect detector on the positions the task supervises. Not TL's number: about twice it for a
  sequence repeated once.

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


REDUCES = ("tl", "supervised_query")


def score_pattern(
    pattern: torch.Tensor,
    detection: torch.Tensor,
    query_mask: torch.Tensor | None = None,
    reduce: str = "tl",
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
) -> torch.Tensor:
    """Attention mass of ``pattern [batch, head, q, k]`` on ``detection [batch, q, k]`` -> ``[head]``.

    ``reduce="tl"``: TransformerLens ``detect_head`` (``mul``), per sequence ``sum(pattern *
    detection) / sum(pattern)`` after zeroing key 0 (``exclude_bos``) and the diagonal
    (``exclude_current_token``), averaged over the batch; ``query_mask`` must be None.
    ``reduce="supervised_query"``: mean over the (batch, query) pairs selected by ``query_mask
    [batch, q]`` (default: queries whose detection row is non-empty); the exclude options do not
    apply to it.
    """
    if pattern.ndim != 4:
        raise ValueError(f"pattern must be [batch, head, q, k], got {tuple(pattern.shape)}")
    if reduce not in REDUCES:
        raise ValueError(f"reduce={reduce!r} is invalid: allowed {', '.join(REDUCES)}")
    det = detection.to(pattern.dtype)[:, None]  # [batch, 1, q, k]
    if reduce == "tl":
        if query_mask is not None:
            raise ValueError("reduce='tl' scores every query (as TransformerLens): no query_mask")
        att = pattern.clone()
        if exclude_bos:
            att[..., 0] = 0
        if exclude_current_token:
            att.diagonal(dim1=-2, dim2=-1).zero_()
        per_seq = (att * det).sum((-2, -1)) / att.sum((-2, -1))  # [batch, head]
        return per_seq.mean(0)
    if exclude_bos or exclude_current_token:
        raise ValueError("exclude_bos / exclude_current_token apply to reduce='tl' only")
    on_target = (pattern * det).sum(-1)  # [batch, head, q]
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
    reduce: str = "tl",
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
) -> torch.Tensor:
    """One score per head ``[n_layers, n_heads]`` for ``kind`` (see :data:`KINDS`)."""
    if kind not in PATTERNS:
        raise ValueError(f"kind={kind!r}; allowed: {', '.join(KINDS)}")
    patterns = attention_patterns(model, tokens)
    detection = PATTERNS[kind](tokens.to(patterns.device))
    return torch.stack([
        score_pattern(p, detection, query_mask, reduce, exclude_bos, exclude_current_token)
        for p in patterns
    ])  # fmt: skip


def head_detector(
    model: nn.Module,
    tokens: torch.Tensor,
    query_mask: torch.Tensor | None = None,
    reduce: str = "tl",
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
) -> pd.DataFrame:
    """Table ``layer, head, previous_token, duplicate_token, induction`` (one row per head).

    Default: TransformerLens's ``detect_head`` scores (``reduce="tl"``, its defaults
    ``exclude_bos=False, exclude_current_token=False``). ``reduce="supervised_query"`` with
    ``query_mask [batch, q]`` restricts the duplicate and induction scores to chosen queries (e.g.
    the repeated half: :func:`repeat_query_mask`); previous-token then uses every query but the
    first.
    """
    if reduce == "tl" and query_mask is not None:
        raise ValueError("reduce='tl' scores every query (as TransformerLens): no query_mask")
    patterns = attention_patterns(model, tokens)
    tokens = tokens.to(patterns.device)
    scores = {}
    for kind, build in PATTERNS.items():
        mask = None if kind == "previous_token" else query_mask
        det = build(tokens)
        scores[kind] = torch.stack([
            score_pattern(p, det, mask, reduce, exclude_bos, exclude_current_token)
            for p in patterns
        ])  # fmt: skip
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
