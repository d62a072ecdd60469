"""The interp tools on every zoo net (attention-only included), with per-position labels: cache,
ablation, patching, probes and plots all run, and their numbers agree with plain forwards."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from project.interp import metrics
from project.interp.ablation import ablation_sweep, layer_ablations
from project.interp.cache import accumulated_resid, decompose_resid
from project.interp.patching import activation_patching, corrupt_operand
from project.interp.probes import probe_cache
from project.interp.viz import plot_ablation_effects, plot_attention_patterns
from project.report import main as report_main
from project.runs.load import load_run
from tests.conftest import train_in_process
from tests.zoo.test_presets import FAST, QUIET


@pytest.fixture(scope="module", params=sorted(FAST))
def zoo_run(request, tmp_path_factory):
    task = request.param
    tmp = tmp_path_factory.mktemp(task)
    run_dir = train_in_process(
        tmp, f"experiment={task}", *QUIET, *FAST[task], "trainer.max_epochs=1", "logger=csv"
    )
    run = load_run(run_dir)
    dm, net = run.datamodule(), run.final_model()
    tokens, labels = dm.splits()["val"]
    return task, net.eval(), tokens[:16], labels[:16], int(dm.vocab_size), run_dir


def test_cache_decomposes_the_final_residual(zoo_run) -> None:
    task, net, tokens, labels, vocab, _ = zoo_run
    logits, cache = net.run_with_cache(tokens)
    assert torch.equal(logits, net(tokens))
    terms, names = decompose_resid(cache)
    final = cache[f"blocks.{net.cfg.n_layers - 1}.hook_resid_post"]
    torch.testing.assert_close(terms.sum(0), final, atol=1e-4, rtol=1e-4)
    resid, labels_ = accumulated_resid(cache, pos=-1)
    assert resid.shape[0] == len(labels_) and labels_[-1] == "final_post"
    if net.cfg.d_mlp == 0:  # attention-only: no MLP term, no hooks
        assert not any("mlp" in n for n in names) and "blocks.0.hook_mlp_out" not in cache


def test_per_position_metrics_ablation_patching_probe_and_plots(zoo_run) -> None:
    task, net, tokens, labels, vocab, run_dir = zoo_run
    tmp = run_dir / "plots"
    tmp.mkdir(exist_ok=True)

    def metric(logits: torch.Tensor) -> float:
        return float(metrics.loss(logits, labels))  # per-position labels, -100 skipped

    with torch.no_grad():
        baseline = metric(net(tokens))
    table = ablation_sweep(net, tokens, metric, layer_ablations(net, kind="zero"))
    assert len(table) >= net.cfg.n_layers and (table.baseline == baseline).all()
    assert torch.isfinite(torch.tensor(table.effect.to_numpy())).all()

    first = int((labels != -100).float().argmax(1).min())  # a position before any supervised one
    corrupted = corrupt_operand(tokens, [first], p=vocab)
    assert not torch.equal(corrupted, tokens)
    patched = activation_patching(net, tokens, corrupted, metric, positions="all")
    # the whole residual stream patched at any layer restores the clean run exactly
    assert patched.clean_metric == pytest.approx(baseline)
    torch.testing.assert_close(
        patched.raw[:, 0], torch.full_like(patched.raw[:, 0], baseline), atol=1e-5, rtol=1e-5
    )

    _, cache = net.run_with_cache(tokens)
    probes = probe_cache(cache, tokens[:, 0], n_classes=vocab, names="hook_embed", positions=[0])
    assert len(probes) == 1 and probes.iloc[0].train_acc == 1.0  # token identity from W_E
    plot_attention_patterns(cache["blocks.0.attn.hook_pattern"], path=tmp / f"{task}_attn.png")
    plot_ablation_effects(table, path=tmp / f"{task}_ablation.png")
    assert (tmp / f"{task}_attn.png").stat().st_size > 0


def test_the_run_report_has_the_generic_sections(zoo_run) -> None:
    task, *_, run_dir = zoo_run
    assert report_main([str(run_dir)]) == 0
    text = (run_dir / "report" / "index.html").read_text()
    assert "Training curves" in text and "Attention per head" in text
    assert "Head and layer ablation effects" in text and "Fourier" not in text
