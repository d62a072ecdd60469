"""``model.steps_per_batch=K``: K full-batch optimiser steps per Lightning step, counted in real
epochs and steps, with the weights of a K=1 run (CPU: bitwise), across a resume too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project.lit_module import LitCausalLM
from tests.conftest import SMALL, train_in_process

RUN = [
    *SMALL,
    "trainer.check_val_every_n_epoch=5",
    "callbacks.last_checkpoint.every_n_epochs=5",
    "callbacks.snapshots.every_n_epochs=10",
    "callbacks.progress_measures.every_n_epochs=10",
    "callbacks.progress_bar=null",
]


def scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    acc = EventAccumulator(str(run_dir / "tb_logs"))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def last(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def same_weights(a: dict, b: dict) -> bool:
    sa, sb = a["state_dict"], b["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("steps")
    out = {
        "k1": train_in_process(tmp / "k1", *RUN, "trainer.max_epochs=23"),
        "k5": train_in_process(
            tmp / "k5", *RUN, "trainer.max_epochs=23", "model.steps_per_batch=5"
        ),
    }
    # K=5 stopped at 12 epochs (mid-block of the 23-epoch run's grid), resumed to 23
    first = train_in_process(
        tmp / "resume", *RUN, "trainer.max_epochs=12", "model.steps_per_batch=5"
    )
    out["k5_12"] = first
    out["resumed"] = train_in_process(
        tmp / "resume",
        f"run.ckpt_path={first / 'checkpoints' / 'last.ckpt'}",
        "trainer.max_epochs=23",
    )
    return out


def test_k_steps_give_the_weights_and_counters_of_k1(runs: dict[str, Path]) -> None:
    k1, k5 = last(runs["k1"]), last(runs["k5"])
    assert same_weights(k1, k5), "K=5 trains the same weights as K=1 (CPU, bitwise)"
    assert (k5["epoch"], k5["global_step"]) == (k1["epoch"], k1["global_step"]) == (22, 23)
    adam = k5["optimizer_states"][0]["state"][0]
    assert int(adam["step"]) == 23
    assert k5["lr_schedulers"][0]["last_epoch"] == k1["lr_schedulers"][0]["last_epoch"] == 23
    snaps = sorted(p.name for p in (runs["k5"] / "checkpoints").glob("epoch_*.ckpt"))
    assert snaps == sorted(p.name for p in (runs["k1"] / "checkpoints").glob("epoch_*.ckpt"))
    assert snaps == ["epoch_000000.ckpt", "epoch_000010.ckpt", "epoch_000020.ckpt"]
    snap = torch.load(runs["k5"] / "checkpoints" / "epoch_000010.ckpt", weights_only=True)
    ref = torch.load(runs["k1"] / "checkpoints" / "epoch_000010.ckpt", weights_only=True)
    assert same_weights(snap, ref) and snap["global_step"] == 10


def test_logged_axes_are_real_steps(runs: dict[str, Path]) -> None:
    k1, k5 = scalars(runs["k1"]), scalars(runs["k5"])
    # validation: the same epochs (every 5 and the last), the same values at the same steps
    assert k5["val/loss"] == k1["val/loss"] and sorted(k5["val/acc"]) == [4, 9, 14, 19, 22]
    # train metrics: once per block (its last epoch), each equal to K=1's at that step
    assert sorted(k5["train/loss"]) == [4, 9, 14, 19, 21, 22]
    for tag in ("train/loss", "train/acc"):
        assert all(k1[tag][step] == value for step, value in k5[tag].items())
    assert set(k5["lr"]) <= set(k1["lr"]) and all(k1["lr"][s] == v for s, v in k5["lr"].items())
    epochs = {
        k: [
            json.loads(line)["epoch"]
            for line in (runs[k] / "progress.jsonl").read_text().splitlines()
        ]
        for k in ("k1", "k5")
    }
    assert epochs["k5"] == epochs["k1"], "progress measures at the same epochs"


def test_summary_counts_real_epochs(runs: dict[str, Path]) -> None:
    k1 = json.loads((runs["k1"] / "summary.json").read_text())
    k5 = json.loads((runs["k5"] / "summary.json").read_text())
    for key in ("epochs", "steps", "final", "best", "best_epoch", "reached_epoch", "checkpoints"):
        assert k5[key] == k1[key], key
    assert (k5["epochs"], k5["steps"]) == (23, 23)
    # train metrics are logged at block ends only: a train threshold epoch is one of them
    if k1["train_reached_epoch"] is not None:
        assert k5["train_reached_epoch"] in (5, 10, 15, 20, 22, 23)
        assert k5["train_reached_epoch"] >= k1["train_reached_epoch"]


def test_resume_mid_grid_is_exact(runs: dict[str, Path]) -> None:
    assert last(runs["k5_12"])["global_step"] == 23  # the resumed run wrote its last.ckpt there
    resumed, k1 = last(runs["resumed"]), last(runs["k1"])
    assert same_weights(resumed, k1) and resumed["global_step"] == 23


def test_block_lengths_follow_the_grid_and_the_last_epoch() -> None:
    class Trainer:
        max_epochs, max_steps, global_step, current_epoch = 23, -1, 0, 0

    module = LitCausalLM(net=torch.nn.Identity(), optimizer=torch.optim.SGD, steps_per_batch=5)
    trainer = Trainer()
    module.__dict__["_trainer"] = trainer  # block_steps only reads the counters
    blocks = []
    while trainer.current_epoch < trainer.max_epochs:
        n = module.block_steps()
        blocks.append(n)
        trainer.current_epoch += n
    assert blocks == [5, 5, 5, 5, 2, 1]
    trainer.current_epoch, trainer.global_step, trainer.max_steps = 7, 7, 9
    assert module.block_steps() == 2  # never past max_steps


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.batch_size=64"], "full-batch training only"),
        (
            ["trainer.check_val_every_n_epoch=3", "callbacks.last_checkpoint.every_n_epochs=4"],
            "trainer.check_val_every_n_epoch=3",
        ),
        (
            ["trainer.check_val_every_n_epoch=2", "callbacks.last_checkpoint.every_n_epochs=7"],
            "LastCheckpoint.every_n_epochs=7",
        ),
    ],
)
def test_cadences_that_k_does_not_divide_are_errors(
    tmp_path: Path, overrides: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:  # a config error found at fit start: exit 2
        train_in_process(
            tmp_path, *RUN, "trainer.max_epochs=4", "model.steps_per_batch=2", *overrides
        )
    assert exit_info.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(errors) == 1 and "model.steps_per_batch=2 is invalid" in errors[0], errors
    assert message in errors[0]  # the line itself, not the overrides echoed elsewhere


def test_steps_per_batch_is_checked() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="steps_per_batch"):
            LitCausalLM(net=torch.nn.Identity(), optimizer=torch.optim.SGD, steps_per_batch=bad)


def test_per_step_hooks_run_at_every_step(tmp_path: Path) -> None:
    """Grokfast filters gradients in ``on_before_optimizer_step``: K=5 still matches K=1."""
    runs = [
        train_in_process(
            tmp_path / f"k{k}",
            *RUN,
            "grokfast=ema",
            "trainer.max_epochs=10",
            f"model.steps_per_batch={k}",
        )
        for k in (1, 5)
    ]
    assert same_weights(last(runs[0]), last(runs[1]))
