"""The local learning coefficient (project.interp.llc, devinterp): the packing of our examples
into devinterp's rows, the settings, the import boundary, and (with the `llc` extra) real
estimates and the report's LLC section with its cache.

Tests that need devinterp skip without it, except with REQUIRE_DEVINTERP=1 (CI's extra step)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from project.callbacks.llc import LLCMonitor
from project.interp.llc import (
    CACHE,
    LLCConfig,
    diagnose,
    example_losses,
    have_devinterp,
    read_cache,
)
from project.models.tiny_transformer import TinyTransformer
from tests.conftest import ROOT, train_in_process

needs_devinterp = pytest.mark.skipif(
    not have_devinterp() and os.environ.get("REQUIRE_DEVINTERP") != "1",
    reason="devinterp not installed (uv sync --extra llc); REQUIRE_DEVINTERP=1 makes this fail",
)


def test_example_loss_is_each_examples_mean_over_its_supervised_positions() -> None:
    torch.manual_seed(0)
    net = TinyTransformer(d_vocab=10, n_ctx=4, d_vocab_out=10, d_model=16, n_heads=2, d_mlp=32)
    tokens = torch.randint(0, 10, (5, 4))
    labels = torch.full((5, 4), -100)
    labels[:, -1] = tokens[:, 0]
    labels[0, 1] = 3  # one example with two supervised positions
    out = example_losses(net, tokens, labels)
    assert out.shape == (5,)
    logits = net(tokens)
    torch.testing.assert_close(out[0], F.cross_entropy(logits[0, [1, 3]], labels[0, [1, 3]]))
    rest = F.cross_entropy(logits[1:, -1], labels[1:, -1], reduction="none")
    torch.testing.assert_close(out[1:], rest)


def _trace(level: float, drift: float, chains: int = 4, draws: int = 200) -> torch.Tensor:
    """Chain losses at the draws: ``level`` plus a linear ``drift`` over the whole chain, plus
    a little noise."""
    gen = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, drift, draws)
    return level + ramp + 0.002 * torch.randn(chains, draws, generator=gen)


def test_diagnostic_passes_a_levelled_chain_and_names_each_failure() -> None:
    ok = diagnose(_trace(0.5, 0.0), init_loss=0.1, n_beta=50.0, chance_loss=4.7)
    assert ok["converged"] and ok["reason"] == "ok"
    assert math.isclose(ok["rise"], 0.4, rel_tol=0.01) and abs(ok["drift_rel"]) < 0.02
    # the chains (fast_grok, old settings): climbing all along, far towards chance
    climbing = diagnose(_trace(2.0, 1.8), init_loss=0.0032, n_beta=46.2, chance_loss=4.73)
    assert not climbing["converged"]
    for words in ("not levelled off", "depends on chain length", "near chance"):
        assert words in climbing["reason"]
    # levelled off but far towards chance: the sampler erased the model
    erased = diagnose(_trace(3.0, 0.0), init_loss=0.0032, n_beta=46.2, chance_loss=4.73)
    assert erased["reason"].startswith("near chance")
    # below the loss at the weights: SGLD trains, the weights are not at a minimum
    assert "negative" in diagnose(_trace(0.05, 0.0), 0.1, 50.0)["reason"]
    # a net at chance (initialisation): the chance check does not apply
    assert diagnose(_trace(4.9, 0.0), init_loss=4.7, n_beta=50.0, chance_loss=4.73)["converged"]
    nan = _trace(0.5, 0.0)
    nan[0, 5] = float("nan")
    assert "non-finite" in diagnose(nan, 0.1, 50.0)["reason"]


def test_estimate_and_diagnostic_from_a_trace_drop_the_burn_in() -> None:
    from project.interp.llc import from_trace

    config = LLCConfig(num_chains=2, num_draws=100, num_burnin_steps=50, n_beta=10.0)
    burnin = torch.linspace(0.1, 0.5, 50).expand(2, -1)  # heating up
    steps = torch.cat([burnin, torch.full((2, 100), 0.5)], dim=1)
    result = from_trace(steps.tolist(), 0.1, config)
    assert math.isclose(result["llc_mean"], 10.0 * (0.5 - 0.1))
    assert result["converged"] and len(result["trace_mean"]) == 100
    assert len(result["loss_trace"][0]) == 150  # the burn-in stays in the stored trace


def test_settings_and_the_default_inverse_temperature() -> None:
    config = LLCConfig(max_examples=4096)
    assert math.isclose(config.resolved_n_beta(), 4096 / math.log(4096))  # n / ln n
    assert math.isclose(config.resolved_n_beta(3830), 3830 / math.log(3830))
    assert LLCConfig(n_beta=30.0).resolved_n_beta() == 30.0
    assert config.key() == LLCConfig(batch_size=256).key() != LLCConfig(lr=1e-3).key()
    with pytest.raises(ValueError, match="num_chains=1 is invalid"):
        LLCConfig(num_chains=1)
    with pytest.raises(ValueError, match="num_draws=0 is invalid"):
        LLCConfig(num_draws=0)
    assert LLCMonitor().every_n_epochs == 0  # off by default, builds without devinterp


def test_training_path_never_imports_devinterp() -> None:
    # not `transformers`: torchmetrics imports it with Lightning whenever it is installed (the
    # reason devinterp is an extra), which this project cannot change
    code = (
        "import sys, project.train.run, project.lit_module, project.callbacks.llc, "
        "project.interp.llc; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('devinterp', 'datasets', 'xarray', 'zarr')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(have_devinterp(), reason="checks the message shown without devinterp")
def test_report_llc_without_devinterp_is_a_one_line_error(tmp_path: Path) -> None:
    from project.report import main as report_main

    (tmp_path / "checkpoints").mkdir()
    assert report_main([str(tmp_path), "--llc"]) == 2
    with pytest.raises(ValueError, match="uv sync --extra llc"):
        LLCMonitor(every_n_epochs=5)


TINY = LLCConfig(num_chains=2, num_draws=15, num_burnin_steps=5, batch_size=32, lr=1e-4)


@needs_devinterp
def test_estimate_has_a_spread_over_chains_and_leaves_the_weights_alone() -> None:
    from project.data.modular import ModularDataModule
    from project.interp.llc import estimate_llc

    torch.manual_seed(0)
    dm = ModularDataModule(modulus=11, frac_train=0.6)
    tokens, labels = dm.split("train")
    net = TinyTransformer(d_vocab=12, n_ctx=3, d_vocab_out=11, d_model=16, n_heads=2, d_mlp=32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = estimate_llc(net, tokens, labels, TINY)
    assert len(result["llc_per_chain"]) == 2 and all(map(math.isfinite, result["llc_per_chain"]))
    assert math.isfinite(result["llc_mean"]) and result["llc_std"] >= 0
    assert len(result["loss_trace"]) == 2 and len(result["loss_trace"][0]) == 20  # + burn-in
    assert len(result["trace_mean"]) == 15 and "converged" in result["diagnostic"]
    assert math.isclose(result["init_loss"], math.log(11), rel_tol=0.2)  # an untrained net
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def _regression(d: int, n: int) -> tuple[torch.nn.Module, Any]:
    """A full-rank Gaussian linear regression (d parameters, noise sd 1) at its least-squares
    optimum, and its per-example negative log-likelihood (up to a constant): a regular model,
    whose learning coefficient is d / 2."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen)
    y = x @ torch.randn(d, generator=gen) + torch.randn(n, generator=gen)
    net = torch.nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.linalg.lstsq(x, y[:, None]).solution.T)

    def loss(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
        return 0.5 * (y[idx] - model(x[idx])[:, 0]) ** 2

    return net, loss


# n_beta = b / ln b (devinterp's default) = 46.2; step size 1e-3 (lr * n_beta * curvature ~ 0.05:
# discretisation bias ~1%); localization 0.1, far below n_beta x the smallest curvature (~28);
# 150 burn-in steps (~4 relaxation times of the flattest direction)
KNOWN = LLCConfig(
    lr=1e-3,
    n_beta=256 / math.log(256),
    localization=0.1,
    num_chains=2,
    num_draws=200,
    num_burnin_steps=150,
)


@needs_devinterp
def test_known_answer_linear_regression_llc_is_d_over_2() -> None:
    """The estimator (devinterp SGLD, burn-in dropped) on a model whose LLC is known: within 10%
    of d / 2 = 200, and its diagnostic passes. Deterministic (devinterp seeds each chain);
    simulated over 20 seeds with the same update: 1.03 +- 0.02 of d / 2."""
    from project.interp.llc import sample_llc

    d, n = 400, 8192
    net, loss = _regression(d, n)
    result = sample_llc(net, loss, n, KNOWN, device="cpu")
    print(result["llc_mean"], result["llc_std"], result["diagnostic"])  # pytest -s
    assert abs(result["llc_mean"] / (d / 2) - 1) < 0.1, result["llc_mean"]
    assert result["converged"], result["diagnostic"]["reason"]


@pytest.mark.slow
@needs_devinterp
def test_known_answer_fails_with_wrong_settings() -> None:
    """The known-answer check can fail: a localization as strong as the curvature (gamma =
    n_beta) halves the estimate, and no burn-in with 20 draws catches the chains still heating
    up (the diagnostic says so)."""
    from dataclasses import replace

    from project.interp.llc import sample_llc

    d, n = 400, 8192
    net, loss = _regression(d, n)
    strong = sample_llc(net, loss, n, replace(KNOWN, localization=46.2), device="cpu")
    assert strong["llc_mean"] < 0.6 * d / 2
    short = sample_llc(net, loss, n, replace(KNOWN, num_burnin_steps=0, num_draws=20), "cpu")
    assert short["llc_mean"] < 0.9 * d / 2 and not short["converged"]


@needs_devinterp
def test_report_llc_section_is_computed_once_then_read_from_the_cache(tmp_path: Path) -> None:
    from project.report import main as report_main

    run = train_in_process(
        tmp_path, "data.modulus=11", "data.frac_train=0.6", "trainer=cpu", "trainer.max_epochs=4",
        "callbacks.snapshots.every_n_epochs=2", "callbacks.progress_measures.every_n_epochs=0",
        "llc=sgld", "callbacks.llc.every_n_epochs=0", "callbacks.llc.num_chains=2",
        "callbacks.llc.num_draws=15", "callbacks.llc.num_burnin_steps=5",
        "callbacks.llc.batch_size=32",
    )  # fmt: skip
    assert report_main([str(run), "--llc"]) == 0
    cache = read_cache(run)
    (entries,) = cache.values()
    assert sorted(int(e) for e in entries) == [0, 2, 4]
    text = (run / "report" / "index.html").read_text()
    assert "Local learning coefficient over training" in text and "s per snapshot" in text
    data = json.loads((run / "report" / "report.json").read_text())["llc"]
    assert data["epoch"] == [0, 2, 4] and all(c is False for c in data["cached"])
    assert len(data["trace_mean"]) == 3 and len(data["converged"]) == 3
    for mean, unconverged, ok in zip(
        data["llc_mean"], data["llc_unconverged"], data["converged"], strict=True
    ):
        assert (mean is not None) == ok and (unconverged is None) == ok  # never both
    stamp = (run / CACHE).stat().st_mtime_ns
    assert report_main([str(run), "--llc"]) == 0
    assert (run / CACHE).stat().st_mtime_ns == stamp  # nothing sampled again
    data = json.loads((run / "report" / "report.json").read_text())["llc"]
    assert all(c is True for c in data["cached"])


@needs_devinterp
def test_live_callback_logs_the_llc_and_fills_the_reports_cache(tmp_path: Path) -> None:
    import pandas as pd

    run = train_in_process(
        tmp_path, "data.modulus=11", "data.frac_train=0.6", "trainer=cpu", "trainer.max_epochs=2",
        "logger=csv", "callbacks.progress_measures.every_n_epochs=0", "llc=sgld",
        "callbacks.llc.every_n_epochs=1", "callbacks.llc.num_burnin_steps=5", "callbacks.llc.num_chains=2",
        "callbacks.llc.num_draws=10", "callbacks.llc.batch_size=32",
    )  # fmt: skip
    (entries,) = read_cache(run).values()
    assert sorted(int(e) for e in entries) == [0, 1, 2]
    metrics = pd.read_csv(run / "csv_logs" / "metrics.csv")
    assert metrics["llc/mean"].notna().sum() == 3 and metrics["llc/std"].notna().sum() == 3
    assert set(metrics["llc/converged"].dropna()) <= {0.0, 1.0}


@pytest.mark.slow
@needs_devinterp
def test_llc_rises_through_the_induction_phase_change(tmp_path: Path) -> None:
    """The known result (docs/llc.md, seed 0, the default settings): on the induction preset the
    estimate at initialisation does not converge (the untrained net is not at a minimum; 1.3 read
    there), and after the phase change (val acc 91% after epoch 14) it converges well above zero
    (epoch 20). Here 20 epochs, snapshots at 0 and 20, estimated as ``python -m project.report RUN
    --llc`` does, with 2 chains x 100 draws after 100 burn-in steps to keep it cheaper."""
    from project.runs import report_llc as rl
    from project.runs.load import load_run

    run_dir = train_in_process(
        tmp_path, "experiment=induction", "trainer=cpu", "logger=none",
        "callbacks.progress_bar=null", "trainer.max_epochs=20",
        "callbacks.snapshots.every_n_epochs=20", "llc=sgld", "callbacks.llc.every_n_epochs=0",
        "callbacks.llc.num_chains=2", "callbacks.llc.num_draws=100",
    )  # fmt: skip
    run = load_run(run_dir)
    assert run.record is not None and run.record.best >= 0.8  # through the phase change
    config = rl.config_of(run.config)
    assert (config.num_chains, config.num_draws, config.num_burnin_steps) == (2, 100, 100)
    curve = rl.llc_curve(run, run.datamodule(), config, max_snapshots=2).set_index("epoch")
    print(curve.drop(columns="trace_mean").to_string())  # the numbers the docs quote (pytest -s)
    assert list(curve.index) == [0, 20]
    init, after = curve.loc[0], curve.loc[20]
    assert after.converged, after.reason
    assert after.llc_mean > 10 * after.llc_std > 0
    if init.converged:  # not at the docs' seed and settings
        assert after.llc_mean - 2 * after.llc_std > 5 * (init.llc_mean + 2 * init.llc_std)
