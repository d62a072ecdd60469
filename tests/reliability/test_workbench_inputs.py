"""The workbench's commands on bad input (issue #35): one line naming the key or file, the bad
value and what is allowed, exit 2, nothing left behind, no traceback.

Run dirs are crafted by hand (only the files each reader reads), so no training is needed except
for the quiet check, which trains one epoch on the real CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, cli_env

INDUCTION = {
    "_target_": "project.data.induction.InductionDataModule",
    "vocab_size": 8, "span": 3, "max_gap": 2, "val_gaps": [1], "n_train": 16, "n_val": 8,
}  # fmt: skip


def write_run(run_dir: Path, val_acc: tuple[float, ...] = (0.1, 0.5, 0.9, 1.0)) -> Path:
    """A run dir without checkpoints: overrides, config and a CSV history (0-based epochs)."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=0"]))
    config = {"seed": 0, "data": INDUCTION, "model": {"optimizer": {"lr": 0.001}}}
    (run_dir / "resolved_config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "csv_logs").mkdir()
    rows = [
        {"epoch": e, "step": e, "train/loss": 2.0 / (e + 1), "val/acc": acc}
        for e, acc in enumerate(val_acc)
    ]
    pd.DataFrame(rows).to_csv(run_dir / "csv_logs" / "metrics.csv", index=False)
    return run_dir


def cli(module: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, no traceback, exactly one ``error:`` line on stderr, holding every word."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# ---------------------------------------------------------------- 1. unwritable outputs


def test_report_out_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b")
    proc = cli("project.report", str(a), str(b), "--out", "/proc/x")
    one_error_line(proc, "--out", "/proc/x", "allowed")
    below_a_file = tmp_path / "a_file" / "page"
    (tmp_path / "a_file").write_text("x")
    proc = cli("project.report", str(a), str(b), "--out", str(below_a_file))
    one_error_line(proc, "--out", str(below_a_file))
    assert not (tmp_path / "report_compare").exists()


def test_runs_csv_that_cannot_be_written_is_one_line_and_no_table(tmp_path: Path) -> None:
    run = write_run(tmp_path / "a")
    proc = cli("project.runs", str(run), "--csv", "/proc/x.csv")
    one_error_line(proc, "--csv", "/proc/x.csv", "allowed")
    assert "overrides" not in proc.stdout  # refused before the table, not after it
    missing_dir = tmp_path / "no" / "such" / "t.csv"
    proc = cli("project.runs", str(run), "--csv", str(missing_dir))
    one_error_line(proc, "--csv", str(missing_dir))
    assert not (tmp_path / "no").exists()


# ---------------------------------------------------------------- 2./3. the report's inputs


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("resolved_config.yaml", "- a\n- b\n", ["a list", "allowed", "mapping"]),
        ("resolved_config.yaml", "a: [\n", ["not YAML", "allowed"]),
        ("summary.json", "{not json", ["not JSON", "allowed", "JSON object"]),
        ("summary.json", "", ["empty", "allowed"]),
        ("summary.json", "[1, 2]", ["a list", "allowed", "JSON object"]),
    ],
    ids=["config-list", "config-not-yaml", "summary-not-json", "summary-empty", "summary-list"],
)
def test_report_on_a_malformed_run_file_is_one_line(
    tmp_path: Path, name: str, text: str, words: list[str]
) -> None:
    run = write_run(tmp_path / "run")
    (run / name).write_text(text)
    proc = cli("project.report", str(run))
    one_error_line(proc, str(run / name), *words)
    assert not (run / "report").exists()


def test_report_max_snapshots_must_be_positive(tmp_path: Path) -> None:
    import contextlib
    import io
    import types

    from project.report import main as report_main

    run = write_run(tmp_path / "run")
    for flag in ("--max-snapshots", "--llc-snapshots"):
        for value in ("-1", "0"):  # in-process: the same main() the CLI runs
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = report_main([str(run), flag, value])
            proc = types.SimpleNamespace(returncode=code, stderr=err.getvalue(), stdout="")
            one_error_line(proc, f"{flag}={value}", "allowed", ">= 1")
    assert not (run / "report").exists()


