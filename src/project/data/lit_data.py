"""LightningDataModule for modular arithmetic; the whole split lives on the training device.

Batches are slices of device tensors (no Dataset ``__getitem__``, no collate, no workers), so a
full-batch step costs one indexing op. ``batch_size=None`` or ``-1`` means full batch.
``batch_size`` is the *global* batch: under DDP each of N ranks takes a disjoint 1/N shard of it,
so changing ``trainer.devices`` does not change the optimisation. Shuffling (mini-batch only)
depends only on ``(seed, epoch)``, so a resumed run sees the same data order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightning as L
import torch

from project.data.modular import all_pairs, split_indices


class DeviceBatches:
    """Iterable of ``(tokens [b, 3], labels [b])`` slices of tensors that already sit on the device."""

    def __init__(
        self,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int | None,
        shuffle: bool,
        seed: int,
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
        n = len(self.labels)
        return (n + self.global_batch - 1) // self.global_batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch_fn())
            order = torch.randperm(n, generator=generator).to(self.labels.device)
        else:
            order = None
        for start in range(0, n, self.global_batch):
            stop = min(start + self.global_batch, n)
            if self.world_size > 1:  # disjoint rank shards of this global batch
                idx = torch.arange(
                    start + self.rank, stop, self.world_size, device=self.labels.device
                )
                if order is not None:
                    idx = order[idx]
                yield self.tokens[idx], self.labels[idx]
            elif order is not None:
                idx = order[start:stop]
                yield self.tokens[idx], self.labels[idx]
            else:
                yield self.tokens[start:stop], self.labels[start:stop]


class ModularDataModule(L.LightningDataModule):
    """``op(a, b) mod p`` over all pairs, split ``frac_train`` / rest with a fixed ``split_seed``."""

    def __init__(
        self,
        operation: str = "add",
        modulus: int = 113,
        frac_train: float = 0.3,
        split_seed: int = 598,
        batch_size: int | None = None,
        shuffle: bool = True,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        self.operation, self.modulus, self.frac_train = operation, modulus, frac_train
        self.split_seed, self.batch_size = split_seed, batch_size
        self.shuffle, self.shuffle_seed = shuffle, shuffle_seed
        self.tokens, self.labels = all_pairs(operation, modulus)
        self.train_idx, self.val_idx = split_indices(len(self.labels), frac_train, split_seed)
        self.device = torch.device("cpu")

    # sizes the model needs: tokens 0..p-1 plus '=' (= p); logits over the p residues
    @property
    def vocab_size(self) -> int:
        return self.modulus + 1

    @property
    def seq_len(self) -> int:
        return 3

    @property
    def num_classes(self) -> int:
        return self.modulus

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [n, 3], labels [n])`` of ``"train"``, ``"val"`` or ``"all"`` on the current device."""
        if name == "all":
            return self.tokens.to(self.device), self.labels.to(self.device)
        idx = {"train": self.train_idx, "val": self.val_idx}[name]
        return self.tokens[idx].to(self.device), self.labels[idx].to(self.device)

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

    def train_dataloader(self) -> DeviceBatches:
        rank, world = self._rank_info()
        tokens, labels = self._splits["train"]
        return DeviceBatches(
            tokens,
            labels,
            self.batch_size,
            self.shuffle,
            self.shuffle_seed,
            rank,
            world,
            self._epoch,
        )

    def val_dataloader(self) -> DeviceBatches:
        rank, world = self._rank_info()
        tokens, labels = self._splits["val"]
        return DeviceBatches(tokens, labels, None, False, 0, rank, world)
