"""Online training data: fresh samples every step, for tasks with an unlimited supply.

``OnlineBatches(task, sample)`` yields ``task.steps_per_epoch`` batches of ``task.batch_size``
fresh examples per epoch, drawn with ``sample(n, generator) -> (tokens, labels)`` from a stream
seeded by ``(task.shuffle_seed, epoch)``: a resumed run sees the same stream. The epoch is read when
iteration starts (Lightning builds the train loader once and iterates it every epoch). Under DDP
each rank takes a disjoint shard of the global batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from project.data.base import Batch

Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class OnlineBatches:
    def __init__(self, task: Any, sample: Sampler) -> None:
        self.task, self.sample = task, sample

    def __len__(self) -> int:
        return int(self.task.steps_per_epoch)

    def __iter__(self) -> Iterator[Batch]:
        task = self.task
        seed = int(task.shuffle_seed) * 1_000_003 + int(task._epoch()) + 1
        gen = torch.Generator().manual_seed(seed)
        rank, world = task._rank_info()
        for _ in range(int(task.steps_per_epoch)):
            tokens, labels = self.sample(int(task.batch_size), gen)
            if world > 1:
                tokens, labels = tokens[rank::world], labels[rank::world]
            yield tokens.to(task.device), labels.to(task.device)


def check_online_batch_size(online: bool, batch_size: Any) -> None:
    if online and batch_size in (None, -1):
        raise ValueError(
            f"batch_size={batch_size!r} is invalid: allowed a positive integer when online=true "
            "(fresh samples every step; there is no full batch)"
        )


__all__ = ["OnlineBatches", "Sampler", "check_online_batch_size"]
