"""Sparse parity (Barak et al. 2022, "Hidden progress"): the XOR of ``k`` secret bits out of ``n``.

A sequence is ``[x_1, ..., x_n, =]`` with ``x_i`` in ``{0, 1}`` (tokens 0 and 1, ``=`` is token 2);
the label, at the last position only, is ``x_{s_1} xor ... xor x_{s_k}`` for ``k`` secret
positions ``s`` drawn once from ``secret_seed`` (``self.secret``). ``d_vocab_out = 2``.

``online: true`` (default, as Barak et al.): every training step sees ``batch_size`` fresh uniform
samples (seeded by ``shuffle_seed``, epoch and step, so a resumed run sees the same stream);
an "epoch" is ``steps_per_epoch`` steps. ``online: false``: a fixed set of ``n_train`` samples
(the base class's batching; small sets memorise instead of finding the bits). Validation is a
fixed set of ``n_val`` samples never used for training.

Loss plateaus near ln 2 (chance) while SGD slowly amplifies the secret bits' correlation, then
drops suddenly; the time grows roughly like ``n^k``.
"""

from __future__ import annotations

import torch

from project.data.base import IGNORE_INDEX, TokenTask
from project.data.online import OnlineBatches, check_online_batch_size


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} is invalid: allowed an integer >= {low}")
    return value


def parity_examples(
    n_examples: int, n: int, secret: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens [m, n + 1], labels [m, n + 1])``: random bits, ``=`` (2), parity at the end."""
    bits = torch.randint(0, 2, (n_examples, n), generator=generator)
    tokens = torch.cat([bits, torch.full((n_examples, 1), 2)], dim=1)
    labels = torch.full_like(tokens, IGNORE_INDEX)
    labels[:, -1] = bits[:, secret].sum(1) % 2
    return tokens, labels


class SparseParityDataModule(TokenTask):
    """Parity of ``k`` secret bits of ``n``; online fresh samples or a fixed train set."""

    last_position_only = True
    vocab_size = 3  # 0, 1, '='
    d_vocab_out = 2  # type: ignore[assignment]

    def __init__(
        self,
        n: int = 30,
        k: int = 3,
        online: bool = True,
        n_train: int = 4096,
        n_val: int = 2048,
        steps_per_epoch: int = 10,
        secret_seed: int = 0,
        batch_size: int | None = 256,
        shuffle: bool = True,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, 0.5, 0, shuffle, shuffle_seed)
        self.n = _check_int("n", n, 1)
        self.k = _check_int("k", k, 1)
        if k > n:
            raise ValueError(f"k={k!r} is invalid: allowed an integer >= 1 and <= n={n}")
        self.online = bool(online)
        self.n_train = _check_int("n_train", n_train, 1)
        self.n_val = _check_int("n_val", n_val, 1)
        self.steps_per_epoch = _check_int("steps_per_epoch", steps_per_epoch, 1)
        self.secret_seed = _check_int("secret_seed", secret_seed, 0)
        check_online_batch_size(self.online, batch_size)
        self.seq_len = n + 1
        gen = torch.Generator().manual_seed(secret_seed)
        self.secret = torch.randperm(n, generator=gen)[:k].sort().values

    def build(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.secret_seed * 7919 + 12345)
        val = parity_examples(self.n_val, self.n, self.secret, gen)
        # the fixed train set (unused when online) comes from another stream than val
        train_gen = torch.Generator().manual_seed(self.secret_seed * 7919 + 54321)
        train = parity_examples(1 if self.online else self.n_train, self.n, self.secret, train_gen)
        return {"train": train, "val": val}

    def train_dataloader(self) -> OnlineBatches:  # type: ignore[override]
        if not self.online:
            return super().train_dataloader()  # type: ignore[return-value]
        return OnlineBatches(self, lambda m, gen: parity_examples(m, self.n, self.secret, gen))


__all__ = ["SparseParityDataModule", "parity_examples"]
