"""Modular arithmetic tables and seeded splits as plain tensors (torch only: no Lightning).

Every example is the token sequence ``[a, b, =]`` (``=`` is token ``p``) and its answer
``op(a, b) mod p``. Pairs are enumerated a-major (``a = i // p``, ``b = i % p``), the order of the
Nanda et al. demo, so the default split (``split_seed=598``, first ``int(frac * p^2)`` of a
randperm) is theirs exactly. The task (``ModularDataModule``) is in ``project.data.modular``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

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


from project.data.split import SPLIT_RNGS, split_indices  # noqa: E402,F401  (re-exported)
