"""Activation and path patching: normalisation, what the answer can depend on, and path
patching checked against hand-computed forward passes."""

from __future__ import annotations

import pytest
import torch

from project.interp.cache import Site
from project.interp.metrics import logit_diff
from project.interp.patching import (
    activation_patching,
    corrupt_operand,
    modular_labels,
    path_patching,
    path_patching_sweep,
    resample_positions,
)
from project.models.tiny_transformer import TinyTransformer


@pytest.fixture(scope="module")
def setup(grokked):
    g = grokked
    corrupted = corrupt_operand(g.tokens, "a", seed=0)
    corrupted_labels = modular_labels(corrupted, "add")

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logit_diff(logits, g.labels, corrupted_labels)

    return g, corrupted, corrupted_labels, metric


def test_corruption_helpers():
    tokens = torch.tensor([[3, 4, 7], [0, 6, 7], [5, 5, 7]])
    for operand, changed in (("a", [0]), ("b", [1]), ("both", [0, 1])):
        out = corrupt_operand(tokens, operand, seed=1)
        for pos in range(3):
            same = out[:, pos] == tokens[:, pos]
            assert bool((~same).all()) if pos in changed else bool(same.all())
        assert int(out[:, :2].max()) < 7
    assert torch.equal(modular_labels(tokens, "add"), torch.tensor([0, 6, 3]))
    assert torch.equal(modular_labels(tokens, "sub"), torch.tensor([6, 1, 0]))
    assert torch.equal(
        resample_positions(tokens, [0], 7, seed=2), resample_positions(tokens, [0], 7, seed=2)
    )
    with pytest.raises(ValueError, match="operand='c'"):
        corrupt_operand(tokens, "c")
    with pytest.raises(ValueError, match="cannot infer p"):
        corrupt_operand(torch.tensor([[1, 2, 7], [1, 2, 8]]))


def test_resid_patching_final_position_restores_and_irrelevant_positions_do_nothing(setup):
    g, corrupted, _, metric = setup
    hooks = [
        "hook_embed",
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_mid",
        "blocks.0.hook_resid_post",
    ]
    result = activation_patching(g.model, g.tokens, corrupted, metric, hooks=hooks)
    assert result.values.shape == (4, 3) and result.positions == [0, 1, 2]
    assert result.clean_metric > 5 and result.corrupted_metric < -5
    v = dict(zip(result.hooks, result.values, strict=True))
    # the answer is read from the final residual stream at the last position: patching it is
    # patching the whole answer
    assert v["blocks.0.hook_resid_post"][2] == pytest.approx(1.0, abs=1e-6)
    assert v["blocks.0.hook_resid_mid"][2] == pytest.approx(1.0, abs=1e-6)
    # after the only attention layer nothing reads positions 0 and 1 again
    assert v["blocks.0.hook_resid_post"][:2].abs().max() < 1e-6
    assert v["blocks.0.hook_resid_mid"][:2].abs().max() < 1e-6
    # only `a` differs: position 0 carries all of it before attention, 1 and 2 carry none
    assert v["blocks.0.hook_resid_pre"][0] == pytest.approx(1.0, abs=1e-6)
    assert v["blocks.0.hook_resid_pre"][1:].abs().max() < 1e-6
    assert v["hook_embed"][0] == pytest.approx(1.0, abs=1e-6)
    frame = result.to_frame()
    assert len(frame) == 12 and set(frame.columns) == {
        "hook",
        "pos",
        "head",
        "metric",
        "normalised",
    }


def test_patching_all_positions_at_once_is_clean(setup):
    g, corrupted, _, metric = setup
    result = activation_patching(
        g.model, g.tokens, corrupted, metric, hooks="blocks.0.hook_resid_pre", positions="all"
    )
    assert result.positions == ["all"]
    assert float(result.values[0, 0]) == pytest.approx(1.0, abs=1e-6)


def test_per_head_patching_of_z(setup):
    g, corrupted, _, metric = setup
    result = activation_patching(
        g.model, g.tokens, corrupted, metric, hooks=lambda n: n.endswith("hook_z"), by_head=True
    )
    assert result.values.shape == (1, 3, 4) and result.heads == [0, 1, 2, 3]
    # z at positions 0/1 is never read by the answer position in a 1-layer model
    assert result.values[0, :2].abs().max() < 1e-6
    # the heads at the answer position carry information about a
    assert result.values[0, 2].abs().max() > 0.05
    with pytest.raises(
        ValueError, match="by_head=True but blocks.0.hook_mlp_out have no head axis"
    ):
        activation_patching(
            g.model, g.tokens, corrupted, metric, hooks="blocks.0.hook_mlp_out", by_head=True
        )


def test_patching_rejects_undefined_normalisation(setup):
    g, _, _, metric = setup
    with pytest.raises(ValueError, match="does not change the metric"):
        activation_patching(g.model, g.tokens, g.tokens.clone(), metric)


