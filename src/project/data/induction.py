"""Induction heads (Olsson et al. 2022): random tokens in which a span repeats after a random gap.

Each sequence is ``seq_len`` uniform random tokens; a span of ``span`` tokens starting at ``start``
is copied to ``start + period`` with ``period = span + gap``. The loss sits on the repeated tokens
only: position ``i`` in ``[start + period, start + period + span - 2]`` predicts token ``i + 1``
(the first token of the copy cannot be predicted), every other label is ``-100``.

The trap this design avoids: with one fixed period a positional "copy from ``period - 1`` back"
head solves the task without any previous-token head. So training gaps are drawn at random from
``0..max_gap`` *minus* ``val_gaps``, and validation uses only the ``val_gaps``: repeat periods
never seen in training, which only a real (content-based) induction circuit handles. The start
offset is random too, so neither copy sits at fixed positions.

``online: true`` draws ``batch_size`` fresh training sequences every step (``steps_per_epoch``
steps per epoch) instead of a fixed set of ``n_train``.

``period``, ``start`` of every example are kept (``self.meta["train" | "val"]``) for the head
scores (:mod:`project.interp.induction`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from project.data.base import IGNORE_INDEX, TokenTask
from project.data.online import OnlineBatches, check_online_batch_size


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} is invalid: allowed an integer >= {low}")
    return value


def repeated_sequences(
    n: int, vocab: int, span: int, gaps: Sequence[int], seq_len: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` sequences with a repeated span: ``(tokens [n, seq_len], labels [n, seq_len],
    period [n], start [n])``; the gap of each is drawn uniformly from ``gaps``."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n, seq_len), generator=gen)
    gap_choices = torch.tensor(list(gaps))
    gap = gap_choices[torch.randint(0, len(gap_choices), (n,), generator=gen)]
    period = span + gap
    room = seq_len - period - span  # >= 0 by construction of seq_len
    start = (torch.rand(n, generator=gen) * (room + 1).double()).floor().long()
    offs = torch.arange(span)
    src = start[:, None] + offs  # [n, span]
    dst = src + period[:, None]
    rows = torch.arange(n)[:, None]
    tokens[rows, dst] = tokens[rows, src]
    labels = torch.full_like(tokens, IGNORE_INDEX)
    q = dst[:, :-1]  # positions predicting the next repeated token
    labels[rows, q] = tokens[rows, q + 1]
    return tokens, labels, period, start


class InductionDataModule(TokenTask):
    """Repeated random spans; train gaps ``0..max_gap`` minus ``val_gaps``, val on ``val_gaps``."""

    report_sections = ("project.runs.report_induction:report_sections",)  # head scores

    def __init__(
        self,
        vocab_size: int = 64,
        span: int = 16,
        max_gap: int = 8,
        val_gaps: Sequence[int] = (3, 6),
        n_train: int = 4096,
        n_val: int = 1024,
        seed: int = 0,
        online: bool = False,
        steps_per_epoch: int = 10,
        batch_size: int | None = None,
        shuffle: bool = True,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, 0.5, 0, shuffle, shuffle_seed)
        self.vocab_size = _check_int("vocab_size", vocab_size, 2)
        self.span = _check_int("span", span, 2)
        self.max_gap = _check_int("max_gap", max_gap, 0)
        self.n_train = _check_int("n_train", n_train, 1)
        self.n_val = _check_int("n_val", n_val, 1)
        self.seed = _check_int("seed", seed, 0)
        self.online = bool(online)
        self.steps_per_epoch = _check_int("steps_per_epoch", steps_per_epoch, 1)
        check_online_batch_size(self.online, batch_size)
        val = list(val_gaps)
        if not val or any(isinstance(g, bool) or not isinstance(g, int) or g < 0 for g in val):
            raise ValueError(
                f"val_gaps={val_gaps!r} is invalid: allowed a non-empty list of integers >= 0"
            )
        self.val_gaps = sorted(set(val))
        self.train_gaps = [g for g in range(self.max_gap + 1) if g not in self.val_gaps]
        if not self.train_gaps:
            raise ValueError(
                f"val_gaps={val_gaps!r} is invalid: it leaves no training gap in 0..{max_gap}"
            )
        # room for the longest period (train or val) plus both copies
        self.seq_len = 2 * self.span + max(self.max_gap, max(self.val_gaps))
        self.meta: dict[str, dict[str, torch.Tensor]] = {}

    def build(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for name, n, gaps, seed in (
            ("train", self.n_train, self.train_gaps, self.seed),
            ("val", self.n_val, self.val_gaps, self.seed + 1_000_003),
        ):
            tokens, labels, period, start = repeated_sequences(
                n, self.vocab_size, self.span, gaps, self.seq_len, seed
            )
            self.meta[name] = {"period": period, "start": start}
            out[name] = (tokens, labels)
        return out

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` fresh training sequences (train gaps) from ``generator``."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        tokens, labels, _, _ = repeated_sequences(
            n, self.vocab_size, self.span, self.train_gaps, self.seq_len, seed
        )
        return tokens, labels

    def train_dataloader(self):  # type: ignore[no-untyped-def]
        if not self.online:
            return super().train_dataloader()
        return OnlineBatches(self, self.sample)

    def periods(self, split: str = "val") -> torch.Tensor:
        """Repeat period of each example of ``split`` ``[n]``."""
        self.splits()
        return self.meta[split]["period"]

    def starts(self, split: str = "val") -> torch.Tensor:
        """Start of the first copy in each example of ``split`` ``[n]``."""
        self.splits()
        return self.meta[split]["start"]


__all__ = ["InductionDataModule", "repeated_sequences"]
