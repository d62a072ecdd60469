"""Metrics on logits, read at one position (the answer position, last by default) or per position.

Every function takes ``logits [batch, pos, d_vocab_out]`` (or ``[batch, d_vocab_out]``, already at
the answer position) and ``labels``, and returns a scalar tensor (the mean) or, with
``reduce=False``, the values themselves. For sweeps and patching, bind the labels:
``metric = lambda logits: accuracy(logits, labels)``.

- ``labels [batch]``: one answer per example, read at ``pos``; ``reduce=False`` -> ``[batch]``.
- ``labels [batch, pos]`` with ``-100`` where nothing is supervised (the task contract's
  labels): every supervised position counts; the mean is over supervised positions (as the
  training loss), ``reduce=False`` -> ``[batch, pos]`` with NaN at unsupervised positions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def answer_logits(logits: torch.Tensor, pos: int = -1) -> torch.Tensor:
    """``[batch, pos, vocab]`` -> ``[batch, vocab]`` at ``pos``; ``[batch, vocab]`` passes through."""
    if logits.ndim == 3:
        return logits[:, pos]
    if logits.ndim == 2:
        return logits
    raise ValueError(
        f"logits must be [batch, pos, vocab] or [batch, vocab], got {tuple(logits.shape)}"
    )


def _check(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} do not match a batch of {logits.shape[0]}"
        )


def _per_position(logits: torch.Tensor, labels: torch.Tensor) -> bool:
    """True for the per-position form (``labels [batch, pos]`` against ``[batch, pos, vocab]``)."""
    if labels.ndim != 2:
        return False
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"per-position labels {tuple(labels.shape)} need logits [batch, pos, vocab] with the "
            f"same batch and pos, got {tuple(logits.shape)}"
        )
    return True


def _positionwise(
    values_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    logits: torch.Tensor,
    labels: torch.Tensor,
    reduce: bool,
) -> torch.Tensor:
    """Apply ``values_fn(flat_logits [n, vocab], flat_labels [n]) -> [n]`` to the supervised
    positions of ``labels [batch, pos]``; mean over them, or ``[batch, pos]`` with NaN elsewhere."""
    labels = labels.to(logits.device)
    mask = labels != IGNORE_INDEX
    if not bool(mask.any()):
        raise ValueError("labels supervise no position (all -100)")
    values = values_fn(logits[mask], labels[mask])
    if reduce:
        return values.mean()
    out = torch.full(labels.shape, float("nan"), dtype=values.dtype, device=values.device)
    out[mask] = values
    return out


def _reduce(values: torch.Tensor, reduce: bool) -> torch.Tensor:
    return values.mean() if reduce else values


def loss(
    logits: torch.Tensor, labels: torch.Tensor, pos: int = -1, reduce: bool = True
) -> torch.Tensor:
    """Cross-entropy of ``labels`` at ``pos`` (or per position), computed in float64."""
    if _per_position(logits, labels):
        return _positionwise(
            lambda lg, lb: F.cross_entropy(lg.double(), lb, reduction="none"),
            logits,
            labels,
            reduce,
        )
    final = answer_logits(logits, pos)
    _check(final, labels)
    values = F.cross_entropy(final.double(), labels.to(final.device), reduction="none")
    return _reduce(values, reduce)


def accuracy(
    logits: torch.Tensor, labels: torch.Tensor, pos: int = -1, reduce: bool = True
) -> torch.Tensor:
    """Fraction of examples (or supervised positions) whose arg-max is the label."""
    if _per_position(logits, labels):
        return _positionwise(lambda lg, lb: (lg.argmax(-1) == lb).float(), logits, labels, reduce)
    final = answer_logits(logits, pos)
    _check(final, labels)
    return _reduce((final.argmax(-1) == labels.to(final.device)).float(), reduce)


def answer_prob(
    logits: torch.Tensor, labels: torch.Tensor, pos: int = -1, reduce: bool = True
) -> torch.Tensor:
    """Softmax probability of the label at ``pos`` (or at each supervised position)."""
    if _per_position(logits, labels):
        return _positionwise(
            lambda lg, lb: lg.double().softmax(-1).gather(-1, lb[:, None])[:, 0],
            logits,
            labels,
            reduce,
        )
    final = answer_logits(logits, pos)
    _check(final, labels)
    probs = final.double().softmax(-1)
    return _reduce(probs.gather(-1, labels.to(final.device)[:, None])[:, 0], reduce)


def logit_diff(
    logits: torch.Tensor,
    labels: torch.Tensor,
    other_labels: torch.Tensor | None = None,
    pos: int = -1,
    reduce: bool = True,
) -> torch.Tensor:
    """Logit of ``labels`` minus logit of ``other_labels`` (e.g. the corrupted run's answer).

    With ``other_labels=None``: minus the largest *other* logit (the margin; > 0 iff correct).
    Per-position form: ``labels`` (and ``other_labels``) ``[batch, pos]``, ``-100`` in ``labels``
    marks the positions left out."""
    if _per_position(logits, labels):
        if other_labels is not None:
            if other_labels.shape != labels.shape:
                raise ValueError(
                    f"other_labels {tuple(other_labels.shape)} must match labels "
                    f"{tuple(labels.shape)}"
                )
            keep = (labels != IGNORE_INDEX).to(logits.device)
            other_flat = other_labels.to(logits.device)[keep]
        else:
            other_flat = None
        return _positionwise(lambda lg, lb: _margin(lg, lb, other_flat), logits, labels, reduce)
    final = answer_logits(logits, pos)
    _check(final, labels)
    labels = labels.to(final.device)
    correct = final.gather(-1, labels[:, None])[:, 0]
    if other_labels is None:
        others = final.scatter(-1, labels[:, None], float("-inf"))
        other = others.max(-1).values
    else:
        _check(final, other_labels)
        other = final.gather(-1, other_labels.to(final.device)[:, None])[:, 0]
    return _reduce(correct - other, reduce)


def _margin(
    final: torch.Tensor, labels: torch.Tensor, other_labels: torch.Tensor | None
) -> torch.Tensor:
    correct = final.gather(-1, labels[:, None])[:, 0]
    if other_labels is None:
        return correct - final.scatter(-1, labels[:, None], float("-inf")).max(-1).values
    return correct - final.gather(-1, other_labels[:, None])[:, 0]
