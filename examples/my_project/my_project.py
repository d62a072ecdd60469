"""A task and a net of your own, outside the template (README: "Add your own task / model")."""

import torch
from torch import nn

from project.data.base import IGNORE_INDEX, TokenTask


class ReverseTask(TokenTask):
    """[x1 .. xn, SEP, xn .. x1]: after SEP the model must write the digits in reverse order."""

    def __init__(self, n_digits: int = 6, base: int = 10, n_examples: int = 2000, **kwargs):
        super().__init__(**kwargs)  # batch_size, frac_train, split_seed, shuffle, shuffle_seed
        if n_digits < 1:
            raise ValueError(f"n_digits={n_digits!r} is invalid: allowed an integer >= 1")
        self.n_digits, self.base, self.n_examples = n_digits, base, n_examples
        self.vocab_size = base + 1  # digits and SEP (= base)
        self.seq_len = 2 * n_digits + 1

    def build(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.split_seed)
        digits = torch.randint(0, self.base, (self.n_examples, self.n_digits), generator=gen)
        sep = torch.full((self.n_examples, 1), self.base)
        tokens = torch.cat([digits, sep, digits.flip(1)], dim=1)
        labels = torch.full_like(tokens, IGNORE_INDEX)  # next-token labels, only after SEP
        labels[:, self.n_digits : -1] = tokens[:, self.n_digits + 1 :]
        return tokens, labels


class TorchTransformer(nn.Module):
    """A causal transformer from torch.nn parts: tokens [b, pos] -> logits [b, pos, d_vocab_out]."""

    def __init__(self, d_vocab: int, n_ctx: int, d_vocab_out: int, d_model: int = 64,
                 n_heads: int = 4, n_layers: int = 2):  # fmt: skip
        super().__init__()
        self.embed = nn.Embedding(d_vocab, d_model)
        self.pos = nn.Parameter(torch.randn(n_ctx, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)  # fmt: skip
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.unembed = nn.Linear(d_model, d_vocab_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(n, device=tokens.device)
        x = self.embed(tokens) + self.pos[:n]
        return self.unembed(self.blocks(x, mask=mask, is_causal=True))
