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

import pytest
import torch
import torch.nn.functional as F

from project.callbacks.llc import LLCMonitor
from project.interp.llc import CACHE, LLCConfig, have_devinterp, pack, packed_loss, read_cache
from project.models.tiny_transformer import TinyTransformer
from tests.conftest import ROOT, train_in_process

needs_devinterp = pytest.mark.skipif(
    not have_devinterp() and os.environ.get("REQUIRE_DEVINTERP") != "1",
    reason="devinterp not installed (uv sync --extra llc); REQUIRE_DEVINTERP=1 makes this fail",
)


def test_packed_loss_is_each_examples_mean_over_its_supervised_positions() -> None:
    torch.manual_seed(0)
    net = TinyTransformer(d_vocab=10, n_ctx=4, d_vocab_out=10, d_model=16, n_heads=2, d_mlp=32)
    tokens = torch.randint(0, 10, (5, 4))
    labels = torch.full((5, 4), -100)
    labels[:, -1] = tokens[:, 0]
    labels[0, 1] = 3  # one example with two supervised positions
    out = packed_loss(net, pack(tokens, labels))
    assert out.shape == (5, 7)  # devinterp's (batch, len(input_ids) - 1)
    logits = net(tokens)
    first = F.cross_entropy(logits[0, [1, 3]], labels[0, [1, 3]])
    torch.testing.assert_close(out[0], first.expand(7))
    rest = F.cross_entropy(logits[1:, -1], labels[1:, -1], reduction="none")
    torch.testing.assert_close(out[1:, 0], rest)


def test_settings_and_the_default_inverse_temperature() -> None:
    config = LLCConfig(batch_size=256)
    assert math.isclose(config.resolved_n_beta(), 256 / math.log(256))
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


TINY = LLCConfig(num_chains=2, num_draws=15, batch_size=32, lr=1e-4)


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
    assert len(result["loss_trace"]) == 2 and len(result["loss_trace"][0]) == 15
    assert math.isclose(result["init_loss"], math.log(11), rel_tol=0.2)  # an untrained net
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


@needs_devinterp
def test_report_llc_section_is_computed_once_then_read_from_the_cache(tmp_path: Path) -> None:
    from project.report import main as report_main

    run = train_in_process(
        tmp_path, "data.modulus=11", "data.frac_train=0.6", "trainer=cpu", "trainer.max_epochs=4",
        "callbacks.snapshots.every_n_epochs=2", "callbacks.progress_measures.every_n_epochs=0",
        "callbacks.llc.num_chains=2", "callbacks.llc.num_draws=15", "callbacks.llc.batch_size=32",
    )  # fmt: skip
    assert report_main([str(run), "--llc"]) == 0
    cache = read_cache(run)
    (entries,) = cache.values()
    assert sorted(int(e) for e in entries) == [0, 2, 4]
    text = (run / "report" / "index.html").read_text()
    assert "Local learning coefficient over training" in text and "s per snapshot" in text
    data = json.loads((run / "report" / "report.json").read_text())["llc"]
    assert data["epoch"] == [0, 2, 4] and all(c is False for c in data["cached"])
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
        "logger=csv", "callbacks.progress_measures.every_n_epochs=0",
        "callbacks.llc.every_n_epochs=1", "callbacks.llc.num_chains=2",
        "callbacks.llc.num_draws=10", "callbacks.llc.batch_size=32",
    )  # fmt: skip
    (entries,) = read_cache(run).values()
    assert sorted(int(e) for e in entries) == [0, 1, 2]
    metrics = pd.read_csv(run / "csv_logs" / "metrics.csv")
    assert metrics["llc/mean"].notna().sum() == 3 and metrics["llc/std"].notna().sum() == 3


@pytest.mark.slow
@needs_devinterp
def test_llc_rises_through_the_induction_phase_change(tmp_path: Path) -> None:
    """The known result (docs/zoo.md, seed 0, 4 chains x 200 draws): on the induction preset the
    LLC goes from ~1 at initialisation to 67-74 at epochs 10-20, through the phase change (val acc
    23% after epoch 9, 91% after 14). Here 20 epochs, snapshots at 0 and 20, estimated as
    ``python -m project.report RUN --llc`` does, with 2 chains x 50 draws to keep it cheap."""
    from project.runs import report_llc as rl
    from project.runs.load import load_run

    run_dir = train_in_process(
        tmp_path, "experiment=induction", "trainer=cpu", "logger=none",
        "callbacks.progress_bar=null", "trainer.max_epochs=20",
        "callbacks.snapshots.every_n_epochs=20", "callbacks.llc.num_chains=2",
        "callbacks.llc.num_draws=50",
    )  # fmt: skip
    run = load_run(run_dir)
    assert run.record is not None and run.record.best >= 0.8  # through the phase change
    config = rl.config_of(run.config)
    assert (config.num_chains, config.num_draws) == (2, 50)
    curve = rl.llc_curve(run, run.datamodule(), config, max_snapshots=2).set_index("epoch")
    print(curve.to_string())  # the numbers the docs quote (pytest -s)
    assert list(curve.index) == [0, 20]
    init, after = curve.loc[0], curve.loc[20]
    assert 0 < init.llc_mean < 10
    # several times the LLC at initialisation, beyond two standard deviations of either
    assert after.llc_mean - 2 * after.llc_std > 5 * (init.llc_mean + 2 * init.llc_std)