def test_path_patching_attention_through_mlp_matches_manual(setup):
    """Sender = attention output, receiver = MLP input: only the attn -> MLP path is clean."""
    g, corrupted, _, metric = setup
    m = g.model
    res = path_patching(
        m, g.tokens, corrupted, metric, "blocks.0.hook_attn_out", "blocks.0.mlp.hook_pre"
    )
    _, clean = m.run_with_cache(g.tokens)
    _, corr = m.run_with_cache(corrupted)
    with torch.no_grad():
        mid = (
            corr["blocks.0.hook_resid_mid"]
            - corr["blocks.0.hook_attn_out"]
            + clean["blocks.0.hook_attn_out"]
        )
        mlp_out = m.blocks[0].mlp(mid)
        # direct path of attention stays corrupted: resid_post = corrupted resid_mid + new MLP out
        logits = m.unembed(corr["blocks.0.hook_resid_mid"] + mlp_out)
    assert res.metric == pytest.approx(float(metric(logits)), abs=1e-4)
    pre = mid @ m.blocks[0].mlp.W_in + m.blocks[0].mlp.b_in
    assert torch.allclose(res.receiver_values["blocks.0.mlp.hook_pre"], pre, atol=1e-5)
    assert 0.0 <= res.normalised <= 1.05
    # the direct path of attention (not through the MLP) carries little in this model
    direct = path_patching(
        m, g.tokens, corrupted, metric, "blocks.0.hook_attn_out", "blocks.0.hook_resid_post"
    )
    assert direct.normalised < res.normalised


def test_path_patching_one_head_direct_path_matches_manual(setup):
    g, corrupted, _, metric = setup
    m = g.model
    head = 1
    res = path_patching(
        m,
        g.tokens,
        corrupted,
        metric,
        Site("blocks.0.attn.hook_z", head=head),
        "blocks.0.hook_resid_post",
    )
    _, clean = m.run_with_cache(g.tokens)
    _, corr = m.run_with_cache(corrupted)
    w_o = m.blocks[0].attn.W_O[head]
    with torch.no_grad():
        delta = (
            clean["blocks.0.attn.hook_z"][:, :, head] - corr["blocks.0.attn.hook_z"][:, :, head]
        ) @ w_o
        logits = m.unembed(corr["blocks.0.hook_resid_post"] + delta)
    assert res.metric == pytest.approx(float(metric(logits)), abs=1e-4)


def test_path_patching_two_layer_head_to_query(setup):
    """2-layer random model: sender L0H1 -> receiver query of L1H0; MLP0 and every other head
    frozen. The recorded query equals the hand-computed one, other heads' queries stay corrupted."""
    torch.manual_seed(0)
    m = TinyTransformer(
        n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=8, d_vocab_out=7
    ).eval()
    clean = torch.randint(0, 7, (40, 3))
    clean[:, -1] = 7
    corrupted = corrupt_operand(clean, "a", p=7, seed=1)
    target = modular_labels(clean, "add", p=7)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[:, -1].gather(1, target[:, None]).mean()

    res = path_patching(
        m,
        clean,
        corrupted,
        metric,
        Site("blocks.0.attn.hook_z", head=1),
        Site("blocks.1.attn.hook_q", head=0),
    )
    _, c = m.run_with_cache(clean)
    _, k = m.run_with_cache(corrupted)
    w_o = m.blocks[0].attn.W_O[1]
    resid = (
        k["blocks.1.hook_resid_pre"]
        + (c["blocks.0.attn.hook_z"][:, :, 1] - k["blocks.0.attn.hook_z"][:, :, 1]) @ w_o
    )
    q = res.receiver_values["blocks.1.attn.hook_q"]
    assert torch.allclose(q[:, :, 0], resid @ m.blocks[1].attn.W_Q[0], atol=1e-5)
    assert torch.equal(q[:, :, 1], k["blocks.1.attn.hook_q"][:, :, 1])
    with torch.no_grad():
        manual = m.run_with_hooks(
            corrupted,
            fwd_hooks=[
                (
                    "blocks.1.attn.hook_q",
                    lambda act, hook: torch.cat([q[:, :, :1], act[:, :, 1:]], 2),
                )
            ],
        )
    assert res.metric == pytest.approx(float(metric(manual)), abs=1e-5)
    # a sender downstream of its receiver has no path: exactly the corrupted behaviour
    none = path_patching(
        m, clean, corrupted, metric, Site("blocks.1.attn.hook_z", head=0), "blocks.0.mlp.hook_pre"
    )
    assert none.normalised == pytest.approx(0.0, abs=1e-6)
    # noising: base = clean, sender corrupted
    noised = path_patching(
        m,
        clean,
        corrupted,
        metric,
        "blocks.0.hook_attn_out",
        "blocks.1.hook_resid_pre",
        direction="noise",
    )
    full = path_patching(
        m, clean, corrupted, metric, "blocks.0.hook_attn_out", "blocks.1.hook_resid_pre"
    )
    assert noised.normalised != pytest.approx(full.normalised)
    table = path_patching_sweep(
        m,
        clean,
        corrupted,
        metric,
        [Site("blocks.0.attn.hook_z", head=h) for h in range(2)],
        "blocks.1.hook_resid_pre",
    )
    assert list(table["sender"]) == ["blocks.0.attn.hook_z[head=0]", "blocks.0.attn.hook_z[head=1]"]
    with pytest.raises(ValueError, match="same hook"):
        path_patching(m, clean, corrupted, metric, "blocks.0.hook_mlp_out", "blocks.0.hook_mlp_out")
    with pytest.raises(ValueError, match="direction='up'"):
        path_patching(
            m,
            clean,
            corrupted,
            metric,
            "blocks.0.hook_mlp_out",
            "blocks.1.hook_resid_pre",
            direction="up",
        )
