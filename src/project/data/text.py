"""Character-level causal language modelling on any UTF-8 file (``data.path``).

The vocabulary is the sorted set of the file's characters (``self.vocab``, a string: id ``i`` is
``vocab[i]``; :meth:`encode` / :meth:`decode`). The file is split *contiguously*: the first
``frac_train`` of its characters train, the rest validate (random windows would leak val text
into train). Examples are windows of ``seq_len + 1`` characters (``tokens = w[:-1]``,
``labels = w[1:]``: every position supervised): training windows start every ``stride``
characters, validation windows do not overlap. All windows live on the training device.

The vocabulary depends only on the file, so a run's ``resolved_config.yaml`` rebuilds it
(``project.generate`` does); pass ``vocab`` explicitly to pin it (e.g. when the file changed).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from project.data.base import TokenTask


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} is invalid: allowed an integer >= {low}")
    return value


def windows(ids: torch.Tensor, length: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of ``length + 1`` ids every ``stride``: ``(tokens [m, length], labels [m, length])``."""
    if len(ids) < length + 1:
        return torch.zeros(0, length, dtype=torch.long), torch.zeros(0, length, dtype=torch.long)
    w = ids.unfold(0, length + 1, stride)
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def unigram_entropy(text: str) -> float:
    """``H = -sum p(c) ln p(c)`` over the characters of ``text`` (nats per character)."""
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(text)
    return -sum(c / n * math.log(c / n) for c in counts.values())


class TextDataModule(TokenTask):
    """Char-level LM on ``path``: contiguous ``frac_train`` split, windows of ``seq_len``."""

    def __init__(
        self,
        path: str | None = None,
        seq_len: int = 64,
        stride: int = 8,
        frac_train: float = 0.9,
        vocab: str | None = None,
        batch_size: int | None = 64,
        shuffle: bool = True,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, frac_train, 0, shuffle, shuffle_seed)
        if not path:
            raise ValueError(f"path={path!r} is invalid: allowed a UTF-8 text file (data.path=...)")
        file = Path(path).expanduser()
        if not file.is_file():
            raise ValueError(f"path={path!r} is invalid: no such file")
        try:
            self.text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"path={path!r} is invalid: not UTF-8 ({exc.reason})") from None
        self.path = str(file)
        self.seq_len = _check_int("seq_len", seq_len, 1)
        self.stride = _check_int("stride", stride, 1)
        self.vocab = vocab if vocab else "".join(sorted(set(self.text)))
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("vocab=... is invalid: allowed a string of distinct characters")
        missing = set(self.text) - set(self.vocab)
        if missing:
            raise ValueError(
                f"vocab={vocab!r} is invalid: the file has characters outside it "
                f"({''.join(sorted(missing))[:20]!r})"
            )
        self.stoi = {ch: i for i, ch in enumerate(self.vocab)}
        self.n_train_chars = int(len(self.text) * frac_train)
        need = self.seq_len + 1
        if self.n_train_chars < need or len(self.text) - self.n_train_chars < need:
            raise ValueError(
                f"seq_len={seq_len!r} is invalid: the file ({len(self.text)} characters) is too "
                f"short for a {frac_train:g}/{1 - frac_train:g} split with windows of {need}"
            )

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return len(self.vocab)

    def encode(self, text: str) -> torch.Tensor:
        """Ids ``[len(text)]`` of ``text``; a character outside the vocabulary is a ValueError."""
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {''.join(unknown)!r}")
        return torch.tensor([self.stoi[ch] for ch in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return "".join(self.vocab[i] for i in values)

    def unigram_entropy(self, split: str = "file") -> float:
        """The baseline a model must beat, in nats / char. ``"file"``: the file's unigram entropy
        ``H = -sum p(c) ln p(c)``; ``"train"`` / ``"val"``: the cross-entropy on that split of the
        train split's character frequencies (add-one smoothed): the best context-free model."""
        if split == "file":
            return unigram_entropy(self.text)
        ids = self.encode(self.text)
        train = torch.bincount(ids[: self.n_train_chars], minlength=self.vocab_size).double()
        p = (train + 1) / (train + 1).sum()
        part = ids[: self.n_train_chars] if split == "train" else ids[self.n_train_chars :]
        return float(-p.log()[part].mean())

    def build(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        ids = self.encode(self.text)
        train_ids, val_ids = ids[: self.n_train_chars], ids[self.n_train_chars :]
        return {
            "train": windows(train_ids, self.seq_len, self.stride),
            "val": windows(val_ids, self.seq_len, self.seq_len),
        }


__all__ = ["TextDataModule", "unigram_entropy", "windows"]
