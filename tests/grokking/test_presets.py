"""Experiment presets compose to the documented recipes; fast_grok settings really grok (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from project.data.modular import OPERATIONS
from project.train.checks import CONFIG_DIR, config_errors
from tests.conftest import train_in_process

POWER = {
    "power2022_add": "add",
    "power2022_sub": "sub",
    "power2022_div": "div",
    "power2022_x2_y2": "x2+y2",
    "power2022_x2_xy_y2": "x2+xy+y2",
    "power2022_x3_xy": "x3+xy",
    "power2022_x3_xy2_y": "x3+xy2+y",
}


def compose_config(overrides: list[str]) -> DictConfig:
    """The job config these overrides compose (Hydra's compose API, no ``hydra`` node)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize(("name", "operation"), sorted(POWER.items()))
def test_power2022_presets(name: str, operation: str) -> None:
    cfg = compose_config([f"experiment={name}"])
    assert operation in OPERATIONS
    assert (cfg.data.operation, cfg.data.modulus, cfg.data.frac_train) == (operation, 97, 0.5)
    assert (cfg.model.net.n_layers, cfg.model.net.d_model, cfg.model.net.n_heads) == (2, 128, 4)
    assert cfg.model.net.layernorm is True and cfg.data.batch_size == 512
    assert (
        cfg.model.optimizer.lr,
        cfg.model.optimizer.weight_decay,
        list(cfg.model.optimizer.betas),
    ) == (1e-3, 1.0, [0.9, 0.98])
    assert config_errors(cfg) == []


def test_nanda2023_is_the_faithful_recipe_without_grokfast() -> None:
    cfg = compose_config(["experiment=nanda2023"])
    m, d = cfg.model, cfg.data
    assert (d.operation, d.modulus, d.frac_train, d.split_seed, d.batch_size) == (
        "add",
        113,
        0.3,
        598,
        None,
    )
    opt = m.optimizer
    assert (opt.lr, opt.weight_decay, m.scheduler.warmup_steps, m.loss_dtype) == (
        1e-3,
        1.0,
        10,
        "float64",
    )
    assert not cfg.callbacks.get("grokfast")
    assert (m.net.n_layers, m.net.d_model, m.net.d_mlp, m.net.layernorm) == (1, 128, 512, False)
    assert cfg.trainer.max_epochs == 40000 and config_errors(cfg) == []


@pytest.mark.parametrize(("kind", "wd", "lamb"), [("ema", 0.005, 2.0), ("ma", 0.01, 5.0)])
def test_grokfast_mul97_is_the_official_setup(kind: str, wd: float, lamb: float) -> None:
    """x*y mod 97, 50%, batch 512, Adam, 2-layer LayerNorm GELU net; the official commands'
    weight decay and filter defaults (lamb null -> 2.0 for EMA, 5.0 for MA)."""
    from hydra.utils import instantiate

    extra = [] if kind == "ema" else ["grokfast=ma", "model.optimizer.weight_decay=0.01"]
    cfg = compose_config(["experiment=grokfast_mul97", *extra])
    d, m = cfg.data, cfg.model
    assert (d.operation, d.modulus, d.frac_train, d.batch_size) == ("mul", 97, 0.5, 512)
    assert m.optimizer._target_ == "torch.optim.Adam" and m.optimizer.weight_decay == wd
    assert (m.optimizer.lr, list(m.optimizer.betas), m.scheduler.warmup_steps) == (
        1e-3, [0.9, 0.98], 10)  # fmt: skip
    net = m.net
    assert (net.n_layers, net.d_model, net.n_heads, net.d_mlp, net.act) == (2, 128, 4, 512, "gelu")
    assert net.layernorm is True and net.attn_bias is True and m.loss_dtype == "float32"
    grokfast = cfg.callbacks.grokfast
    assert grokfast.filter == kind and grokfast.lamb is None and config_errors(cfg) == []
    assert instantiate(grokfast).filter.lamb == lamb


def test_fast_grok_recipe() -> None:
    cfg = compose_config(["experiment=fast_grok"])
    assert (cfg.data.modulus, cfg.data.frac_train, cfg.data.batch_size) == (113, 0.3, None)
    assert (cfg.model.optimizer.lr, cfg.model.optimizer.weight_decay) == (1e-2, 3.0)
    assert not cfg.callbacks.get("grokfast")
    assert cfg.trainer.max_epochs <= 600
    assert cfg.callbacks.progress_measures.every_n_epochs == 25
    assert config_errors(cfg) == []


@pytest.mark.slow
def test_fast_grok_settings_grok_a_small_modulus_with_fourier_key_frequencies(
    tmp_path: Path,
) -> None:
    from project.interp import fourier as fo
    from project.runs.load import load_run

    run_dir = train_in_process(
        tmp_path,
        "experiment=fast_grok",
        "trainer=cpu",
        "data.modulus=53",
        "data.frac_train=0.4",
        "trainer.max_epochs=500",
        "logger=none",
    )
    run = load_run(run_dir)
    last = json.loads((run_dir / "progress.jsonl").read_text().splitlines()[-1])
    assert last["epoch"] == 500 and last["val_acc"] >= 0.99 and last["train_acc"] == 1.0
    model = run.final_model()
    keys = fo.key_frequencies(model, 53)
    assert 1 <= len(keys) <= 10, keys
    norms = fo.embedding_frequency_norms(model, 53)
    assert fo.key_fraction(norms, keys) > 0.6
    assert fo.embedding_gini(model, 53) > 0.5
    assert last["restricted_loss"] < last["excluded_loss"]
