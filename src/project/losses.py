"""StableMax cross-entropy and the softmax-collapse diagnostic (Prieto, Barsbey, Mediano, Birdal
2025, "Grokking at the edge of numerical stability"; definitions as in their official code,
``LucasPrietoAl/grokking-at-the-edge-of-numerical-stability``, ``utils.py`` and ``logger.py``).

StableMax replaces ``exp`` in softmax by ``s(x) = x + 1`` for ``x >= 0`` and ``1 / (1 - x)`` for
``x < 0`` (their code adds ``1e-30`` to the denominator), normalised over the classes:
``stablemax(x)_i = s(x_i) / sum_j s(x_j)``. It grows linearly, not exponentially, so a large logit
does not round every other probability to zero.

Softmax collapse (their ``compute_softmax_collapse``): cast the logits to the dtype, subtract the
row maximum, exponentiate and sum; a sample has collapsed when that sum is exactly 1 in that dtype,
i.e. every other class's ``exp`` underflowed to nothing next to the top one. Its gradient is then
zero in floating point and the sample stops teaching anything.

Plain tensor functions; no Lightning import.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100
STABLEMAX_EPS = 1e-30  # their s(x): 1 / (1 - x + 1e-30) for x < 0


def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """Elementwise ``s(x)``: ``x + 1`` for ``x >= 0``, ``1 / (1 - x + 1e-30)`` for ``x < 0``; any shape."""
    return torch.where(x < 0, 1 / (1 - x + STABLEMAX_EPS), x + 1)


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log(s(x) / sum s(x))`` along ``dim``; same shape as ``x``."""
    s = stablemax_s(x)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    dtype: torch.dtype = torch.float64,
    reduction: str = "mean",
) -> torch.Tensor:
    """StableMax cross-entropy of ``logits [n, c]`` against ``labels [n]`` (``-100`` = skipped).

    Computed in ``dtype`` (their code: float64). ``reduction``: ``mean`` over the supervised rows,
    ``sum``, or ``none`` (``[n]``, 0 at skipped rows).
    """
    supervised = labels != IGNORE_INDEX
    safe = torch.where(supervised, labels, torch.zeros_like(labels))
    logp = log_stablemax(logits.to(dtype), dim=-1).gather(-1, safe[:, None]).squeeze(-1)
    per_row = torch.where(supervised, -logp, torch.zeros_like(logp))
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    if reduction == "mean":
        return per_row.sum() / supervised.sum().clamp(min=1)
    raise ValueError(f"reduction={reduction!r} is invalid: allowed mean, sum, none")


def softmax_collapsed(logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Which rows of ``logits [n, c]`` have a collapsed softmax in ``dtype``: bool ``[n]``.

    Their definition: ``sum(exp(x - max x)) == 1`` exactly, computed in ``dtype``.
    """
    x = logits.detach().to(dtype)
    return torch.exp(x - x.amax(dim=-1, keepdim=True)).sum(dim=-1) == 1


def softmax_collapse_fraction(logits: torch.Tensor, dtype: torch.dtype) -> float:
    """Fraction of rows of ``logits [n, c]`` whose softmax has collapsed in ``dtype``."""
    return float(softmax_collapsed(logits, dtype).double().mean()) if len(logits) else 0.0


__all__ = [
    "log_stablemax",
    "softmax_collapse_fraction",
    "softmax_collapsed",
    "stablemax_cross_entropy",
    "stablemax_s",
]