# ---------------------------------------------------------------- 3. project.runs' inputs


def test_runs_on_a_root_that_does_not_exist_says_so(tmp_path: Path) -> None:
    proc = cli("project.runs", str(tmp_path / "nonexistent"))
    one_error_line(proc, str(tmp_path / "nonexistent"), "does not exist")
    assert "no runs found" not in proc.stdout


def test_runs_lists_a_malformed_run_with_a_note_and_keeps_the_others(tmp_path: Path) -> None:
    """A table over many runs: a run with a broken file is one row marked ``unreadable`` and one
    ``warning:`` line naming the file and what is allowed; the other runs are as usual."""
    good = write_run(tmp_path / "good")
    mapping = write_run(tmp_path / "mapping")
    (mapping / ".hydra" / "overrides.yaml").write_text("a: 1\n")
    not_json = write_run(tmp_path / "not_json")
    (not_json / "summary.json").write_text("{bad")
    config_list = write_run(tmp_path / "config_list")
    (config_list / "resolved_config.yaml").write_text("- a\n")
    proc = cli("project.runs", str(tmp_path), "--csv", str(tmp_path / "t.csv"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warnings) == 3, proc.stderr
    assert all(line.startswith("warning: ") for line in warnings)
    by_file = {w.split()[1]: w for w in warnings}
    overrides_line = by_file[str(mapping / ".hydra" / "overrides.yaml")]
    assert "a mapping" in overrides_line and "allowed" in overrides_line
    summary_line = by_file[str(not_json / "summary.json")]
    assert "not JSON" in summary_line and "allowed" in summary_line
    assert "a list" in by_file[str(config_list / "resolved_config.yaml")]
    df = pd.read_csv(tmp_path / "t.csv")
    status = dict(zip(df["run_dir"], df["status"], strict=True))
    assert status[str(good)] == "incomplete"
    for bad in (mapping, not_json, config_list):
        assert status[str(bad)] == "unreadable"
    row = df[df["run_dir"] == str(mapping)].iloc[0]
    assert "a=1" not in str(row["overrides"]) and "a" not in df.columns  # not shown as an override
    assert "unreadable" in proc.stdout


# ---------------------------------------------------------------- 5. rows written twice


def test_readers_keep_the_last_row_of_each_epoch_after_a_resume(tmp_path: Path) -> None:
    """A run killed during epoch 3 (0-based) and resumed from its epoch-2 checkpoint wrote the
    rows of epochs 2 and 3 again; every reader sees each epoch once, the later attempt's."""
    from project.runs import collect_runs, load_run

    run = write_run(tmp_path / "run")
    rows: list[dict[str, Any]] = []
    for epoch in (0, 1, 2, 3):  # the first attempt: epoch 3's train row, then kill -9
        rows.append({"epoch": epoch, "step": 2 * epoch + 1, "train/loss": 1.0 / (epoch + 1)})
        if epoch < 3:
            rows.append({"epoch": epoch, "step": 2 * epoch + 1, "val/acc": 0.1 * epoch})
    for epoch in (2, 3, 4):  # the resume: epochs 2.. again (a marker in the redone values)
        rows.append({"epoch": epoch, "step": 2 * epoch + 1, "train/loss": 1.0 / (epoch + 1) + 5})
        rows.append({"epoch": epoch, "step": 2 * epoch + 1, "val/acc": 0.2 * epoch})
    pd.DataFrame(rows).to_csv(run / "csv_logs" / "metrics.csv", index=False)
    loaded = load_run(run)
    assert loaded.metrics["epoch"].tolist() == [1, 2, 3, 4, 5]  # completed epochs, once each
    val = loaded.history("val/acc")
    assert val["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert val["val/acc"].tolist() == pytest.approx([0.0, 0.1, 0.4, 0.6, 0.8])
    loss = loaded.history("train/loss")
    assert loss["train/loss"].tolist() == pytest.approx([1.0, 0.5, 1 / 3 + 5, 0.25 + 5, 0.2 + 5])
    df = collect_runs(tmp_path)
    assert df["epochs"].tolist() == [5]
    assert df["val_acc"].tolist() == pytest.approx([0.8])
    from project.runs.load import read_metrics

    assert "the last of each epoch" in " ".join((read_metrics.__doc__ or "").split())


# ---------------------------------------------------------------- 4. the ensemble launcher

SWEEP = [
    "-m", "seed=0,1", "data.modulus=11", "trainer.max_epochs=1", "trainer=cpu",
    "callbacks.progress_measures.every_n_epochs=0", "hydra/launcher=ensemble",
]  # fmt: skip


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("hydra.launcher.max_members=0", ["hydra.launcher.max_members=0", "allowed", ">= 1"]),
        ("hydra.launcher.n_jobs=0", ["hydra.launcher.n_jobs=0", "allowed", "-1"]),
        ("hydra.launcher.min_members=-1", ["hydra.launcher.min_members=-1", "allowed", ">= 1"]),
        ("hydra.launcher.n_jobs=abc", ["hydra.launcher.n_jobs='abc'", "allowed", "integer"]),
        (
            "hydra.launcher.bogus=1",
            ["hydra.launcher.bogus=1", "max_members", "min_members", "n_jobs"],
        ),
        ("hydra.launcher.max_member=3", ["hydra.launcher.max_member=3", "did you mean"]),
    ],
    ids=["max_members=0", "n_jobs=0", "min_members=-1", "n_jobs=abc", "bogus", "typo"],
)
def test_ensemble_launcher_options_are_checked_before_any_job(
    tmp_path: Path, override: str, words: list[str]
) -> None:
    sweep = tmp_path / "sweep"
    proc = cli(
        "project.train.run", *SWEEP, override, f"hydra.sweep.dir={sweep}",
        f"run.output_root={tmp_path / 'outputs'}",
    )  # fmt: skip
    line = one_error_line(proc, *words)
    assert "+hydra.launcher" not in line  # the launcher has no such option: "+" would not help
    assert not sweep.exists() and not (tmp_path / "outputs").exists()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- 7. Lightning's device lines


