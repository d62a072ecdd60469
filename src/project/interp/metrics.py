"""Metrics on logits, read at one position (the answer position, last by default).

Every function takes ``logits [batch, pos, d_vocab_out]`` (or ``[batch, d_vocab_out]``, already at
the answer position) and ``labels [batch]``, and returns a scalar tensor (the batch mean) or, with
``reduce=False``, one value per example ``[batch]``. For sweeps and patching, bind the labels:
``metric = lambda logits: accuracy(logits, labels)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def _reduce(values: torch.Tensor, reduce: bool) -> torch.Tensor:
    return values.mean() if reduce else values


def loss(
    logits: torch.Tensor, labels: torch.Tensor, pos: int = -1, reduce: bool = True
) -> torch.Tensor:
    """Cross-entropy of ``labels`` at ``pos``, computed in float64 (as in training)."""
    final = answer_logits(logits, pos)
    _check(final, labels)
    values = F.cross_entropy(final.double(), labels.to(final.device), reduction="none")
    return _reduce(values, reduce)


def accuracy(
    logits: torch.Tensor, labels: torch.Tensor, pos: int = -1, reduce: bool = True
) -> torch.Tensor:
    """Fraction of examples whose arg-max at ``pos`` is the label."""
    final = answer_logits(logits, pos)
    _check(final, labels)
    return _reduce((final.argmax(-1) == labels.to(final.device)).float(), reduce)


def answer_prob(
    logits: torch.Tensor, labels: torch.Tensor, pos: int = -1, reduce: bool = True
) -> torch.Tensor:
    """Softmax probability of the label at ``pos``."""
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

    With ``other_labels=None``: minus the largest *other* logit (the margin; > 0 iff correct)."""
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
