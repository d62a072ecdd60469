"""The L0 -> L1 ablation table (causal evidence for induction) on a small random 2-layer model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from project.interp.composition import induction_ablation_table
from project.interp.induction import head_detector
from project.models.tiny_transformer import TinyTransformer


def setup() -> tuple[TinyTransformer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = TinyTransformer(n_layers=2, d_model=32, n_heads=4, d_mlp=0, d_vocab=20, n_ctx=16)
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(3.0)
        model.get_parameter("blocks.0.attn.W_O")[2].zero_()  # L0H2 writes nothing
    gen = torch.Generator().manual_seed(1)
    first = torch.randint(0, 20, (32, 8), generator=gen)
    tokens = torch.cat([first, first], dim=1)
    labels = torch.full_like(tokens, -100)
    labels[:, 8:-1] = tokens[:, 9:]  # next-token labels on the repeated half
    return model.eval(), tokens, labels


def test_ablation_table_rows_columns_and_known_answers() -> None:
    model, tokens, labels = setup()
    table = induction_ablation_table(model, tokens, labels)
    assert list(table["ablated"]) == ["clean", "L0H0", "L0H1", "L0H2", "L0H3", "L0 all",
                                      "L1H0", "L1H1", "L1H2", "L1H3", "L1 all"]  # fmt: skip
    ind = [f"induction_L1H{h}" for h in range(4)]
    clean = table.iloc[0]
    scores = head_detector(model, tokens)  # TransformerLens normalisation by default
    np.testing.assert_allclose(clean[ind].to_numpy(float), scores[scores.layer == 1].induction,
                               atol=1e-6)  # fmt: skip
    dead = table[table.ablated == "L0H2"].iloc[0]  # mean of a zero output is zero: no change
    for col in ("d_loss", "d_acc", *[f"d_{c}" for c in ind]):
        assert dead[col] == pytest.approx(0.0, abs=1e-6), col
    every = table[table.ablated == "L0 all"].iloc[0]  # the L1 keys depend on the L0 outputs
    assert max(abs(every[f"d_{c}"]) for c in ind) > 1e-3
    assert every["d_loss"] != 0.0
    assert {"loss", "acc", "d_loss", "d_acc"} <= set(table.columns)


def test_one_layer_model_is_rejected() -> None:
    model = TinyTransformer(n_layers=1, d_model=16, n_heads=2, d_mlp=0, d_vocab=10, n_ctx=6)
    tokens = torch.zeros(2, 6, dtype=torch.long)
    with pytest.raises(ValueError, match="induction needs >= 2 layers"):
        induction_ablation_table(model, tokens, tokens)
