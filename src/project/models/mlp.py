"""The MLP of Prieto et al. 2025 ("Grokking at the edge of numerical stability", their official
code's ``models.MLP`` on ``AlgorithmicDataset``): the operands one-hot encoded and concatenated,
hidden layers with ReLU, no biases by default.

Under the template contract: tokens ``[batch, pos]`` -> logits ``[batch, pos, d_vocab_out]``. The
input is the one-hot encoding of the first ``n_ctx - 1`` tokens (the operands; the last position
is the ``=`` query, a constant), so ``[a, b, =]`` becomes ``onehot(a) ++ onehot(b)``, of size
``(n_ctx - 1) * d_vocab``. The answer is the same at every position (the net has no notion of
position); tasks read it at the last one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OneHotMLP(nn.Module):
    """``onehot(tokens[:, :-1])`` -> Linear -> ReLU -> ... -> Linear -> logits."""

    def __init__(
        self,
        d_vocab: int,
        n_ctx: int,
        d_vocab_out: int | None = None,
        hidden: list[int] | tuple[int, ...] = (200, 200),
        bias: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 2:
            raise ValueError(f"n_ctx={n_ctx!r} is invalid: allowed an integer >= 2")
        sizes = [(n_ctx - 1) * d_vocab, *[int(h) for h in hidden], d_vocab_out or d_vocab]
        if any(s < 1 for s in sizes):
            raise ValueError(f"hidden={list(hidden)!r} is invalid: allowed sizes >= 1")
        self.d_vocab, self.n_ctx = d_vocab, n_ctx
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens ``[batch, pos]`` -> logits ``[batch, pos, d_vocab_out]`` (equal over pos)."""
        x = F.one_hot(tokens[:, : self.n_ctx - 1], self.d_vocab).flatten(1)
        x = x.to(next(self.parameters()).dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x[:, None, :].expand(-1, tokens.shape[1], -1)
