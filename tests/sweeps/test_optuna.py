"""hparams_search=grok_optuna: trials run, the objective comes from the run, results are written,
and a trial with a bad value fails with its one line (each job checks itself when it starts)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
import yaml

from project.summary import RunRecord
from project.train.sweep_jobs import objective, penalty, run_objective
from tests.conftest import run_cli
from tests.sweeps.conftest import SWEEP

HAVE_OPTUNA = importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
if os.environ.get("REQUIRE_OPTUNA"):  # .ci/run's extras step: a missing plugin is a failure
    assert HAVE_OPTUNA, "REQUIRE_OPTUNA is set but hydra-optuna-sweeper is not installed"
needs_optuna = pytest.mark.skipif(not HAVE_OPTUNA, reason="uv sync --extra optuna")


def test_objective_is_epochs_to_threshold_else_a_penalty(tmp_path: Path) -> None:
    def record(**kw: object) -> RunRecord:
        return RunRecord(run_dir=str(tmp_path), monitor="val/acc", threshold=0.99, **kw)  # type: ignore[arg-type]

    assert objective(record(reached_epoch=230, best=0.999), 500) == 230
    never = objective(record(best=0.25), 500)
    assert never == penalty(500, 0.25) == 500 * 1.75
    assert never > 500  # worse than any run that grokked
    closer = objective(record(best=0.9), 500)
    assert closer < never
    assert run_objective(tmp_path, 500) == 1000.0  # no summary.json: the full penalty
    # a version-1 summary.json (before the typed record) still reads
    (tmp_path / "summary.json").write_text(json.dumps({"grok_epoch": 40, "best_val_acc": 1.0}))
    assert run_objective(tmp_path, 500) == 40
    record(final={"val/loss": 0.25}, reached_epoch=40).write()
    assert run_objective(tmp_path, 500, "val/loss") == 0.25  # optimized_metric=val/loss
    assert math.isnan(run_objective(tmp_path, 500, "val/nothing"))


@needs_optuna
def test_a_trial_with_a_bad_value_fails_with_its_one_line(tmp_path: Path) -> None:
    bad = "model.optimizer.weight_decay=interval(-2.0, -1.0)"  # Optuna's command-line form
    proc = run_cli(
        "hparams_search=grok_optuna",
        "hydra.sweeper.n_trials=1",
        *SWEEP,
        bad,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors, proc.stderr[-3000:]
    for line in errors:  # the sampled value, named with its key
        assert line.startswith("error: model.optimizer.weight_decay=-1."), line
        assert "is invalid: allowed" in line, line


@needs_optuna
def test_optuna_trials_run_and_write_optimization_results(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "hparams_search=grok_optuna",
        "hydra.sweeper.n_trials=2",
        *[o for o in SWEEP if not o.startswith("model.optimizer.lr=")],  # searched here
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {
        "model.optimizer.lr",
        "model.optimizer.weight_decay",
        "model.scheduler.warmup_steps",
    }
    values = []
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["epochs"] == 3
        values.append(run_objective(sweep / job, 3))
    assert results["best_value"] == pytest.approx(min(values))

    from project.runs.table import main

    main([str(sweep)])
    out = capsys.readouterr().out
    assert "optuna: best value" in out and "model.optimizer.weight_decay=" in out


@pytest.mark.skipif(HAVE_OPTUNA, reason="the message for an environment without the extra")
def test_without_the_extra_the_preset_says_how_to_install_it(tmp_path: Path) -> None:
    proc = run_cli("hparams_search=grok_optuna", cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        "error: hydra/sweeper=optuna is not installed: it comes with the `optuna` extra "
        "(uv sync --extra optuna); installed: basic"
    ]
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()
