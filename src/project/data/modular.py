"""Modular arithmetic ``op(a, b) mod p``: the tables, and the task (``ModularDataModule``).

Every example is the token sequence ``[a, b, =]`` (``=`` is token ``p``) and its answer is
``op(a, b) mod p``, supervised at the last position only (labels ``[-100, -100, answer]``). Pairs are enumerated a-major
(``a = i // p``, ``b = i % p``), the order of the Nanda et al. demo, so the default split
(``split_seed=598``, first ``int(frac * p^2)`` of a randperm) is theirs exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from project.data.base import IGNORE_INDEX, TokenTask, split_indices

OPERATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "div": lambda a, b, p: (a * _mod_inverse(b, p)) % p,
    "x2+y2": lambda a, b, p: (a * a + b * b) % p,
    "x2+xy+y2": lambda a, b, p: (a * a + a * b + b * b) % p,
    "x3+xy": lambda a, b, p: (a**3 + a * b) % p,
    "x3+xy2+y": lambda a, b, p: (a**3 + a * b * b + b) % p,
}


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n**0.5) + 1))


def _mod_inverse(b: torch.Tensor, p: int) -> torch.Tensor:
    """b^(p-2) mod p (Fermat): the inverse of b for prime p and b != 0."""
    result = torch.ones_like(b)
    base, exp = b % p, p - 2
    while exp:
        if exp & 1:
            result = (result * base) % p
        base = (base * base) % p
        exp >>= 1
    return result


def all_pairs(operation: str, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All inputs and labels of the table.

    Returns ``tokens [n, 3]`` (a, b, p) and ``labels [n]``; n = p^2 (p(p-1) for ``div``: b != 0).
    """
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; allowed: {', '.join(OPERATIONS)}")
    idx = torch.arange(p * p)
    a, b = idx // p, idx % p
    if operation == "div":
        keep = b != 0
        a, b = a[keep], b[keep]
    labels = OPERATIONS[operation](a, b, p)
    tokens = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    return tokens, labels


class ModularDataModule(TokenTask):
    """``op(a, b) mod p`` over all pairs, split ``frac_train`` / rest with a fixed ``split_seed``.

    Besides the contract's batches it exposes the whole table for the Fourier tools:
    ``tokens [n, 3]``, ``answers [n]``, ``train_idx``, ``val_idx`` (indices into the table).
    """

    last_position_only = True
    seq_len = 3

    def __init__(
        self,
        operation: str = "add",
        modulus: int = 113,
        frac_train: float = 0.3,
        split_seed: int = 598,
        batch_size: int | None = None,
        shuffle: bool = True,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, frac_train, split_seed, shuffle, shuffle_seed)
        if operation not in OPERATIONS:
            raise ValueError(
                f"operation={operation!r} is invalid: allowed one of {', '.join(OPERATIONS)}"
            )
        if isinstance(modulus, bool) or not isinstance(modulus, int) or not 2 <= modulus <= 4099:
            raise ValueError(f"modulus={modulus!r} is invalid: allowed an integer >= 2 and <= 4099")
        if operation == "div" and not is_prime(modulus):
            raise ValueError(
                f"modulus={modulus!r} is invalid: allowed a prime when operation='div' "
                "(x/y needs inverses mod p)"
            )
        if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
            raise ValueError(f"split_seed={split_seed!r} is invalid: allowed an integer >= 0")
        self.operation, self.modulus = operation, modulus
        self.tokens, self.answers = all_pairs(operation, modulus)
        self.train_idx, self.val_idx = split_indices(len(self.answers), frac_train, split_seed)

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.modulus + 1  # residues 0..p-1 and '=' (token p)

    @property
    def d_vocab_out(self) -> int:
        return self.modulus  # logits over the p residues

    def build(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        labels = torch.full_like(self.tokens, IGNORE_INDEX)
        labels[:, -1] = self.answers
        return {
            name: (self.tokens[idx], labels[idx])
            for name, idx in (("train", self.train_idx), ("val", self.val_idx))
        }


__all__ = ["OPERATIONS", "ModularDataModule", "all_pairs", "is_prime", "split_indices"]
