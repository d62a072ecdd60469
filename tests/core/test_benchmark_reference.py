"""The benchmarks' strong loop runs the template's model, written for speed: same logits."""

from __future__ import annotations

import torch
from benchmarks._common import (
    PlainLoop,
    StrongLoop,
    StrongNet,
    default_data,
    plain_model,
    run_epochs,
)


def strong_from_tiny(tiny: torch.nn.Module) -> StrongNet:
    """``StrongNet`` holding ``tiny``'s weights (TransformerLens layout -> ``F.linear`` layout)."""
    w = tiny.state_dict()
    n_heads, d_model, d_head = w["blocks.0.attn.W_Q"].shape
    strong = StrongNet(n_heads=n_heads, d_model=d_model)

    def qkv(name: str) -> torch.Tensor:  # [head, d_model, d_head] -> [head * d_head, d_model]
        return w[f"blocks.0.attn.{name}"].permute(0, 2, 1).reshape(n_heads * d_head, d_model)

    mapped = {
        "W_E": w["embed.W_E"],
        "W_pos": w["pos_embed.W_pos"],
        "W_q": qkv("W_Q"),
        "W_kv": torch.cat([qkv("W_K"), qkv("W_V")]),
        "W_o": w["blocks.0.attn.W_O"].reshape(n_heads * d_head, d_model).T,
        "W_in": w["blocks.0.mlp.W_in"].T,
        "b_in": w["blocks.0.mlp.b_in"],
        "W_out": w["blocks.0.mlp.W_out"].T,
        "b_out": w["blocks.0.mlp.b_out"],
        "W_U": w["unembed.W_U"].T,
    }
    strong.load_state_dict({k: v.contiguous() for k, v in mapped.items()})
    return strong


def test_strong_net_computes_the_template_model_last_position() -> None:
    tiny = plain_model(seed=1)
    strong = strong_from_tiny(tiny)
    tokens = default_data()[0][:512]
    with torch.no_grad():
        expected = tiny(tokens)[:, -1]
        assert torch.allclose(strong(tokens), expected, atol=1e-5, rtol=0)
        # the last-position fast path (no hooks) equals it within float32 rounding (issue #24)
        torch.testing.assert_close(
            tiny(tokens, last_only=True)[:, -1], expected, rtol=1e-5, atol=1e-5
        )


def test_reference_loops_train_on_minibatches_and_full_batch() -> None:
    x, y, x_val, y_val = default_data(modulus=23)
    data = (x, y, x_val, y_val)
    for loop in (StrongLoop(modulus=23), PlainLoop(plain_model(modulus=23), last_only=True)):
        before = loop.validate(x, y)[0]
        assert run_epochs(loop, data, 3, val_every=10, batch_size=50) > 0
        assert run_epochs(loop, data, 3, val_every=1) > 0
        assert loop.validate(x, y)[0] < before  # 18 steps fitted the train split
