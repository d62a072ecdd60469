"""LightningModule: TinyTransformer trained with cross-entropy at the supervised (last) position.

Metrics are accumulated on the device as sums and logged once per epoch (``train/loss``,
``train/acc``, ``val/loss``, ``val/acc``, ``lr``): no host sync per step, and exact
(count-weighted, all-reduced) values under DDP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from project.models.tiny_transformer import TinyTransformer, TinyTransformerConfig
from project.optim import LinearWarmup, make_grad_filter

Batch = tuple[torch.Tensor, torch.Tensor]  # tokens [batch, pos], labels [batch]


class NonFiniteLossError(RuntimeError):
    pass


class LitCausalLM(L.LightningModule):
    def __init__(
        self,
        d_vocab: int = 114,
        n_ctx: int = 3,
        d_vocab_out: int = 113,
        n_layers: int = 1,
        d_model: int = 128,
        n_heads: int = 4,
        d_head: int | None = None,
        d_mlp: int = 512,
        act: str = "relu",
        layernorm: bool = False,
        attn_bias: bool = False,
        mlp_bias: bool = True,
        unembed_bias: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 1.0,
        betas: tuple[float, float] | list[float] = (0.9, 0.98),
        warmup_steps: int = 10,
        loss_dtype: str = "float64",
        grokfast: str | None = None,
        grokfast_alpha: float = 0.98,
        grokfast_lamb: float = 2.0,
        grokfast_window: int = 100,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.hparams["d_head"] = d_head or d_model // n_heads  # checkpoints carry the real size
        self.net_config = TinyTransformerConfig(
            d_vocab=d_vocab,
            n_ctx=n_ctx,
            d_vocab_out=d_vocab_out,
            n_layers=n_layers,
            d_model=d_model,
            n_heads=n_heads,
            d_head=d_head or d_model // n_heads,
            d_mlp=d_mlp,
            act=act,
            layernorm=layernorm,
            attn_bias=attn_bias,
            mlp_bias=mlp_bias,
            unembed_bias=unembed_bias,
        )
        self.net = TinyTransformer(self.net_config)
        self.loss_dtype = {"float32": torch.float32, "float64": torch.float64}[loss_dtype]
        self.grad_filter = make_grad_filter(
            grokfast, grokfast_alpha, grokfast_lamb, grokfast_window
        )
        # kept out of the module tree so the state_dict has no duplicate ``_orig_mod`` keys
        self.__dict__["_forward"] = torch.compile(self.net) if compile else self.net
        self._forward: Callable[..., torch.Tensor]
        self._sums: dict[str, torch.Tensor] = {}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, pos] -> logits [batch, pos, d_vocab_out]."""
        return self._forward(tokens)

    def loss_and_correct(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy and number of correct answers at the last position."""
        tokens, labels = batch
        logits = self._forward(tokens, last_only=True)[:, -1]
        loss = F.cross_entropy(logits.to(self.loss_dtype), labels)
        correct = (logits.argmax(-1) == labels).sum()
        return loss, correct

    def _accumulate(self, split: str, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        row = torch.stack(
            [loss.detach().double() * n, correct.double(), loss.new_tensor(n).double()]
        )
        self._sums[split] = self._sums[split] + row if split in self._sums else row

    def _log_split(self, split: str) -> None:
        sums = self._sums.pop(split, None)
        if sums is None:
            return
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums.clone(), reduce_op="sum")
        loss, acc = sums[0] / sums[2], sums[1] / sums[2]
        if split == "train" and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite train loss ({loss.item()}) at epoch {self.current_epoch}"
            )
        self.log_dict(
            {f"{split}/loss": loss.float(), f"{split}/acc": acc.float()},
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            rank_zero_only=True,
        )

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, correct = self.loss_and_correct(batch)
        self._accumulate("train", loss, correct, len(batch[1]))
        self._lr = self.trainer.optimizers[0].param_groups[0]["lr"]  # the lr this step uses
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, correct = self.loss_and_correct(batch)
        self._accumulate("val", loss, correct, len(batch[1]))

    def on_train_epoch_end(self) -> None:
        self._log_split("train")
        if hasattr(self, "_lr"):
            self.log("lr", self._lr, on_step=False, on_epoch=True, rank_zero_only=True)

    def on_validation_epoch_end(self) -> None:
        self._log_split("val")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.grad_filter is not None:
            self.grad_filter.apply(self.net)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=hp["lr"],
            weight_decay=hp["weight_decay"],
            betas=tuple(hp["betas"]),
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LinearWarmup(hp["warmup_steps"]))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.grad_filter is not None:
            checkpoint["grad_filter"] = self.grad_filter.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.grad_filter is not None and "grad_filter" in checkpoint:
            self.grad_filter.load_state_dict(checkpoint["grad_filter"])
