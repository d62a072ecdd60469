"""TinyTransformer + HookPoints: caches equal what the forward computes; hooks compose and clean up."""

from __future__ import annotations

import math

import pytest
import torch

from project.models.tiny_transformer import TinyTransformer, TinyTransformerConfig

TL_NAMES = [
    "hook_embed",
    "hook_pos_embed",
    "blocks.0.hook_resid_pre",
    "blocks.0.attn.hook_q",
    "blocks.0.attn.hook_k",
    "blocks.0.attn.hook_v",
    "blocks.0.attn.hook_attn_scores",
    "blocks.0.attn.hook_pattern",
    "blocks.0.attn.hook_z",
    "blocks.0.hook_attn_out",
    "blocks.0.hook_resid_mid",
    "blocks.0.mlp.hook_pre",
    "blocks.0.mlp.hook_post",
    "blocks.0.hook_mlp_out",
    "blocks.0.hook_resid_post",
]


@pytest.fixture
def model() -> TinyTransformer:
    torch.manual_seed(0)
    return TinyTransformer(TinyTransformerConfig(d_vocab=24, d_vocab_out=23)).eval()


@pytest.fixture
def tokens() -> torch.Tensor:
    a, b = torch.randint(0, 23, (2, 16))
    return torch.stack([a, b, torch.full_like(a, 23)], dim=1)


def test_hook_names_are_transformerlens_names(model: TinyTransformer) -> None:
    assert sorted(model.hook_names) == sorted(TL_NAMES)
    ln = TinyTransformer(TinyTransformerConfig(layernorm=True, n_layers=2))
    assert (
        "ln_final.hook_normalized" in ln.hook_names and "blocks.1.ln2.hook_scale" in ln.hook_names
    )


def test_cache_equals_a_manual_forward(model: TinyTransformer, tokens: torch.Tensor) -> None:
    logits, cache = model.run_with_cache(tokens)
    assert set(cache) == set(TL_NAMES)
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    resid = model.embed.W_E[tokens] + model.pos_embed.W_pos[:3]
    q = torch.einsum("bpd,hde->bphe", resid, attn.W_Q)
    k = torch.einsum("bpd,hde->bphe", resid, attn.W_K)
    v = torch.einsum("bpd,hde->bphe", resid, attn.W_V)
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(32)
    scores = scores.masked_fill(torch.triu(torch.ones(3, 3, dtype=torch.bool), 1), -math.inf)
    pattern = scores.softmax(-1)
    z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
    attn_out = torch.einsum("bqhe,hed->bqd", z, attn.W_O)
    mid = resid + attn_out
    pre = mid @ mlp.W_in + mlp.b_in
    post = pre.relu()
    mlp_out = post @ mlp.W_out + mlp.b_out
    final = mid + mlp_out
    expected = {
        "blocks.0.hook_resid_pre": resid,
        "blocks.0.attn.hook_q": q,
        "blocks.0.attn.hook_k": k,
        "blocks.0.attn.hook_v": v,
        "blocks.0.attn.hook_attn_scores": scores,
        "blocks.0.attn.hook_pattern": pattern,
        "blocks.0.attn.hook_z": z,
        "blocks.0.hook_attn_out": attn_out,
        "blocks.0.hook_resid_mid": mid,
        "blocks.0.mlp.hook_pre": pre,
        "blocks.0.mlp.hook_post": post,
        "blocks.0.hook_mlp_out": mlp_out,
        "blocks.0.hook_resid_post": final,
    }
    for name, value in expected.items():
        torch.testing.assert_close(cache[name], value, msg=name)
    torch.testing.assert_close(logits, final @ model.unembed.W_U)
    assert cache["pattern", 0] is cache["blocks.0.attn.hook_pattern"]
    assert cache["pattern", 0].shape == (16, 4, 3, 3) and cache["z", 0].shape == (16, 3, 4, 32)


