"""TinyTransformer's hook-free fast path (``forward(tokens, last_only=True)``, issue #24) equals the
hooked forward within float32 rounding, forward and gradients, in training mode; it runs only
when no hook is attached anywhere it skips; it stays deterministic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from project.models.tiny_transformer import TinyTransformer, TinyTransformerConfig

CONFIGS = {
    "default": TinyTransformerConfig(d_vocab=32, d_vocab_out=31),
    "2 layers, layernorm, attn bias": TinyTransformerConfig(
        d_vocab=32, d_vocab_out=31, n_layers=2, layernorm=True, attn_bias=True
    ),
    "attention-only": TinyTransformerConfig(d_vocab=32, d_vocab_out=31, d_mlp=0),
    "gelu, no mlp bias, unembed bias, 6 positions": TinyTransformerConfig(
        d_vocab=20,
        d_vocab_out=20,
        n_ctx=6,
        d_model=48,
        n_heads=3,
        d_head=16,
        d_mlp=64,
        act="gelu",
        mlp_bias=False,
        unembed_bias=True,
        layernorm=True,
    ),  # fmt: skip
}


def make(cfg: TinyTransformerConfig, seed: int = 0) -> TinyTransformer:
    torch.manual_seed(seed)
    net = TinyTransformer(cfg).train()
    with torch.no_grad():  # non-zero biases and LayerNorm weights so they are exercised
        for name, p in net.named_parameters():
            if name.endswith((".b_Q", ".b_K", ".b_V", ".b_O", "b_in", "b_out", "b_U", ".w", ".b")):
                p.add_(0.1 * torch.randn_like(p))
    return net


def batch(cfg: TinyTransformerConfig, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg.d_vocab, (n, cfg.n_ctx), generator=g)
    return tokens, torch.randint(0, cfg.d_vocab_out, (n,), generator=g)


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    calls: list[int] = []
    original = TinyTransformer._forward_last_fast

    def counted(self: TinyTransformer, tokens: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return original(self, tokens)

    monkeypatch.setattr(TinyTransformer, "_forward_last_fast", counted)
    yield calls


def loss_and_grads(
    net: TinyTransformer, tokens: torch.Tensor, labels: torch.Tensor, hooked: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    net.zero_grad(set_to_none=True)
    if hooked:  # the hooked path: a no-op hook on every HookPoint
        with net.hooks(fwd_hooks=[(lambda name: True, lambda act, hook: None)]):
            logits = net(tokens, last_only=True)
    else:
        logits = net(tokens, last_only=True)
    assert logits.shape == (len(tokens), 1, net.cfg.d_vocab_out)
    F.cross_entropy(logits[:, -1].double(), labels).backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return logits.detach(), grads


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_fast_path_equals_the_hooked_forward_and_its_gradients(
    cfg: TinyTransformerConfig, fast_calls: list[int]
) -> None:
    net = make(cfg)
    tokens, labels = batch(cfg)
    fast, fast_grads = loss_and_grads(net, tokens, labels, hooked=False)
    assert len(fast_calls) == 1
    slow, slow_grads = loss_and_grads(net, tokens, labels, hooked=True)
    assert len(fast_calls) == 1  # the hooked call did not take the fast path
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast, net(tokens)[:, -1:].detach(), rtol=1e-5, atol=1e-5)
    assert fast_grads.keys() == slow_grads.keys() == dict(net.named_parameters()).keys()
    for name in slow_grads:
        torch.testing.assert_close(fast_grads[name], slow_grads[name], rtol=1e-4, atol=1e-6)


def test_cache_and_hooks_see_the_full_forward(fast_calls: list[int]) -> None:
    cfg = CONFIGS["default"]
    net = make(cfg)
    tokens, _ = batch(cfg, 8)
    full = net(tokens)
    out, cache = net.run_with_cache(tokens, last_only=True)
    assert not fast_calls
    assert cache["blocks.0.mlp.hook_post"].shape == (8, 3, cfg.d_mlp)
    assert cache["blocks.0.attn.hook_pattern"].shape == (8, 4, 3, 3)
    torch.testing.assert_close(out, full[:, -1:])
    # a hook that changes the activation changes the output: the hooked forward ran
    zeroed = net.run_with_hooks(
        tokens, last_only=True, fwd_hooks=[("blocks.0.hook_mlp_out", lambda a, hook: a * 0)]
    )
    assert not fast_calls and not torch.allclose(zeroed, out)
    net(tokens, last_only=True)
    assert len(fast_calls) == 1  # hooks removed: fast again


def _register(kind: str, net: TinyTransformer, fired: list[str]) -> Any:
    def fwd(*args: Any, **kwargs: Any) -> None:
        fired.append(kind)

    def bwd(*args: Any, **kwargs: Any) -> None:
        fired.append(kind)

    mlp = net.blocks[0].mlp
    assert mlp is not None
    if kind == "hookpoint bwd":
        return net.hook_dict["blocks.0.hook_resid_mid"].add_hook(bwd, dir="bwd")
    if kind == "module fwd":  # a non-HookPoint submodule the fast path skips calling
        return mlp.register_forward_hook(fwd)
    if kind == "module fwd pre":
        return net.blocks[0].attn.register_forward_pre_hook(fwd)
    if kind == "module bwd":
        return mlp.register_full_backward_hook(bwd)
    if kind == "module bwd pre":
        return mlp.register_full_backward_pre_hook(bwd)
    if kind == "global fwd":
        return torch.nn.modules.module.register_module_forward_hook(fwd)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "hookpoint bwd",
        "module fwd",
        "module fwd pre",
        "module bwd",
        "module bwd pre",
        "global fwd",
    ],
)
def test_any_hook_the_fast_path_would_skip_disables_it(kind: str, fast_calls: list[int]) -> None:
    cfg = CONFIGS["default"]
    net = make(cfg)
    tokens, labels = batch(cfg, 8)
    fired: list[str] = []
    handle = _register(kind, net, fired)
    try:
        assert net.hooks_attached()
        F.cross_entropy(net(tokens, last_only=True)[:, -1], labels).backward()
    finally:
        handle.remove()
    assert not fast_calls and fired
    assert not net.hooks_attached()


def test_fast_path_is_deterministic_run_to_run() -> None:
    """Same seed -> bit-identical weights after a few AdamW steps on the fast path (CPU)."""

    def train() -> dict[str, torch.Tensor]:
        cfg = CONFIGS["2 layers, layernorm, attn bias"]
        net = make(cfg)
        tokens, labels = batch(cfg, 128)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1.0)
        for _ in range(5):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(tokens, last_only=True)[:, -1].double(), labels).backward()
            opt.step()
        return {k: v.clone() for k, v in net.state_dict().items()}

    a, b = train(), train()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_parameter_names_and_shapes_unchanged() -> None:
    net = TinyTransformer(CONFIGS["default"])
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == {
        "embed.W_E": (32, 128),
        "pos_embed.W_pos": (3, 128),
        "blocks.0.attn.W_Q": (4, 128, 32),
        "blocks.0.attn.W_K": (4, 128, 32),
        "blocks.0.attn.W_V": (4, 128, 32),
        "blocks.0.attn.W_O": (4, 32, 128),
        "blocks.0.mlp.W_in": (128, 512),
        "blocks.0.mlp.W_out": (512, 128),
        "blocks.0.mlp.b_in": (512,),
        "blocks.0.mlp.b_out": (128,),
        "unembed.W_U": (128, 31),
    }
