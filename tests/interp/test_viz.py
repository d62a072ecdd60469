"""Every viz function renders a real PNG (headless: ``matplotlib.figure.Figure``, no pyplot).

That no display and no pyplot are needed is checked in a fresh interpreter by test_example.py."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from project.interp import viz
from project.interp.ablation import ablation_sweep, head_ablations, layer_ablations
from project.interp.metrics import accuracy, logit_diff
from project.interp.patching import activation_patching, corrupt_operand, modular_labels
from project.interp.probes import probe_cache

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000, path


@pytest.fixture(scope="module")
def results(grokked):
    g = grokked
    corrupted = corrupt_operand(g.tokens, "a")
    clabels = modular_labels(corrupted, "add")

    def metric(lg: torch.Tensor) -> torch.Tensor:
        return logit_diff(lg, g.labels, clabels)

    patch = activation_patching(g.model, g.tokens, corrupted, metric)
    by_head = activation_patching(
        g.model, g.tokens, corrupted, metric, hooks="blocks.0.attn.hook_z", by_head=True
    )
    sweep = ablation_sweep(
        g.model,
        g.tokens,
        lambda lg: accuracy(lg, g.labels),
        layer_ablations(g.model) + head_ablations(g.model),
    )
    _, cache = g.model.run_with_cache(g.tokens)
    probes = probe_cache(cache, g.tokens[:, 0], n_classes=g.p, names=lambda n: "resid" in n)
    return patch, by_head, sweep, cache, probes


def test_every_plot_writes_a_png(grokked, results, tmp_path):
    g = grokked
    patch, by_head, sweep, cache, probes = results
    figures = {
        "pattern.png": lambda p: viz.plot_attention_patterns(
            cache["pattern", 0][0], token_labels=["a=0", "b=0", "="], path=p
        ),
        "pattern_mean.png": lambda p: viz.plot_attention_patterns(cache["pattern", 0], path=p),
        "patching.png": lambda p: viz.plot_patching(patch, path=p),
        "patching_heads.png": lambda p: viz.plot_patching(by_head, path=p),
        "ablation.png": lambda p: viz.plot_ablation_effects(sweep, path=p),
        "probes.png": lambda p: viz.plot_probe_accuracy(probes, path=p),
        "neurons.png": lambda p: viz.plot_neuron_grid(
            cache["post", 0][:, -1], [0, 1, 2, 3, 4], g.p, path=p
        ),
        "W_E.png": lambda p: viz.plot_embedding(g.model.embed.W_E, path=p),
    }
    for name, draw in figures.items():
        fig = draw(tmp_path / "figs" / name)
        assert isinstance(fig, Figure)
        assert_png(tmp_path / "figs" / name)


def test_viz_bad_input_errors(grokked):
    with pytest.raises(ValueError, match="acts has 10 rows, expected p\\*p = 529"):
        viz.plot_neuron_grid(torch.zeros(10, 4), [0], grokked.p)
    with pytest.raises(ValueError, match="2 token labels for 3 positions"):
        viz.plot_attention_patterns(torch.zeros(4, 3, 3), token_labels=["a", "b"])
    with pytest.raises(ValueError, match="'effect' column"):
        import pandas as pd

        viz.plot_ablation_effects(pd.DataFrame({"component": ["x"]}))