def test_names_filter_forms(model: TinyTransformer, tokens: torch.Tensor) -> None:
    _, by_str = model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_pattern")
    _, by_list = model.run_with_cache(tokens, names_filter=["hook_embed", "blocks.0.hook_mlp_out"])
    _, by_fn = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("resid_post"))
    assert list(by_str) == ["blocks.0.attn.hook_pattern"]
    assert set(by_list) == {"hook_embed", "blocks.0.hook_mlp_out"}
    assert list(by_fn) == ["blocks.0.hook_resid_post"]


def test_returned_tensor_replaces_activation_and_hooks_are_removed(
    model: TinyTransformer, tokens: torch.Tensor
) -> None:
    clean = model(tokens)
    seen = []

    def zero_mlp(act: torch.Tensor, hook) -> torch.Tensor:
        seen.append(hook.name)
        return torch.zeros_like(act)

    patched = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_mlp_out", zero_mlp)])
    assert seen == ["blocks.0.hook_mlp_out"]
    assert not torch.allclose(patched, clean)
    _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(patched, cache["blocks.0.hook_resid_mid"] @ model.unembed.W_U)
    torch.testing.assert_close(model(tokens), clean)  # nothing left attached
    assert all(not hp._forward_hooks for hp in model.hook_dict.values())


def test_hooks_removed_when_forward_raises_and_nesting_works(
    model: TinyTransformer, tokens: torch.Tensor
) -> None:
    def boom(act, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", boom)])
    assert all(not hp._forward_hooks for hp in model.hook_dict.values())

    calls: list[str] = []
    with model.hooks(fwd_hooks=[("hook_embed", lambda a, hook: calls.append("outer"))]):
        with model.hooks(
            fwd_hooks=[(lambda n: n == "hook_embed", lambda a, hook: calls.append("inner"))]
        ):
            model(tokens)
        model(tokens)
    model(tokens)
    assert calls == ["outer", "inner", "outer"]


def test_backward_hooks_see_gradients(model: TinyTransformer, tokens: torch.Tensor) -> None:
    grads = {}
    with model.hooks(
        bwd_hooks=[("blocks.0.hook_resid_post", lambda g, hook: grads.setdefault(hook.name, g))]
    ):
        model(tokens)[:, -1].logsumexp(-1).sum().backward()
    assert grads["blocks.0.hook_resid_post"].shape == (16, 3, 128)
    assert all(not hp._backward_hooks for hp in model.hook_dict.values())


def test_unknown_hook_name_is_a_clear_error(model: TinyTransformer, tokens: torch.Tensor) -> None:
    with pytest.raises(KeyError, match="no hook point 'blocks.0.hook_nope'"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_nope", lambda a, hook: a)])


def test_fresh_model_loss_is_about_log_p() -> None:
    # known answer: an untrained model predicts ~uniformly over the 113 residues -> loss ~ ln 113
    torch.manual_seed(0)
    model = TinyTransformer()
    idx = torch.arange(113 * 113)
    tokens = torch.stack([idx // 113, idx % 113, torch.full_like(idx, 113)], 1)
    labels = (idx // 113 + idx % 113) % 113
    loss = torch.nn.functional.cross_entropy(model(tokens)[:, -1], labels)
    assert abs(loss.item() - math.log(113)) < 0.3


@pytest.mark.parametrize(
    "cfg",
    [TinyTransformerConfig(), TinyTransformerConfig(n_layers=2, layernorm=True, attn_bias=True)],
)
def test_last_only_forward_equals_full_forward(
    cfg: TinyTransformerConfig, tokens: torch.Tensor
) -> None:
    torch.manual_seed(1)
    model = TinyTransformer(cfg)
    full = model(tokens)
    fast = model(tokens, last_only=True)
    assert fast.shape == (16, 1, cfg.d_vocab_out)
    torch.testing.assert_close(fast, full[:, -1:], rtol=1e-5, atol=1e-5)
    # with a hook attached the full forward runs: the hook sees every position
    seen = {}

    def record(act: torch.Tensor, hook) -> None:
        seen["s"] = act.shape

    out = model.run_with_hooks(
        tokens, last_only=True, fwd_hooks=[("blocks.0.mlp.hook_post", record)]
    )
    assert seen["s"] == (16, 3, cfg.d_mlp)
    torch.testing.assert_close(out, full[:, -1:])
