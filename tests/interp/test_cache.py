"""Cache ergonomics: Site masks, names filters, stacks that add up to the real forward pass."""

from __future__ import annotations

import pytest
import torch

from project.interp.cache import (
    Site,
    accumulated_resid,
    decompose_resid,
    head_axis,
    logit_attribution,
    pos_axis,
    resolve_names,
    stack_activation,
    stack_head_results,
)
from project.models.tiny_transformer import TinyTransformer


@pytest.fixture(scope="module")
def deep():
    """Random 2-layer model with every optional part (LayerNorm, attention/unembed biases)."""
    torch.manual_seed(0)
    model = TinyTransformer(
        n_layers=2,
        d_model=16,
        n_heads=2,
        d_head=8,
        d_mlp=32,
        d_vocab=8,
        d_vocab_out=7,
        layernorm=True,
        attn_bias=True,
        unembed_bias=True,
    ).eval()
    with torch.no_grad():  # non-trivial biases and LayerNorm weights
        for name, param in model.named_parameters():
            if name.endswith(("b_Q", "b_K", "b_V", "b_O", "b_U", ".w", ".b")):
                param.add_(0.3 * torch.randn_like(param))
    tokens = torch.randint(0, 7, (10, 3))
    tokens[:, -1] = 7
    return model, tokens


def test_head_and_pos_axes_follow_hook_shapes(grokked):
    _, cache = grokked.model.run_with_cache(grokked.tokens[:2])
    n_heads, n_pos = 4, 3
    for name, act in cache.items():
        axis = head_axis(name)
        if axis is not None:
            assert act.shape[axis] == n_heads, name
        assert act.shape[pos_axis(name)] == n_pos, name
    assert head_axis("blocks.0.attn.hook_pattern") == 1
    assert head_axis("blocks.0.attn.hook_z") == 2
    assert head_axis("blocks.0.hook_resid_post") is None


def test_site_mask_selects_exactly_the_slice():
    shape = (5, 3, 4, 6)  # [batch, pos, head, d_head]
    mask = Site("blocks.0.attn.hook_z", head=[1, 3], pos=2, neuron=0).mask(shape)
    full = mask.expand(shape)
    expected = torch.zeros(shape, dtype=torch.bool)
    expected[:, 2, [1, 3], 0] = True
    assert torch.equal(full, expected)
    pattern = (
        Site("blocks.0.attn.hook_pattern", head=-1, pos=1).mask((2, 4, 3, 3)).expand(2, 4, 3, 3)
    )
    expected = torch.zeros(2, 4, 3, 3, dtype=torch.bool)
    expected[:, 3, 1, :] = True
    assert torch.equal(pattern, expected)
    assert (
        Site("blocks.0.attn.hook_z", head=[1, 3], pos=2).label
        == "blocks.0.attn.hook_z[head=[1,3],pos=2]"
    )
    with pytest.raises(IndexError, match="pos=3 out of range for hook 'x'"):
        Site("x", pos=3).mask((2, 3, 4))
    with pytest.raises(ValueError, match="head=0 given for hook 'blocks.0.hook_mlp_out'"):
        Site("blocks.0.hook_mlp_out", head=0)


def test_resolve_names_accepts_str_list_callable_and_reports_unknown(grokked):
    names = list(grokked.model.hook_dict)
    assert resolve_names(names, "blocks.0.hook_mlp_out") == ["blocks.0.hook_mlp_out"]
    assert resolve_names(names, ["blocks.0.hook_resid_post", ("pattern", 0)]) == [
        "blocks.0.attn.hook_pattern",
        "blocks.0.hook_resid_post",
    ]  # forward order
    assert resolve_names(names, lambda n: n.endswith("hook_z")) == ["blocks.0.attn.hook_z"]
    assert resolve_names(names, None) == names
    with pytest.raises(KeyError, match="unknown hook name\\(s\\) 'blocks.0.hook_nope'; available:"):
        resolve_names(names, ["blocks.0.hook_nope"])


def test_stacks_add_up_to_the_forward_pass(deep):
    model, tokens = deep
    logits, cache = model.run_with_cache(tokens)
    stacked = stack_activation(cache, "resid_post")
    assert stacked.shape == (2, 10, 3, 16)
    assert torch.equal(stacked[1], cache["blocks.1.hook_resid_post"])
    acc, labels = accumulated_resid(cache, pos=-1, incl_mid=True)
    assert labels == ["0_pre", "0_mid", "1_pre", "1_mid", "final_post"]
    assert torch.equal(acc[2], cache["blocks.1.hook_resid_pre"][:, -1])
    parts, labels = decompose_resid(cache)
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]
    assert torch.allclose(parts.sum(0), cache["blocks.1.hook_resid_post"], atol=1e-5)
    heads, labels = stack_head_results(cache, model)
    assert labels == ["L0H0", "L0H1", "L1H0", "L1H1"]
    for layer in range(2):
        b_o = model.get_parameter(f"blocks.{layer}.attn.b_O")
        total = heads[2 * layer : 2 * layer + 2].sum(0) + b_o
        assert torch.allclose(total, cache[f"blocks.{layer}.hook_attn_out"], atol=1e-5)
    with pytest.raises(KeyError, match="cache lacks"):
        stack_activation(cache.__class__({"blocks.0.hook_mlp_out": parts[0]}), "resid_post")


def test_logit_attribution_sums_to_the_answer_logit(grokked, deep):
    g = grokked
    logits, cache = g.model.run_with_cache(g.tokens)
    parts, _ = decompose_resid(cache, pos=-1)
    attribution = logit_attribution(parts, g.model, g.labels)
    answer = logits[:, -1].gather(1, g.labels[:, None])[:, 0]
    assert torch.allclose(attribution.sum(0), answer, atol=1e-4)
    # with ln_final: the stack is centred and scaled, so it sums to the logit minus b_U and the
    # LayerNorm bias term
    model, tokens = deep
    logits, cache = model.run_with_cache(tokens)
    labels = torch.arange(10) % 7
    parts, _ = decompose_resid(cache, pos=-1)
    attribution = logit_attribution(parts, model, labels, cache=cache)
    w_u = model.get_parameter("unembed.W_U")
    rest = (model.ln_final.b @ w_u + model.unembed.b_U)[labels]
    answer = logits[:, -1].gather(1, labels[:, None])[:, 0]
    assert torch.allclose(attribution.sum(0) + rest, answer, atol=1e-4)
    with pytest.raises(ValueError, match="ln_final"):
        logit_attribution(parts, model, labels)


def test_activation_cache_shortcuts(grokked):
    _, cache = grokked.model.run_with_cache(grokked.tokens[:4], names_filter=lambda n: "attn" in n)
    assert torch.equal(cache["pattern", 0], cache["blocks.0.attn.hook_pattern"])
    assert ("pattern", 0) in cache
    assert "blocks.0.hook_resid_post" not in cache


def test_reset_hooks_removes_hand_attached_hooks():
    model = TinyTransformer(d_model=16, n_heads=2, d_head=8, d_mlp=12, d_vocab=6, d_vocab_out=5)
    tokens = torch.tensor([[1, 2, 5]])
    clean = model(tokens)
    model.hook_dict["blocks.0.hook_mlp_out"].add_hook(lambda act, hook: act * 0)
    model.hook_dict["blocks.0.hook_mlp_out"].add_hook(lambda grad, hook: None, dir="bwd")
    assert not torch.equal(model(tokens), clean)
    model.reset_hooks()
    assert torch.equal(model(tokens), clean)
    assert all(not hp._forward_hooks and not hp._backward_hooks for hp in model.hook_dict.values())
