"""Seeded train/val splits (torch only: the interp tools use them without Lightning)."""

from __future__ import annotations

import random

import torch

SPLIT_RNGS = ("torch", "python")


def split_indices(
    n: int, frac_train: float, split_seed: int, rng: str = "torch"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and val indices: the first ``int(frac_train * n)`` of a seeded permutation are train.
    ``rng="torch"``: ``randperm`` (TransformerLens's grokking demo); ``"python"``:
    ``random.shuffle`` (the progress-measures paper's ``gen_train_test``)."""
    if rng not in SPLIT_RNGS:
        raise ValueError(f"split_rng={rng!r} is invalid: allowed torch, python")
    if rng == "python":
        order = list(range(n))
        random.Random(split_seed).shuffle(order)  # = random.seed(s); random.shuffle(order)
        perm = torch.tensor(order, dtype=torch.long)
    else:
        generator = torch.Generator().manual_seed(split_seed)
        perm = torch.randperm(n, generator=generator)
    cutoff = int(frac_train * n)
    return perm[:cutoff], perm[cutoff:]
