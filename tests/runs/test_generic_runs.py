"""The generic run tools (``project.runs`` table, seed statistics, phase diagram, the report) on
runs of tasks that have nothing to do with modular arithmetic speak no task's words; a modular run
keeps its own (``grok_epoch``, the Fourier and phase sections) because its task declares them.

Most run dirs here are hand-built (a record, a metric history, a config): no training, seconds.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from project.report import main as report_main
from project.runs import collect_runs
from project.runs.load import load_run
from project.runs.report import build_report
from project.runs.sweep import format_phase_table, format_seed_stats, phase_table, seed_stats
from project.runs.table import main as table_main
from project.summary import RunRecord
from tests.conftest import ROOT, train_in_process

TASK_WORDS_RE = re.compile(r"grok|fourier|frequenc|modul", re.IGNORECASE)
FAST_GROK = ROOT / "docs" / "results" / "fast_grok_seed0"
EXAMPLE = ROOT / "examples" / "my_project"
INDUCTION = {
    "_target_": "project.data.induction.InductionDataModule",
    "vocab_size": 8, "span": 3, "max_gap": 2, "val_gaps": [1], "n_train": 16, "n_val": 8,
}  # fmt: skip
REVERSE = {"_target_": "my_project.ReverseTask", "n_digits": 3, "n_examples": 32}
VAL_ACC = [0.1, 0.3, 0.6, 0.95, 1.0]  # per completed epoch 1..5: >= 0.9 at epoch 4


def task_words(text: str) -> list[str]:
    """The modular-arithmetic task's words in ``text`` (``grep -iE 'grok|fourier|frequenc|modul'``),
    ignoring the ``DataModule`` suffix of class names (Lightning's word, not the task's)."""
    return TASK_WORDS_RE.findall(text.replace("DataModule", ""))


def write_run(
    run_dir: Path,
    data: dict[str, Any],
    record: RunRecord | None,
    overrides: list[str] | None = None,
    searchpath: Path | None = None,
    val_acc: list[float] = VAL_ACC,
    run_summary: dict[str, Any] | None = None,
) -> Path:
    """A run dir as ``project.train.run`` leaves it, minus the checkpoints: overrides, config,
    CSV metric history (0-based logger epochs) and, unless ``record`` is None, ``summary.json``."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides or [])))
    if searchpath is not None:
        hydra = {"hydra": {"searchpath": [f"file://{searchpath}"]}}
        (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    config: dict[str, Any] = {"seed": 0, "data": data,
                              "model": {"optimizer": {"lr": 0.001, "weight_decay": 0.1}}}  # fmt: skip
    if run_summary is not None:
        config["callbacks"] = {"run_summary": run_summary}
    (run_dir / "resolved_config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "csv_logs").mkdir()
    rows = [
        {"epoch": e, "step": e, "train/loss": 2.0 / (e + 1), "train/acc": min(1.0, 0.4 + 0.2 * e),
         "val/loss": 2.5 / (e + 1), "val/acc": acc}
        for e, acc in enumerate(val_acc)
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(run_dir / "csv_logs" / "metrics.csv", index=False)
    if record is not None:
        record.run_dir = str(run_dir)
        record.write(run_dir)
    return run_dir


def generic_record(reached: int | None = 4, **extra: Any) -> RunRecord:
    """A version-2 record of a task with no words of its own (``names`` empty)."""
    return RunRecord(
        run_dir="", epochs=5, steps=5, monitor="val/acc", mode="max", threshold=0.9,
        final={"train/acc": 1.0, "val/acc": 1.0, "train/loss": 0.4, "val/loss": 0.5},
        best=1.0 if reached else 0.8, best_epoch=5, reached_epoch=reached, train_reached_epoch=3,
        **extra,
    )  # fmt: skip


def report_texts(run_dir: Path) -> tuple[str, dict[str, Any]]:
    page = build_report(run_dir)
    return page.read_text(), json.loads((page.parent / "report.json").read_text())


@pytest.fixture
def user_task(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The README's user task (examples/my_project) importable, as with PYTHONPATH."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return EXAMPLE / "configs"


@pytest.mark.parametrize("task", ["induction", "reverse"])
def test_a_run_of_another_task_shows_no_task_words(
    task: str, tmp_path: Path, user_task: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, searchpath = (INDUCTION, None) if task == "induction" else (REVERSE, user_task)
    run = write_run(tmp_path / "runs" / "r0", data, generic_record(), ["seed=0"], searchpath)
    table_main([str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert "reached_epoch" in out and not task_words(out), out
    df = collect_runs(tmp_path / "runs")
    assert df.loc[0, "reached_epoch"] == 4 and df.loc[0, "train_reached_epoch"] == 3
    assert df.loc[0, "best_val_acc"] == 1.0 and df.loc[0, "threshold"] == "val/acc >= 0.9"
    assert "synced" not in df  # empty for every row: dropped

    text, data_json = report_texts(run)
    dumped = json.dumps(data_json)
    assert not task_words(text) and not task_words(dumped)
    assert "val/acc first reached 0.9 after 4 epochs, 1 epochs after train/acc did." in text
    assert data_json["reached_epoch"] == 4 and data_json["train_reached_epoch"] == 3
    assert "phase" not in dumped and "shading" not in text  # nothing shaded, nothing claimed
    absent = data_json["not_shown"]
    assert absent["Attention per head"] == "needs checkpoints: none in this run dir"
    if task == "reverse":  # the user's task declares no sections: the page says so
        assert "my_project.ReverseTask declares none" in absent["Task sections"]
    else:  # the induction task's own section, absent for want of weights
        assert absent["Induction head scores"] == "needs checkpoints: none in this run dir"
    assert "<h2>Not shown</h2>" in text


def test_a_trained_run_with_a_loss_monitor_reads_generically(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real (tiny) induction run, monitored on val/loss: table, report with weights."""
    run = train_in_process(
        tmp_path_factory.mktemp("induction"), "data=induction", "data.steps_per_epoch=2",
        "data.batch_size=16", "data.n_val=32", "trainer=cpu", "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=1", "callbacks.snapshots.every_n_epochs=1",
        "callbacks.run_summary.monitor=val/loss", "callbacks.run_summary.mode=min",
        "callbacks.run_summary.threshold=100",
    )  # fmt: skip
    df = collect_runs(run.parent)
    assert df.loc[0, "reached_epoch"] == 1 and "best_val_loss" in df
    assert df.loc[0, "threshold"] == "val/loss <= 100"
    table_main([str(run.parent)])
    out = capsys.readouterr().out
    assert "reached_epoch" in out and not task_words(out), out
    assert report_main([str(run)]) == 0
    text = (run / "report" / "index.html").read_text()
    data = json.loads((run / "report" / "report.json").read_text())
    assert not task_words(text) and not task_words(json.dumps(data))
    for heading in ("Training curves", "Attention per head", "Head and layer ablation effects",
                    "Induction head scores"):  # fmt: skip
        assert f"<h2>{heading}" in text, heading
    assert "val/loss first reached 100 after 1 epochs" in text


def test_the_sweep_tools_read_the_generic_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "sweep"
    job = 0
    for wd, reached in ((1, [4, 5]), (3, [None, None])):
        for seed, epoch in enumerate(reached):
            ovs = [f"model.optimizer.weight_decay={wd}", f"seed={seed}"]
            write_run(root / str(job), INDUCTION, generic_record(epoch), ovs)
            job += 1
    df = collect_runs(root)
    assert df.attrs["columns"]["reached"] == ["reached_epoch"]
    stats = seed_stats(df).set_index("config")
    assert stats.loc["model.optimizer.weight_decay=1", "reached_epoch_mean"] == 4.5
    text = format_seed_stats(seed_stats(df))
    assert "reached_epoch (reached/n)" in text and "- (0/2)" in text
    cells = phase_table(df, "model.optimizer.weight_decay", "seed")
    assert cells.attrs["column"] == "reached_epoch" and cells["reached"].tolist() == [1, 0, 1, 0]
    grid = format_phase_table(cells, "model.optimizer.weight_decay", "seed")
    assert "reached_epoch: epochs to val/acc >= 0.9" in grid and "acc 0.80 (0/1)" in grid
    png = tmp_path / "phase.png"
    table_main([str(root), "--phase-diagram", "model.optimizer.weight_decay", "seed",
                "--png", str(png)])  # fmt: skip
    out = capsys.readouterr().out
    assert png.is_file() and not task_words(out), out


def test_a_run_without_a_record_reads_its_history_and_says_so(tmp_path: Path) -> None:
    settings = {"monitor": "val/acc", "mode": "max", "threshold": 0.5, "reached_as": "solved_epoch"}
    run = write_run(tmp_path / "a", INDUCTION, None, run_summary=settings)
    bare = write_run(tmp_path / "b", INDUCTION, None)
    df = collect_runs(tmp_path).set_index(pd.Index(["a", "b"]))
    assert list(df["status"]) == ["incomplete", "incomplete"] and list(df["epochs"]) == [5, 5]
    assert df.loc["a", "solved_epoch"] == 3  # 0.6 at completed epoch 3; the config's word
    assert df.loc["b", "reached_epoch"] == 5  # val/acc >= 0.99 assumed: 1.0 at epoch 5
    reached = load_run(bare).reached
    assert "no summary.json" in reached.source and "val/acc >= 0.99 assumed" in reached.source
    text, data = report_texts(run)
    assert "threshold epochs from" in text and "settings from callbacks.run_summary" in text
    assert data["solved_epoch"] == 3 and data["reached"]["source"].startswith("metric history")


def test_a_users_task_declares_its_own_report_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "configs" / "data").mkdir(parents=True)
    (pkg / "my_sections.py").write_text(
        "from project.data.induction import InductionDataModule\n\n"
        "class MyTask(InductionDataModule):\n"
        "    report_sections = ('my_sections:sections', 'my_sections:missing')\n\n"
        "def sections(ctx):\n"
        "    ctx.summary['my row'] = f'reached at {ctx.reached.epoch}'\n"
        "    ctx.marks.spans = {'warm': [0, 2]}\n"
        "    ctx.marks.caption = 'the warm-up'\n"
        "    ctx.note('My figure', 'nothing to draw yet')\n"
        "    return []\n"
    )
    (pkg / "configs" / "data" / "mine.yaml").write_text("_target_: my_sections.MyTask\n")
    monkeypatch.syspath_prepend(str(pkg))
    run = write_run(tmp_path / "run", {**INDUCTION, "_target_": "my_sections.MyTask"},
                    generic_record(), searchpath=pkg / "configs")  # fmt: skip
    text, data = report_texts(run)
    assert "reached at 4" in text and data["not_shown"]["My figure"] == "nothing to draw yet"
    assert "shading = the warm-up" in text  # the curves carry the task's spans
    assert "cannot be loaded" in data["not_shown"]["my_sections:missing"]


def test_a_modular_run_keeps_its_words_and_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recorded fast_grok run (its summary.json predates the version key): the table shows
    grok_epoch and memorise_epoch; the report its Fourier measures and phases."""
    run = tmp_path / "fast_grok"
    shutil.copytree(FAST_GROK, run)
    df = collect_runs(run)
    assert df.loc[0, "grok_epoch"] == 280 and df.loc[0, "memorise_epoch"] == 107
    assert "reached_epoch" not in df and df.loc[0, "best_val_acc"] == 1.0
    table_main([str(run)])
    assert "grok_epoch" in capsys.readouterr().out
    text, data = report_texts(run)
    assert data["grok_epoch"] == 280 and data["memorise_epoch"] == 107
    assert "<h2>Progress measures: losses and accuracy" in text and "Per key frequency" in text
    assert data["phases"]["cleanup"] == [202, 304]
    assert data["phase_source"] == "snapshots (final key frequencies)"
    assert "shading = phases of grokking" in text and "val/acc &gt;= 0.99 (grok_epoch)" in text
    assert "Fourier spectra of W_E and W_L" in data["not_computed_needs_weights"]


def test_version_2_records_with_task_words_name_the_columns(tmp_path: Path) -> None:
    """What the RunSummary of a modular run writes (``names`` + the words as keys)."""
    names = {"reached_epoch": "grok_epoch", "train_reached_epoch": "memorise_epoch"}
    record = generic_record(names=names)
    assert json.loads(json.dumps(record.to_dict()))["grok_epoch"] == 4
    write_run(tmp_path / "m", INDUCTION, record, ["seed=0"])
    write_run(tmp_path / "g", INDUCTION, generic_record(), ["seed=1"])
    df = collect_runs(tmp_path)
    assert sorted(df.attrs["columns"]["reached"]) == ["grok_epoch", "reached_epoch"]
    by = df.set_index(df["run_dir"].map(lambda d: Path(d).name))
    assert by.loc["m", "grok_epoch"] == 4 and pd.isna(by.loc["m", "reached_epoch"])
    assert by.loc["g", "reached_epoch"] == 4 and pd.isna(by.loc["g", "grok_epoch"])
