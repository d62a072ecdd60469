"""The task contract, and ``TokenTask``, a base for synthetic tasks whose data lives on the device.

A **task** is any ``LightningDataModule`` whose batches are ``(tokens [batch, pos] int64, labels
[batch, pos] int64)``, labels ``-100`` (``IGNORE_INDEX``) where nothing is supervised. It declares
``vocab_size``, ``seq_len`` and optionally ``d_vocab_out`` (default ``vocab_size``) and
``last_position_only`` (labels ``-100`` but at the last position: the net computes that alone).

``TokenTask`` hands out slices of one device tensor (no workers, no collate). A new task is one
method, ``build()``. ``batch_size`` is the *global* batch (``None`` / ``-1``: full batch), sharded
over DDP ranks; shuffling depends only on ``(shuffle_seed, epoch)``, so a resume sees the same
order. ``report_sections`` / ``compare_sections``: ``"module:function"`` paths of the report's
sections for this task's runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch

from project.data.split import SPLIT_RNGS, split_indices  # noqa: F401  (re-exported)

IGNORE_INDEX = -100
Batch = tuple[torch.Tensor, torch.Tensor]
Split = tuple[torch.Tensor, torch.Tensor]


def check_batch_size(batch_size: Any) -> None:
    ok = batch_size is None or batch_size == -1
    ok = ok or (
        isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1
    )
    if not ok:
        raise ValueError(
            f"batch_size={batch_size!r} is invalid: allowed a positive integer, or null / -1 "
            "for full batch"
        )


def check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ValueError(f"{name}={value!r} is invalid: allowed a number in (0, 1)")


class DeviceBatches:
    """Iterable of ``(tokens, labels)`` slices of tensors that already sit on the device."""

    def __init__(
        self,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int | None,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_fn: Callable[[], int] = lambda: 0,
    ) -> None:
        self.tokens, self.labels = tokens, labels
        n = len(labels)
        self.global_batch = n if batch_size in (None, -1) or batch_size >= n else int(batch_size)
        self.shuffle = shuffle and self.global_batch < n
        self.seed, self.rank, self.world_size, self.epoch_fn = seed, rank, world_size, epoch_fn

    def __len__(self) -> int:
        return (len(self.labels) + self.global_batch - 1) // self.global_batch

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.labels)
        order = None
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch_fn())
            order = torch.randperm(n, generator=generator).to(self.labels.device)
        for start in range(0, n, self.global_batch):
            stop = min(start + self.global_batch, n)
            if self.world_size > 1:  # disjoint rank shards of this global batch
                idx = torch.arange(
                    start + self.rank, stop, self.world_size, device=self.labels.device
                )
                idx = order[idx] if order is not None else idx
                yield self.tokens[idx], self.labels[idx]
            elif order is not None:
                idx = order[start:stop]
                yield self.tokens[idx], self.labels[idx]
            else:
                yield self.tokens[start:stop], self.labels[start:stop]


class TokenTask(L.LightningDataModule):
    """Subclasses set ``vocab_size`` and ``seq_len``, implement ``build()``, and raise
    ``ValueError("<arg>=<value> is invalid: allowed ...")`` for bad arguments (one CLI line)."""

    vocab_size: int
    seq_len: int
    last_position_only: bool = False
    report_sections: tuple[str, ...] = ()  # "module:function" entries
    compare_sections: tuple[str, ...] = ()
    eval_batch_size: int | None = None  # validation batch; None = the whole split at once

    def __init__(
        self,
        batch_size: int | None = None,
        frac_train: float = 0.8,
        split_seed: int = 0,
        shuffle: bool = True,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        check_batch_size(batch_size)
        check_fraction("frac_train", frac_train)
        self.batch_size, self.frac_train, self.split_seed = batch_size, frac_train, split_seed
        self.shuffle, self.shuffle_seed = bool(shuffle), int(shuffle_seed)
        self.device = torch.device("cpu")
        self._cpu_splits: dict[str, Split] | None = None
        self._splits: dict[str, Split] = {}

    @property
    def d_vocab_out(self) -> int:
        return self.vocab_size

    def build(self) -> Split | dict[str, Split]:
        """All examples ``(tokens [n, pos], labels [n, pos])`` (split by ``frac_train`` /
        ``split_seed``), or a ``{"train": ..., "val": ...}`` dict of such pairs."""
        raise NotImplementedError

    def splits(self) -> dict[str, Split]:
        """``{"train": (tokens, labels), "val": (...)}`` on the CPU, built once."""
        if self._cpu_splits is None:
            built = self.build()
            if isinstance(built, dict):
                self._cpu_splits = {name: built[name] for name in ("train", "val")}
            else:
                tokens, labels = built
                train, val = split_indices(len(tokens), self.frac_train, self.split_seed)
                self._cpu_splits = {
                    "train": (tokens[train], labels[train]),
                    "val": (tokens[val], labels[val]),
                }
        return self._cpu_splits

    def split(self, name: str) -> Split:
        """``(tokens, labels)`` of ``"train"`` or ``"val"`` on the current device."""
        tokens, labels = self.splits()[name]
        return tokens.to(self.device), labels.to(self.device)

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None:
            self.device = self.trainer.strategy.root_device
        self._splits = {name: self.split(name) for name in ("train", "val")}

    def _rank_info(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _split_on_device(self, name: str) -> Split:
        if name not in self._splits:
            self._splits[name] = self.split(name)
        return self._splits[name]

    def train_dataloader(self) -> DeviceBatches:
        rank, world = self._rank_info()
        tokens, labels = self._split_on_device("train")
        args = (self.batch_size, self.shuffle, self.shuffle_seed, rank, world, self._epoch)
        return DeviceBatches(tokens, labels, *args)

    def val_dataloader(self) -> DeviceBatches:
        rank, world = self._rank_info()
        tokens, labels = self._split_on_device("val")
        return DeviceBatches(tokens, labels, self.eval_batch_size, False, 0, rank, world)

    def test_dataloader(self) -> DeviceBatches:
        return self.val_dataloader()
