"""A user's ``WandbLogger`` subclass, named by ``logger._target_`` in a test."""

from typing import Any

from lightning.pytorch.loggers import WandbLogger


class TaggedWandbLogger(WandbLogger):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tagged = True
