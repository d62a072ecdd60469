"""Every config option of every group composes; every `_target_` resolves and instantiates
(hardware permitting); the task fills the net's sizes."""

from __future__ import annotations

import os
from pathlib import Path

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from project.build import build_callbacks, fill_net_sizes, task_sizes
from project.train.checks import CONFIG_DIR, config_errors
from tests.conftest import ROOT, main_in_process, run_dirs

GROUPS = {
    g.name: sorted(p.stem for p in g.glob("*.yaml"))
    for g in sorted(Path(CONFIG_DIR).iterdir())
    if g.is_dir()
}
OPTIONS = [(group, option) for group, options in GROUPS.items() for option in options]


def compose_config(overrides: list[str]) -> DictConfig:
    """The job config these overrides compose (Hydra's compose API, no ``hydra`` node)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=overrides)


def test_groups_hold_the_documented_options() -> None:
    assert {"cpu", "mps", "gpu_1", "ddp", "default"} <= set(GROUPS["trainer"])
    assert {"tensorboard", "wandb", "csv", "none"} <= set(GROUPS["logger"])
    assert {"causal_lm", "attn_only"} <= set(GROUPS["model"]) and "modular" in GROUPS["data"]
    assert "default" in GROUPS["callbacks"] and {"fast_grok", "nanda2023"} <= set(
        GROUPS["experiment"]
    )


def test_default_is_the_nanda_2023_setup() -> None:
    cfg = compose_config([])
    assert (cfg.data.modulus, cfg.data.frac_train, cfg.data.operation) == (113, 0.3, "add")
    assert cfg.data.batch_size is None  # full batch
    m = cfg.model.net
    assert (m.n_layers, m.d_model, m.n_heads, m.d_mlp, m.act, m.layernorm) == (
        1,
        128,
        4,
        512,
        "relu",
        False,
    )
    opt = cfg.model.optimizer
    assert (opt.lr, opt.weight_decay, list(opt.betas)) == (1e-3, 1.0, [0.9, 0.98])
    assert cfg.model.scheduler.warmup_steps == 10
    assert config_errors(cfg) == []


def _instantiate_all(cfg, tmp_path: Path) -> None:
    """Instantiate data, model, callbacks, logger and (where the hardware exists) the trainer."""
    dm = hydra.utils.instantiate(cfg.data)
    fill_net_sizes(cfg, dm)
    module = hydra.utils.instantiate(cfg.model)
    sizes = task_sizes(dm)
    for arg, value in sizes.items():  # every size the net takes came from the task
        if arg in cfg.model.net:
            assert cfg.model.net[arg] == value
    dm.setup("fit")  # the contract: (tokens [b, pos], labels [b, pos]) -> logits [b, pos, out]
    tokens, labels = next(iter(dm.train_dataloader()))
    assert tokens.dtype == labels.dtype == torch.int64 and tokens.shape == labels.shape
    logits = module(tokens[:4])
    assert logits.shape == (*tokens[:4].shape, sizes["d_vocab_out"])
    build_callbacks(cfg, tmp_path)
    if cfg.logger and "_target_" in cfg.logger:
        hydra.utils.get_class(cfg.logger._target_)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_instantiates(group: str, option: str, tmp_path: Path) -> None:
    if group == "hparams_search":
        pytest.skip("search spaces are sweeper configs, checked by tests/sweeps")
    if (group, option) == ("llc", "sgld") and os.environ.get("REQUIRE_DEVINTERP") != "1":
        from project.interp.llc import have_devinterp

        if not have_devinterp():  # the LLC callback refuses to build without it, in one line
            pytest.skip("devinterp not installed (uv sync --extra llc)")
    extra = []
    if option == "text" and group in ("data", "experiment"):  # a char-level LM needs a file
        extra = [f"data.path={ROOT / 'README.md'}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="t"):
        cfg = compose("config", overrides=[f"{group}={option}", *extra], return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / option)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        OmegaConf.resolve(cfg.hydra.runtime)
        job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        job_cfg = OmegaConf.create(OmegaConf.to_container(job, resolve=True))
    _instantiate_all(job_cfg, tmp_path)
    trainer_cfg = job_cfg.trainer
    hydra.utils.get_class(trainer_cfg._target_)
    if trainer_cfg.accelerator in ("auto", "cpu") or group != "trainer":
        overrides = (
            {"accelerator": "cpu", "devices": 1} if trainer_cfg.accelerator != "auto" else {}
        )
        trainer = hydra.utils.instantiate(trainer_cfg, logger=False, **overrides)
        assert trainer.max_epochs == trainer_cfg.max_epochs
    if group == "logger" and option in ("tensorboard", "csv"):
        logger = hydra.utils.instantiate(job_cfg.logger)
        assert Path(logger.log_dir).is_relative_to(tmp_path / option)


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"],
        ["trainer=cpu", "trainer.precision=bf16-mixed"],
        ["trainer=cpu", "trainer.precision=32"],
        ["data.batch_size=256", "trainer.max_epochs=1", "trainer.log_every_n_steps=1"],
        ["seed=3", "run.name=grokking_exp1", "data.operation=div", "data.modulus=97"],
        [
            "model.net.n_layers=2",
            "model.net.d_model=64",
            "model.net.n_heads=2",
            "model.net.act=gelu",
            "model.net.layernorm=true",
        ],
    ],
)
def test_documented_overrides_are_valid(overrides: list[str]) -> None:
    assert config_errors(compose_config(overrides)) == []  # one line per problem


def test_gpu_and_mps_configs_fail_clearly_without_the_hardware(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "outputs"
    with pytest.raises(SystemExit) as exit_info:
        main_in_process([f"run.output_root={out}", "trainer=gpu_1", "trainer.precision=16-mixed"])
    assert exit_info.value.code == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert line.startswith("error: trainer.accelerator='gpu' is invalid: allowed cpu or auto")
    assert "no CUDA GPU" in line
    assert run_dirs(out) == [] and not out.exists()
