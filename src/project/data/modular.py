"""The modular-arithmetic task ``op(a, b) mod p`` under the template contract.

Inputs ``[a, b, =]``, labels ``[-100, -100, answer]``: supervised at the last position only. The
tables and the split are plain tensors in ``project.data.arithmetic`` (no Lightning import).
"""

from __future__ import annotations

import torch

from project.data.arithmetic import OPERATIONS, SPLIT_RNGS, all_pairs, is_prime, split_indices
from project.data.base import IGNORE_INDEX, TokenTask


class ModularDataModule(TokenTask):
    """``op(a, b) mod p`` over all pairs, split ``frac_train`` / rest with a fixed ``split_seed``.

    Besides the contract's batches it exposes the whole table for the Fourier tools:
    ``tokens [n, 3]``, ``answers [n]``, ``train_idx``, ``val_idx`` (indices into the table).
    """

    last_position_only = True
    seq_len = 3
    # the run report's sections for this task: the grokking plugin (Fourier measures, phases)
    report_sections = ("project.grokking.report_fourier:report_sections",)
    compare_sections = ("project.grokking.report_compare:compare_sections",)

    def __init__(
        self,
        operation: str = "add",
        modulus: int = 113,
        frac_train: float = 0.3,
        split_seed: int = 598,
        batch_size: int | None = None,
        shuffle: bool = True,
        shuffle_seed: int = 0,
        split_rng: str = "torch",
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
        if split_rng not in SPLIT_RNGS:
            raise ValueError(f"split_rng={split_rng!r} is invalid: allowed torch, python")
        self.split_rng = split_rng
        self.train_idx, self.val_idx = split_indices(
            len(self.answers), frac_train, split_seed, split_rng
        )

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
