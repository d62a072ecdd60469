"""The template contract, end to end: the README's "Add your own task / model" example (a task and a
net defined outside ``src/``, selected through ``hydra.searchpath``) trains, logs, checkpoints,
resumes, loads, evaluates and gets a report, through the CLI, with no template file edited."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import cli_env, run_dirs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "my_project"


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example copied to a temp dir: the user's own package and config dir."""
    target = tmp_path_factory.mktemp("user") / "my_project"
    shutil.copytree(EXAMPLE, target)
    return target


def _env(user_dir: Path) -> dict[str, str]:
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(user_dir), env.get("PYTHONPATH", "")])
    return env


def _run(user_dir: Path, cwd: Path, *args: str, module: str = "project.train.run"):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=_env(user_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_user_task_and_net_train_resume_load_evaluate_report(
    user_dir: Path, tmp_path: Path
) -> None:
    common = [
        f"hydra.searchpath=[file://{user_dir / 'configs'}]",
        "data=reverse",
        "model=torch_transformer",
        "data.n_examples=400",
        "logger=csv",
        "callbacks.progress_bar=null",
        "callbacks.last_checkpoint.every_n_epochs=2",
        "callbacks.snapshots.every_n_epochs=2",
        "trainer.check_val_every_n_epoch=1",
    ]
    first = _run(user_dir, tmp_path, *common, "trainer.max_epochs=4")
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = run_dirs(tmp_path / "outputs")
    metrics = pd.read_csv(next(run.glob("csv_logs/**/metrics.csv")))
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(metrics.columns)
    assert "lr" in metrics.columns  # LearningRateMonitor: `lr` with or without a scheduler
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "checkpoints" / "epoch_000004.ckpt").is_file()

    # resume in the same run dir, continuing the epoch count
    last = run / "checkpoints" / "last.ckpt"
    refused = _run(user_dir, tmp_path, f"run.ckpt_path={last}", "trainer.max_epochs=6")
    assert refused.returncode == 2  # the config dir is not taken from the run dir: say how
    assert "name yours again, hydra.searchpath=[file://" in refused.stderr, refused.stderr
    second = _run(user_dir, tmp_path, common[0], f"run.ckpt_path={last}", "trainer.max_epochs=6")
    assert second.returncode == 0, second.stderr[-3000:]
    assert run_dirs(tmp_path / "outputs") == [run]
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == 5 and ckpt["hyper_parameters"]["net"]["_target_"].endswith(
        "TorchTransformer"
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 6 and summary["best"] is not None

    # load the user's net and task back, in a process that has the user's package
    script = (
        "import sys, json\n"
        "from project.utils.helpers import load_checkpoint\n"
        "from project.runs import load_run\n"
        f"net, hp = load_checkpoint({str(last)!r})\n"
        f"run = load_run({str(run)!r})\n"
        "dm = run.datamodule(); dm.setup('fit')\n"
        "tokens, labels = next(iter(dm.val_dataloader()))\n"
        "logits = net(tokens)\n"
        "print(json.dumps({'net': type(net).__name__, 'task': type(dm).__name__,\n"
        "  'shape': list(logits.shape), 'epochs': run.epochs}))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], env=_env(user_dir), capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    info = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert info["net"] == "TorchTransformer" and info["task"] == "ReverseTask"
    assert info["shape"][1:] == [13, 11] and info["epochs"][:3] == [0, 2, 4]

    evaluated = _run(user_dir, tmp_path, str(run), "--json", module="project.eval")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.loads(evaluated.stdout)
    assert set(results) >= {"train", "val"} and 0.0 <= results["val"]["acc"] <= 1.0
    assert results["val"]["loss"] == pytest.approx(summary["final"]["val/loss"], rel=1e-4)

    report = _run(user_dir, tmp_path, str(run), module="project.report")
    assert report.returncode == 0, report.stderr[-3000:]
    html = (run / "report" / "index.html").read_text()
    assert "Training curves" in html and "my_project.ReverseTask" in html
    # a net of torch.nn parts (no HookPoints) and a task that declares no report sections: the
    # page says why those sections are absent
    absent = json.loads((run / "report" / "report.json").read_text())["not_shown"]
    assert "my_project.ReverseTask declares none" in absent["Task sections"]
    assert "HookPoints" in absent["Attention per head"]
    assert "Fourier" not in html and "phase" not in html
    # a task that is not modular arithmetic: no grokking word in its summary, table or report
    table = _run(user_dir, tmp_path, str(run), module="project.runs")
    assert table.returncode == 0, table.stderr[-3000:]
    words = re.compile(r"grok|fourier|frequenc|modul(?!e)", re.IGNORECASE)
    for name, text in [
        ("summary.json", (run / "summary.json").read_text()),
        ("project.runs", table.stdout),
        ("report.json", (run / "report" / "report.json").read_text()),
        ("index.html", html),
    ]:
        assert not words.search(text), (name, words.findall(text))
    assert "reached_epoch" in table.stdout

    # a sweep of the user's experiment (the README's "outside the clone" recipe, last step)
    sweep = _run(
        user_dir, tmp_path, *common, "trainer.max_epochs=1", "-m", "seed=0,1",
        "hydra.sweep.dir=sweep", "callbacks.run_summary.reached_as=solved_epoch",
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0", "1"] and all(
        (tmp_path / "sweep" / j / "summary.json").is_file() for j in jobs
    )
    # the task's own word for the threshold epoch, in summary.json and the runs table
    record = json.loads((tmp_path / "sweep" / "0" / "summary.json").read_text())
    assert record["names"] == {"reached_epoch": "solved_epoch"} and "solved_epoch" in record
    swept = _run(user_dir, tmp_path, str(tmp_path / "sweep"), module="project.runs")
    assert swept.returncode == 0 and "solved_epoch" in swept.stdout, swept.stderr[-3000:]


def test_a_bad_value_in_a_user_class_is_one_line_and_leaves_nothing(
    user_dir: Path, tmp_path: Path
) -> None:
    proc = _run(
        user_dir,
        tmp_path,
        f"hydra.searchpath=[file://{user_dir / 'configs'}]",
        "data=reverse",
        "model=torch_transformer",
        "data.n_digits=0",
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: data.n_digits=0 is invalid: allowed an integer >= 1"
    ]
    assert not (tmp_path / "outputs").exists()


def test_unknown_key_of_a_user_class_lists_its_arguments(user_dir: Path, tmp_path: Path) -> None:
    proc = _run(
        user_dir,
        tmp_path,
        f"hydra.searchpath=[file://{user_dir / 'configs'}]",
        "data=reverse",
        "model=torch_transformer",
        "+model.net.n_layer=3",
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: model.net.n_layer=3 is invalid")
    assert "did you mean model.net.n_layers?" in line and "d_model" in line
