"""Group composition (Chughtai, Chan & Nanda 2023, "A Toy Model of Universality"): ``[g, h, =] -> g·h``.

The group is the symmetric group ``S_n`` (``group: S5``, 120 elements, by default) or the cyclic
group ``C_n`` (``group: C113``). Elements are numbered by :func:`symmetric_group`'s order
(permutations of ``range(n)`` in lexicographic order, identity = 0); ``=`` is token ``|G|``.
Every one of the ``|G|^2`` pairs is an example, enumerated g-major; ``frac_train`` of them (seeded
by ``split_seed``) train, the rest validate. The answer is supervised at the last position only.

``(g·h)(x) = g(h(x))`` (apply ``h`` first). ``per_element_accuracy`` reads a net's accuracy per
left operand, per right operand and per answer.
"""

from __future__ import annotations

import itertools
import re

import torch
from torch import nn

from project.data.base import IGNORE_INDEX, TokenTask, split_indices


def symmetric_group(n: int) -> torch.Tensor:
    """All permutations of ``range(n)`` in lexicographic order: ``[n!, n]`` (row 0 = identity)."""
    return torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long)


def permutation_table(perms: torch.Tensor) -> torch.Tensor:
    """Multiplication table ``[m, m]`` of the permutations ``perms [m, n]``: ``T[g, h] = g·h``,
    ``(g·h)(x) = g(h(x))``."""
    m, n = perms.shape
    index = {tuple(p.tolist()): i for i, p in enumerate(perms)}
    composed = perms[:, None, :].expand(m, m, n).gather(2, perms[None, :, :].expand(m, m, n))
    flat = composed.reshape(-1, n).tolist()
    return torch.tensor([index[tuple(row)] for row in flat], dtype=torch.long).reshape(m, m)


def group_table(group: str) -> torch.Tensor:
    """Multiplication table of ``S<n>`` (n <= 6) or ``C<n>``."""
    match = re.fullmatch(r"([SC])(\d+)", group)
    if match is None:
        raise ValueError(f"group={group!r} is invalid: allowed S<n> (n in 2..6) or C<n> (n >= 2)")
    kind, n = match.group(1), int(match.group(2))
    if kind == "S":
        if not 2 <= n <= 6:
            raise ValueError(f"group={group!r} is invalid: allowed S<n> with n in 2..6")
        return permutation_table(symmetric_group(n))
    if n < 2:
        raise ValueError(f"group={group!r} is invalid: allowed C<n> with n >= 2")
    idx = torch.arange(n)
    return (idx[:, None] + idx[None, :]) % n


class GroupCompositionDataModule(TokenTask):
    """All pairs ``[g, h, =] -> g·h`` of a finite group, split ``frac_train`` / rest."""

    last_position_only = True
    seq_len = 3
    report_sections = ("project.runs.report_groups:report_sections",)  # irreps, Chughtai et al.

    def __init__(
        self,
        group: str = "S5",
        frac_train: float = 0.5,
        split_seed: int = 0,
        batch_size: int | None = None,
        shuffle: bool = True,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, frac_train, split_seed, shuffle, shuffle_seed)
        if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
            raise ValueError(f"split_seed={split_seed!r} is invalid: allowed an integer >= 0")
        self.group = group
        self.table = group_table(group)
        self.order = int(self.table.shape[0])
        idx = torch.arange(self.order**2)
        g, h = idx // self.order, idx % self.order
        self.tokens = torch.stack([g, h, torch.full_like(g, self.order)], dim=1)
        self.answers = self.table[g, h]
        self.train_idx, self.val_idx = split_indices(len(idx), frac_train, split_seed)

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.order + 1

    @property
    def d_vocab_out(self) -> int:
        return self.order

    def build(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        labels = torch.full_like(self.tokens, IGNORE_INDEX)
        labels[:, -1] = self.answers
        return {
            name: (self.tokens[idx], labels[idx])
            for name, idx in (("train", self.train_idx), ("val", self.val_idx))
        }

    def per_element_accuracy(self, net: nn.Module, split: str = "val") -> dict[str, torch.Tensor]:
        """Accuracy of ``net`` on ``split`` ("train", "val" or "all") grouped by element:
        ``{"left": [|G|], "right": [|G|], "answer": [|G|]}`` (NaN where an element never occurs)."""
        if split == "all":
            idx = torch.arange(len(self.answers))
        else:
            idx = {"train": self.train_idx, "val": self.val_idx}[split]
        tokens, answers = self.tokens[idx], self.answers[idx]
        device = next(net.parameters()).device
        with torch.no_grad():
            pred = net(tokens.to(device))[:, -1].argmax(-1).cpu()
        correct = (pred == answers).double()
        out = {}
        for name, key in (("left", tokens[:, 0]), ("right", tokens[:, 1]), ("answer", answers)):
            total = torch.zeros(self.order, dtype=torch.float64).index_add_(0, key, correct)
            count = torch.bincount(key, minlength=self.order).double()
            out[name] = total / count  # NaN where count == 0
        return out


__all__ = [
    "GroupCompositionDataModule",
    "group_table",
    "permutation_table",
    "symmetric_group",
]
