"""The logged epoch metrics are exact token-weighted means over the split, however it is batched."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from project.data.modular import ModularDataModule
from project.lit_module import LitCausalLM
from project.models.tiny_transformer import TinyTransformer, TinyTransformerConfig


def split_loss_and_acc(net: torch.nn.Module, data: ModularDataModule, split: str) -> tuple:
    tokens, labels = data.split(split)
    with torch.no_grad():
        logits = net(tokens)[:, -1].double()
    answers = labels[:, -1]
    return F.cross_entropy(logits, answers).item(), (logits.argmax(-1) == answers).double().mean()


def test_epoch_metrics_are_token_weighted_means_over_uneven_batches() -> None:
    torch.manual_seed(0)
    net = TinyTransformer(
        TinyTransformerConfig(
            d_vocab=24, d_vocab_out=23, d_model=32, n_heads=2, d_head=16, d_mlp=64
        )
    )
    # lr 0: every batch sees the same weights, so the epoch means are the split's means
    module = LitCausalLM(net=net, optimizer=functools.partial(torch.optim.SGD, lr=0.0))
    data = ModularDataModule(modulus=23, frac_train=0.5, batch_size=50)  # 264 train: 5 x 50 + 14
    data.eval_batch_size = 70  # 265 val: 3 x 70 + 55
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=data)
    assert trainer.num_training_batches == 6 and trainer.num_val_batches == [4]

    logged = trainer.callback_metrics
    for split in ("train", "val"):
        loss, acc = split_loss_and_acc(net, data, split)
        assert logged[f"{split}/loss"].item() == pytest.approx(loss, rel=1e-9)
        assert logged[f"{split}/acc"].item() == pytest.approx(acc.item(), abs=1e-12)
