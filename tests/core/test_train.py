"""End-to-end training in-process: run dir layout, TensorBoard events, checkpoints, resume, grokking."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project.data.modular import ModularDataModule
from project.utils.helpers import load_checkpoint
from tests.conftest import SMALL, train_in_process

METRICS = {"train/loss", "train/acc", "val/loss", "val/acc", "lr"}


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir / "tb_logs"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def grokked_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("train")
    return train_in_process(
        tmp,
        *SMALL,
        "trainer.max_epochs=60",
        "run.name=small",
        "callbacks.snapshots.every_n_epochs=20",
        "callbacks.last_checkpoint.every_n_epochs=20",
    )


def test_run_dir_layout(grokked_run: Path) -> None:
    assert grokked_run.name.endswith("-small") and grokked_run.parent.name.count("-") == 2
    for rel in ("resolved_config.yaml", ".hydra/config.yaml", ".hydra/overrides.yaml", "tb_logs"):
        assert (grokked_run / rel).exists(), rel
    ckpts = sorted(p.name for p in (grokked_run / "checkpoints").iterdir())
    assert ckpts == [
        "epoch_000000.ckpt",
        "epoch_000020.ckpt",
        "epoch_000040.ckpt",
        "epoch_000060.ckpt",
        "last.ckpt",
    ]
    resolved = yaml.safe_load((grokked_run / "resolved_config.yaml").read_text())
    net = resolved["model"]["net"]  # sizes filled from the task
    assert (net["d_vocab"], net["n_ctx"], net["d_vocab_out"]) == (24, 3, 23)
    assert resolved["data"]["modulus"] == 23 and resolved["run"]["name"] == "small"


def test_tensorboard_events_hold_every_metric_every_epoch(grokked_run: Path) -> None:
    logged = scalars(grokked_run)
    assert set(logged) >= METRICS
    assert len(logged["train/loss"]) == 60 and len(logged["val/acc"]) == 60
    lrs = [v for _, v in logged["lr"]]
    # the official warm-up min(step/10, 1): the first step at lr 0, the second at 1e-3
    assert lrs[:2] == pytest.approx([0.0, 1e-3]) and lrs[-1] == pytest.approx(1e-2)


def test_small_setting_fits_and_generalises(grokked_run: Path) -> None:
    logged = scalars(grokked_run)
    train_acc = [v for _, v in logged["train/acc"]]
    val_acc = [v for _, v in logged["val/acc"]]
    # p=23 at 50% groks after ~150 steps; by 60 the model has memorised and val is climbing
    assert train_acc[-1] == 1.0
    assert val_acc[-1] > 0.3 and val_acc[-1] > max(val_acc[:10]) + 0.25


def test_checkpoint_loads_safely_and_reproduces_logged_val_acc(grokked_run: Path) -> None:
    ckpt = grokked_run / "checkpoints" / "last.ckpt"
    torch.load(ckpt, weights_only=True)  # plain types only
    model, hparams = load_checkpoint(ckpt)
    assert not model.training and hparams["optimizer"]["lr"] == 1e-2
    assert hparams["global_step"] == 60
    dm = ModularDataModule(modulus=23, frac_train=0.5)
    tokens, labels = dm.split("val")
    labels = labels[:, -1]
    with torch.no_grad():
        acc = (model(tokens)[:, -1].argmax(-1) == labels).float().mean().item()
    logged = scalars(grokked_run)["val/acc"][-1][1]
    assert acc == pytest.approx(logged, abs=1e-6)


def test_snapshots_differ_over_training(grokked_run: Path) -> None:
    init, _ = load_checkpoint(grokked_run / "checkpoints" / "epoch_000000.ckpt")
    later, _ = load_checkpoint(grokked_run / "checkpoints" / "epoch_000040.ckpt")
    assert not torch.equal(init.embed.W_E, later.embed.W_E)


def test_resume_continues_counters_optimizer_and_logs(tmp_path: Path) -> None:
    first = train_in_process(tmp_path, *SMALL, "trainer.max_epochs=8")
    last = first / "checkpoints" / "last.ckpt"
    before = torch.load(last, weights_only=True)
    assert before["global_step"] == 8
    resumed = train_in_process(tmp_path, f"run.ckpt_path={last}", "trainer.max_epochs=14")
    assert resumed == first, "resuming a run's checkpoint continues in that run dir"
    after = torch.load(last, weights_only=True)
    assert after["global_step"] == 14 and after["epoch"] == 13
    adam = after["optimizer_states"][0]["state"][0]
    assert int(adam["step"]) == 14, "optimizer state continued, not restarted"
    assert after["hyper_parameters"]["optimizer"]["lr"] == 1e-2, "the run's overrides reused"
    steps = [s for s, _ in scalars(first)["train/loss"]]
    assert sorted(set(steps)) == list(range(14)), "logs continue from the saved step"
