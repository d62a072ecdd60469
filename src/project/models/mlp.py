"""The MLP of Prieto et al. 2025 ("Grokking at the edge of numerical stability", their official
code's ``models.MLP`` on ``AlgorithmicDataset``): the operands one-hot encoded and concatenated,
hidden layers with ReLU, no biases by default.

Under the template contract: tokens ``[batch, pos]`` -> logits ``[batch, pos, d_vocab_out]``. The
input is the one-hot encoding of the first ``n_ctx - 1`` tokens (the operands; the last position
is the ``=`` query, a constant), so ``[a, b, =]`` becomes ``onehot(a) ++ onehot(b)``, of size
``(n_ctx - 1) * operand_vocab``. The answer is the same at every position (the net has no notion of
position); tasks read it at the last one.

``operand_vocab`` (default ``d_vocab``) sets the size of each operand's one-hot block. Their
``AlgorithmicDataset`` encodes an operand in ``p`` slots (input ``2 p``); the task's vocabulary
also holds ``=`` (``d_vocab = p + 1``), a slot no operand ever uses. With plain AdamW such an
input column gets no gradient and never moves, but ⊥Grad projects each weight matrix as a whole,
so the unused column gets ``-(w.g / w.w) w`` and Adam's normalisation turns that into full-size
steps: with that column the StableMax + ⊥Grad preset levelled off at 92-98% val, with
``operand_vocab=p`` (their input) it reached 99% (docs/zoo.md). Operands must be below it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OneHotMLP(nn.Module):
    """``onehot(tokens[:, :-1], operand_vocab)`` -> Linear -> ReLU -> ... -> Linear -> logits."""

    def __init__(
        self,
        d_vocab: int,
        n_ctx: int,
        d_vocab_out: int | None = None,
        hidden: list[int] | tuple[int, ...] = (200, 200),
        bias: bool = False,
        operand_vocab: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 2:
            raise ValueError(f"n_ctx={n_ctx!r} is invalid: allowed an integer >= 2")
        operand_vocab = d_vocab if operand_vocab is None else operand_vocab
        if (
            isinstance(operand_vocab, bool)
            or not isinstance(operand_vocab, int)
            or not 1 <= operand_vocab <= d_vocab
        ):
            raise ValueError(
                f"operand_vocab={operand_vocab!r} is invalid: allowed null or an integer in "
                f"[1, d_vocab={d_vocab}]"
            )
        sizes = [(n_ctx - 1) * operand_vocab, *[int(h) for h in hidden], d_vocab_out or d_vocab]
        if any(s < 1 for s in sizes):
            raise ValueError(f"hidden={list(hidden)!r} is invalid: allowed sizes >= 1")
        self.d_vocab, self.n_ctx, self.operand_vocab = d_vocab, n_ctx, operand_vocab
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens ``[batch, pos]`` -> logits ``[batch, pos, d_vocab_out]`` (equal over pos)."""
        x = F.one_hot(tokens[:, : self.n_ctx - 1], self.operand_vocab).flatten(1)
        x = x.to(next(self.parameters()).dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x[:, None, :].expand(-1, tokens.shape[1], -1)
