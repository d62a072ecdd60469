"""Ablation on the grokked model: the science (which parts matter) and the head-axis mechanics."""

from __future__ import annotations

import pytest
import torch

from project.interp.ablation import (
    Ablation,
    ablation_hook,
    ablation_sweep,
    head_ablations,
    layer_ablations,
    neuron_ablations,
    run_with_ablation,
)
from project.interp.metrics import accuracy, answer_prob, logit_diff, loss
from project.models.tiny_transformer import TinyTransformer


def acc_of(g, logits: torch.Tensor) -> float:
    return float(accuracy(logits, g.labels))


@pytest.mark.parametrize("hook", ["blocks.0.hook_mlp_out", "blocks.0.hook_attn_out"])
@pytest.mark.parametrize("kind", ["zero", "mean"])
def test_ablating_whole_mlp_or_attention_drops_to_near_chance(grokked, hook, kind):
    g = grokked
    assert acc_of(g, g.model(g.tokens)) == 1.0
    ablated = acc_of(g, run_with_ablation(g.model, g.tokens, Ablation(hook, kind=kind)))
    assert ablated < 3.0 / g.p, f"{kind}-ablating {hook} left accuracy {ablated:.3f}"


def test_mean_ablating_a_random_direction_barely_moves_accuracy(grokked):
    g = grokked
    direction = torch.randn(g.model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    for pos in (0, 2):
        abl = Ablation("blocks.0.hook_resid_post", kind="mean", pos=pos, direction=direction)
        assert acc_of(g, run_with_ablation(g.model, g.tokens, abl)) >= 0.98


def test_direction_ablation_removes_exactly_that_component(grokked):
    g = grokked
    d = torch.randn(g.model.cfg.d_model, generator=torch.Generator().manual_seed(1))
    unit = d / d.norm()
    _, cache = g.model.run_with_cache(g.tokens, names_filter="blocks.0.hook_resid_mid")
    act = cache["blocks.0.hook_resid_mid"]
    fn = ablation_hook(Ablation("blocks.0.hook_resid_mid", kind="zero", direction=d))
    out = fn(act, None)
    assert torch.allclose(out @ unit, torch.zeros(len(act), act.shape[1]), atol=1e-5)
    residual = act - (act @ unit)[..., None] * unit
    assert torch.allclose(out, residual, atol=1e-5)


def test_zero_ablating_a_dead_neuron_changes_nothing(grokked):
    g = grokked
    _, cache = g.model.run_with_cache(g.tokens, names_filter="blocks.0.mlp.hook_post")
    post = cache["blocks.0.mlp.hook_post"]  # [batch, pos, d_mlp]
    dead = (post.abs().amax((0, 1)) == 0).nonzero().flatten()
    live = post[:, -1].abs().mean(0).argmax()
    clean = g.model(g.tokens)
    if len(dead):
        out = run_with_ablation(
            g.model, g.tokens, Ablation("blocks.0.mlp.hook_post", neuron=int(dead[0]))
        )
        assert torch.equal(out, clean)
    out = run_with_ablation(g.model, g.tokens, Ablation("blocks.0.mlp.hook_post", neuron=int(live)))
    assert not torch.equal(out, clean)


def test_sweep_is_sorted_by_effect_and_complete(grokked):
    g = grokked
    items = (
        layer_ablations(g.model)
        + head_ablations(g.model)
        + neuron_ablations(g.model, neurons=range(8))
    )
    table = ablation_sweep(g.model, g.tokens, lambda lg: accuracy(lg, g.labels), items)
    assert len(table) == len(items) == 2 + 4 + 8
    assert sorted(table["component"]) == sorted(a.label for a in items)
    assert table["component"].is_unique
    effects = table["effect"].abs().to_numpy()
    assert (effects[:-1] >= effects[1:]).all()
    assert (table["baseline"] == 1.0).all()
    assert torch.allclose(
        torch.tensor(table["effect"].to_numpy()),
        torch.tensor((table["metric"] - table["baseline"]).to_numpy()),
    )
    # the two whole-layer ablations matter most in this 1-layer model
    assert set(table["component"][:2]) == {"blocks.0.hook_attn_out", "blocks.0.hook_mlp_out"}
    assert list(table.columns[:3]) == ["component", "hook", "kind"]


def test_head_ablation_of_pattern_changes_only_that_head(grokked):
    """Zero one head's attention pattern: that head's z becomes 0 and the others stay bit-equal;
    the logits equal a manual forward pass that drops that head's output."""
    g = grokked
    m = g.model
    names = ["blocks.0.attn.hook_z", "blocks.0.hook_resid_mid"]
    _, clean = m.run_with_cache(g.tokens, names_filter=names)
    head = 2
    fn = ablation_hook(Ablation("blocks.0.attn.hook_pattern", kind="zero", head=head))
    with m.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", fn)]):
        logits, abl = m.run_with_cache(g.tokens, names_filter=names)
    z_clean, z_abl = clean["blocks.0.attn.hook_z"], abl["blocks.0.attn.hook_z"]
    assert torch.all(z_abl[:, :, head] == 0)
    others = [h for h in range(4) if h != head]
    assert torch.equal(z_abl[:, :, others], z_clean[:, :, others])
    # manual: resid_mid minus head's write z_h @ W_O[h], then the MLP and unembed
    attn = m.blocks[0].attn
    resid_mid = clean["blocks.0.hook_resid_mid"] - z_clean[:, :, head] @ attn.W_O[head]
    assert torch.allclose(abl["blocks.0.hook_resid_mid"], resid_mid, atol=1e-5)
    manual = m.unembed(resid_mid + m.blocks[0].mlp(resid_mid))
    assert torch.allclose(logits, manual, atol=1e-4)


@pytest.mark.parametrize(
    "hook,axis",
    [
        ("blocks.0.attn.hook_z", 2),
        ("blocks.0.attn.hook_v", 2),
        ("blocks.0.attn.hook_attn_scores", 1),
    ],
)
def test_head_axis_mean_ablation_matches_manual_indexing(grokked, hook, axis):
    g = grokked
    _, cache = g.model.run_with_cache(g.tokens, names_filter=hook)
    act = cache[hook]
    ref = act[:100]
    fn = ablation_hook(Ablation(hook, kind="mean", head=1, pos=2), reference=ref)
    out = fn(act.clone(), None)
    expected = act.clone()
    mean = ref.mean(0)
    if axis == 2:  # [batch, pos, head, d_head]
        expected[:, 2, 1] = mean[2, 1]
    else:  # [batch, head, q_pos, k_pos]: pos is the query position
        expected[:, 1, 2] = mean[1, 2]
    assert torch.equal(out, expected)


def test_resample_ablation_is_seeded_and_takes_reference_rows(grokked):
    g = grokked
    hook = "blocks.0.hook_mlp_out"
    _, cache = g.model.run_with_cache(g.tokens, names_filter=hook)
    act, ref = cache[hook][:50], cache[hook][100:140]
    out1 = ablation_hook(Ablation(hook, kind="resample"), reference=ref, seed=3)(act, None)
    out2 = ablation_hook(Ablation(hook, kind="resample"), reference=ref, seed=3)(act, None)
    assert torch.equal(out1, out2)
    for row in out1:  # every example now carries some reference example's activation
        assert any(torch.equal(row, r) for r in ref)


def test_combined_ablations_and_bad_input(grokked):
    g = grokked
    both = [Ablation("blocks.0.attn.hook_z", head=h) for h in range(4)]
    whole = Ablation("blocks.0.attn.hook_z")
    assert torch.equal(
        run_with_ablation(g.model, g.tokens, both), run_with_ablation(g.model, g.tokens, whole)
    )
    listed = Ablation("blocks.0.attn.hook_z", head=[0, 1, 2, 3])
    assert torch.equal(
        run_with_ablation(g.model, g.tokens, listed), run_with_ablation(g.model, g.tokens, whole)
    )
    with pytest.raises(ValueError, match="kind='bogus'.*zero, mean, resample"):
        Ablation("blocks.0.hook_mlp_out", kind="bogus")
    with pytest.raises(ValueError, match="no head axis"):
        Ablation("blocks.0.hook_mlp_out", head=0)
    with pytest.raises(IndexError, match="head=7 out of range"):
        run_with_ablation(g.model, g.tokens, Ablation("blocks.0.attn.hook_z", head=7))
    with pytest.raises(KeyError, match="no hook point 'blocks.9.hook_mlp_out'"):
        run_with_ablation(g.model, g.tokens, Ablation("blocks.9.hook_mlp_out", kind="mean"))


def test_hooks_do_not_leak_after_an_error(grokked):
    g = grokked
    bad = Ablation("blocks.0.attn.hook_z", head=9)
    with pytest.raises(IndexError):
        run_with_ablation(g.model, g.tokens, bad)
    assert all(not hp._forward_hooks for hp in g.model.hook_dict.values())


def test_metrics_agree_with_definitions(grokked):
    g = grokked
    with torch.no_grad():
        logits = g.model(g.tokens)
    final = logits[:, -1].double()
    assert float(loss(logits, g.labels)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(final, g.labels)), rel=1e-9
    )
    assert float(answer_prob(logits, g.labels)) > 0.9
    margin = logit_diff(logits, g.labels, reduce=False)
    assert torch.all(margin > 0)  # 100% accurate: the answer beats every other logit
    wrong = (g.labels + 1) % g.p
    manual = final.gather(1, g.labels[:, None]) - final.gather(1, wrong[:, None])
    assert torch.allclose(logit_diff(logits, g.labels, wrong, reduce=False).double(), manual[:, 0])
    with pytest.raises(ValueError, match="labels of shape"):
        accuracy(logits, g.labels[:5])


def test_component_lists_follow_the_model():
    m = TinyTransformer(
        n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=12, d_vocab=6, d_vocab_out=5
    )
    heads = head_ablations(m, hook="hook_pattern")
    assert [a.label for a in heads] == [
        f"blocks.{i}.attn.hook_pattern[head={h}]" for i in range(2) for h in range(2)
    ]
    assert len(neuron_ablations(m, layer=1)) == 12
    assert [a.hook for a in layer_ablations(m)] == [
        "blocks.0.hook_attn_out",
        "blocks.0.hook_mlp_out",
        "blocks.1.hook_attn_out",
        "blocks.1.hook_mlp_out",
    ]
