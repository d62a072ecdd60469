"""TransformerLens equivalence: same logits (atol 1e-5) and the same activation at every hook
name both models have.

Conventions compared: attention scores are scaled by 1/sqrt(d_head) and causally masked with
-inf in both implementations (TL 2.x ``IGNORE = -inf``); ``torch.allclose`` treats equal
infinities as equal, so the masked entries are compared too. Documented TL >= 4 difference: the
native ``TransformerBridge`` fires ``hook_attn_scores`` with the post-softmax weights, so there it
is compared with our ``hook_pattern``. LayerNorm ``hook_normalized`` is ``x / scale`` before ``w``
and ``b`` in ours and in TL >= 4; TL 2.x's unfolded ``LayerNorm`` hooks it after ``w`` and ``b``,
so on TL 2.x the affine map is applied to ours before comparing.
"""

from __future__ import annotations

import os

import pytest
import torch

from project.models.tiny_transformer import TinyTransformer

if os.environ.get("REQUIRE_TRANSFORMER_LENS"):  # .ci/run's interop step: missing = a failure
    import transformer_lens  # noqa: F401
else:
    pytest.importorskip("transformer_lens", reason="uv sync --group tl")

from project.interp.tl_export import tl_major_version, to_hooked_transformer  # noqa: E402

ATOL = 1e-5


def compare(ours: TinyTransformer, tokens: torch.Tensor) -> tuple[torch.nn.Module, list[str]]:
    tl_model = to_hooked_transformer(ours)
    with torch.no_grad():
        our_logits, our_cache = ours.run_with_cache(tokens)
        tl_logits, tl_cache = tl_model.run_with_cache(tokens)
    assert tl_logits.shape == our_logits.shape
    assert torch.allclose(tl_logits, our_logits, atol=ATOL), float(
        (tl_logits - our_logits).abs().max()
    )
    shared = [name for name in our_cache if name in tl_cache]
    for name in shared:
        ours_act, theirs = our_cache[name], tl_cache[name]
        if name.endswith("hook_attn_scores") and tl_major_version() >= 4:
            ours_act = our_cache[name.replace("hook_attn_scores", "hook_pattern")]
        if name.endswith("hook_normalized") and tl_major_version() < 4:
            # TL 2.x's unfolded LayerNorm hooks after w and b; ours (and TL 4's) before them
            ln = ours.get_submodule(name.rsplit(".", 1)[0])
            ours_act = ours_act * ln.w + ln.b
        assert theirs.shape == ours_act.shape, name
        assert torch.allclose(theirs, ours_act, atol=ATOL), name
    return tl_model, shared


def test_grokked_model_matches_transformer_lens(grokked):
    tl_model, shared = compare(grokked.model, grokked.tokens)
    # every hook of the Nanda architecture exists in TransformerLens under the same name
    assert set(grokked.model.hook_dict) <= set(shared)
    # masked attention entries are -inf in both caches
    _, our_cache = grokked.model.run_with_cache(grokked.tokens[:2])
    assert torch.isinf(our_cache["blocks.0.attn.hook_attn_scores"][0, 0, 0, 1])


def test_all_optional_parts_convert():
    """2 layers, LayerNorm, GELU, attention and unembed biases, no MLP biases."""
    torch.manual_seed(0)
    model = TinyTransformer(
        n_layers=2,
        d_model=32,
        n_heads=2,
        d_head=16,
        d_mlp=48,
        d_vocab=12,
        d_vocab_out=11,
        act="gelu",
        layernorm=True,
        attn_bias=True,
        unembed_bias=True,
        mlp_bias=False,
    ).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("b_Q", "b_K", "b_V", "b_O", "b_U", ".w", ".b")):
                param.add_(0.5 * torch.randn_like(param))
    tokens = torch.randint(0, 12, (16, 3))
    _, shared = compare(model, tokens)
    for name in (
        "blocks.1.attn.hook_z",
        "blocks.1.mlp.hook_post",
        "blocks.1.hook_resid_post",
        "blocks.1.ln2.hook_normalized",
        "ln_final.hook_scale",
    ):
        assert name in shared


def test_attention_only_model_converts():
    """d_mlp=0 (model=attn_only, the induction preset): TL must build no MLP. Before attn_only
    was passed, TL 4's bridge added one and the logits differed by 1.2 (at the init)."""
    torch.manual_seed(0)
    model = TinyTransformer(n_layers=2, d_model=32, n_heads=4, d_mlp=0, d_vocab=20, n_ctx=12)
    _, shared = compare(model.eval(), torch.randint(0, 20, (8, 12)))
    assert "blocks.1.hook_resid_post" in shared and "blocks.1.mlp.hook_post" not in shared


def test_hooks_intervene_identically(grokked):
    """Zero-ablating one head through TL's hooks gives our ablated logits."""
    from project.interp.ablation import Ablation, run_with_ablation

    g = grokked
    tl_model = to_hooked_transformer(g.model)

    def zero_head(act, hook):
        act = act.clone()
        act[:, :, 1] = 0.0
        return act

    with torch.no_grad():
        theirs = tl_model.run_with_hooks(g.tokens, fwd_hooks=[("blocks.0.attn.hook_z", zero_head)])
    ours = run_with_ablation(g.model, g.tokens, Ablation("blocks.0.attn.hook_z", head=1))
    assert not torch.allclose(ours, g.model(g.tokens), atol=1e-3)  # the ablation does something
    assert torch.allclose(theirs, ours, atol=ATOL)


def test_rejects_models_it_cannot_describe():
    with pytest.raises(TypeError, match="TinyTransformer-like model"):
        to_hooked_transformer(torch.nn.Linear(2, 2))