def test_a_training_run_prints_no_gpu_tpu_available_lines(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable, "-m", "project.train.run", f"run.output_root={tmp_path}",
            "trainer.max_epochs=1", "data.modulus=11", "trainer=cpu",
            "callbacks.progress_measures.every_n_epochs=0",
        ],
        cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "run summary" in text or "status:" in text  # it did run
    for noise in ("GPU available", "TPU available", "HPU available"):
        assert noise not in text, text[-2000:]
    run_log = next(tmp_path.glob("*/*/run.log")).read_text()
    assert "GPU available" not in run_log


def test_quiet_libraries_drops_device_lines_from_lightnings_logger() -> None:
    import logging

    from project.utils.quiet import quiet_libraries

    quiet_libraries()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    record = logging.LogRecord(logger.name, logging.INFO, __file__, 1, "x", None, None)
    for msg, kept in [
        ("GPU available: False, used: False", False),
        ("TPU available: False, using: 0 TPU cores", False),
        ("Restoring states from the checkpoint path at x.ckpt", True),
    ]:
        record.msg = msg
        assert all(f.filter(record) for f in logger.filters) is kept, msg


def test_report_summary_json_reader_is_unchanged_for_a_good_record(tmp_path: Path) -> None:
    """A well-formed summary.json is still read (the checks above do not reject good records)."""
    from project.summary import RunRecord, read_summary, summary_problem

    run = write_run(tmp_path / "run")
    RunRecord(run_dir=str(run), epochs=4, monitor="val/acc", threshold=0.9).write(run)
    assert summary_problem(run) is None
    record = read_summary(run)
    assert record is not None and record.epochs == 4
    (run / "summary.json").write_text(json.dumps({"epochs": "many", "final": {"x": "y"}}))
    assert "allowed" in (summary_problem(run) or "")
    assert read_summary(run) is None  # unreadable: as if the run wrote none
