"""Progress-measure callback, load_run and the HTML report on real tiny runs (in-process), and the
report rendered in real headless Chromium."""

from __future__ import annotations

import base64
import inspect
import json
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from project.grokking.progress import ProgressMeasures
from project.grokking.report_fourier import modulus, operation
from project.report import main
from project.runs.load import load_run
from project.runs.report import build_report
from tests.conftest import SMALL, train_in_process

EPOCHS, EVERY = 30, 10


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_in_process(
        tmp_path_factory.mktemp("tb"),
        *SMALL,
        f"trainer.max_epochs={EPOCHS}",
        f"callbacks.progress_measures.every_n_epochs={EVERY}",
        f"callbacks.snapshots.every_n_epochs={EVERY}",
    )


@pytest.fixture(scope="module")
def bare_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """logger=none, too short to grok."""
    return train_in_process(
        tmp_path_factory.mktemp("bare"),
        *SMALL,
        "logger=none",
        "trainer.max_epochs=6",
        "callbacks.progress_measures.every_n_epochs=3",
        "callbacks.snapshots.every_n_epochs=3",
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_callback_writes_progress_file_and_logs_to_tensorboard(tb_run: Path) -> None:
    records = read_jsonl(tb_run / "progress.jsonl")
    assert [r["epoch"] for r in records] == list(range(0, EPOCHS + 1, EVERY))
    assert [r["step"] for r in records] == [r["epoch"] for r in records]  # full batch
    for r in records:
        for key in (
            "train_loss",
            "val_acc",
            "restricted_loss",
            "excluded_loss",
            "embed_gini",
            "weight_sq_sum",
            "seconds",
        ):
            assert math.isfinite(r[key]), (key, r)
        assert isinstance(r["key_freqs"], list) and r["n_key_freqs"] == len(r["key_freqs"])
    assert abs(records[0]["train_loss"] - math.log(23)) < 1.0  # fresh model near chance
    assert records[-1]["train_acc"] > records[0]["train_acc"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(next((tb_run / "tb_logs").rglob("events.out.tfevents.*")).parent))
    acc.Reload()
    gini = acc.Scalars("progress/embed_gini")
    assert [e.step for e in gini] == [r["step"] for r in records]
    assert np.allclose([e.value for e in gini], [r["embed_gini"] for r in records], rtol=1e-5)
    assert "train/loss" in acc.Tags()["scalars"]


def test_load_run_gives_config_history_and_lazy_snapshots(tb_run: Path) -> None:
    run = load_run(tb_run)
    assert run.config["data"]["modulus"] == 23 and modulus(run) == 23 and operation(run) == "add"
    assert run.metrics_source == "tensorboard"
    assert len(run.history("train/loss")) == EPOCHS
    assert len(run.history("val/acc")) == EPOCHS  # SMALL validates every epoch
    assert list(run.history("val/acc")["epoch"]) == list(range(1, EPOCHS + 1))  # completed
    assert list(run.progress["epoch"]) == list(range(0, EPOCHS + 1, EVERY))
    assert run.epochs == list(range(0, EPOCHS + 1, EVERY))
    snaps = run.snapshots()
    assert inspect.isgenerator(snaps)
    epoch, first = next(snaps)
    assert epoch == 0 and not first.training
    final = run.final_model()
    *_, (last_epoch, last) = run.snapshots(every=1)
    assert last_epoch == EPOCHS
    for a, b in zip(last.parameters(), final.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    tokens, labels = run.datamodule().split("val")
    with torch.no_grad():
        acc = (final(tokens)[:, -1].argmax(-1) == labels[:, -1]).double().mean().item()
    assert acc == pytest.approx(run.progress["val_acc"].iloc[-1], abs=1e-6)


def test_logger_none_still_records_progress_and_history(bare_run: Path) -> None:
    assert not (bare_run / "tb_logs").exists()
    records = read_jsonl(bare_run / "progress.jsonl")
    assert [r["epoch"] for r in records] == [0, 3, 6]
    run = load_run(bare_run)
    assert run.metrics_source == "progress.jsonl"
    assert list(run.history("val/acc")["epoch"]) == [3, 6]  # completed epochs, as everywhere


def test_callback_rejects_bad_cadence() -> None:
    with pytest.raises(ValueError, match="every_n_epochs must be an integer >= 0.*got -1"):
        ProgressMeasures(every_n_epochs=-1)
    with pytest.raises(ValueError, match="threshold must be a number in \\(0, 1\\], got 2"):
        ProgressMeasures(threshold=2)


def test_report_cli_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "has no checkpoints/ and no recorded trajectory" in capsys.readouterr().err


def test_report_without_checkpoints_recomputes_from_the_recorded_trajectory(
    tb_run: Path, tmp_path: Path
) -> None:
    """A run dir reduced to its config, progress.jsonl and logs (what docs/results commits):
    phases and the measure figures come back; the sections that need weights are named."""
    recorded = tmp_path / "recorded"
    shutil.copytree(tb_run, recorded, ignore=shutil.ignore_patterns("checkpoints", "report"))
    assert main([str(recorded)]) == 0
    data = json.loads((recorded / "report" / "report.json").read_text())
    from project.runs.load import first_epoch_at

    reached = load_run(tb_run).reached  # the run's record, as the checkpointed report reads it
    memorised, grok = reached.train_epoch, reached.epoch
    history = load_run(tb_run).history("val/acc")  # the record agrees with the metric history
    assert grok == first_epoch_at(history["epoch"], history["val/acc"], 0.99)
    assert data["phases"] is not None and data["grok_epoch"] == grok
    assert data["memorise_epoch"] == memorised
    record = json.loads((tb_run / "summary.json").read_text())  # the modular task's words
    assert record["grok_epoch"] == grok and record["memorise_epoch"] == memorised
    assert record["names"] == {
        "reached_epoch": "grok_epoch",
        "train_reached_epoch": "memorise_epoch",
    }
    assert "Fourier spectra of W_E and W_L" in data["not_computed_needs_weights"]
    assert (
        data["final"]["key_freqs"]
        == json.loads((recorded / "progress.jsonl").read_text().splitlines()[-1])["key_freqs"]
    )
    text = (recorded / "report" / "index.html").read_text()
    assert "Progress measures: losses and accuracy" in text and "none in this run dir" in text
    assert "Fourier spectra of W_E and W_L" not in text.split("none in this run dir")[0]


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHECK_JS = (
    "<script>window.addEventListener('load',()=>{const a=[...document.images];"
    "document.body.setAttribute('data-img-total',a.length);document.body.setAttribute("
    "'data-img-ok',a.filter(i=>i.complete&&i.naturalWidth>0&&i.naturalHeight>0).length);});"
    "</script>"
)


def chromium(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:  # CI installs it: a missing browser is a failure, not a skip
        pytest.fail("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )


def render_and_check(page: Path, tmp_path: Path) -> None:
    html_text = page.read_text()
    assert not re.search(r"""src=["'](?!data:image/png;base64,)""", html_text)  # self-contained
    probe = tmp_path / "probe.html"
    probe.write_text(html_text.replace("</body>", CHECK_JS + "</body>"))
    dom = chromium("--dump-dom", "--virtual-time-budget=10000", probe.as_uri()).stdout
    body = re.search(r'<body[^>]*data-img-total="(\d+)"[^>]*data-img-ok="(\d+)"', dom)
    assert body, dom[:500]
    total, ok = int(body.group(1)), int(body.group(2))
    assert total >= 4 and ok == total, f"{total - ok} broken image(s) of {total}"
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1300,2400", page.as_uri())
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1300)
    non_white = (pixels < 0.9).any(axis=-1).mean()
    assert non_white > 0.05 and pixels.std() > 0.05, (non_white, pixels.std())


def test_report_renders_in_headless_chromium(tb_run: Path, tmp_path: Path) -> None:
    page = build_report(tb_run)
    assert page == tb_run / "report" / "index.html"
    text = page.read_text()
    for heading in (
        "Training curves",
        "Progress measures: losses and accuracy",
        "Fourier spectra of W_E and W_L",
        "Attention from &#x27;=&#x27; over the (a, b) grid",
        "Neurons sorted by key frequency and phase",
        "Neurons in the 2-D Fourier basis",
    ):
        assert heading in text
    assert "train/acc &gt;= 0.99 (memorise_epoch)" in text
    assert (page.parent / "report.json").is_file()
    render_and_check(page, tmp_path)
    for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', text):
        head = base64.b64decode(uri[:64])  # PNG IHDR: width, height at bytes 16..24
        width = int.from_bytes(head[16:20], "big")
        assert width >= 1000, width  # >= 1000 px wide at >= 120 dpi


def test_report_on_a_run_that_has_not_grokked(bare_run: Path, tmp_path: Path) -> None:
    page = build_report(bare_run)
    text = page.read_text()
    assert "never reached 0.99" in text and "progress.jsonl" in text
    render_and_check(page, tmp_path)


def test_record_writes_a_trajectory_the_report_reads_without_checkpoints(
    tb_run: Path, tmp_path: Path
) -> None:
    from project.grokking.report_record import main as record_main

    out = tmp_path / "recorded"
    assert record_main([str(tb_run), str(out)]) == 0
    assert not (out / "checkpoints").exists()
    rows = read_jsonl(out / "trajectory.jsonl")
    assert [r["epoch"] for r in rows] == load_run(tb_run).epochs  # every snapshot
    final = json.loads((out / "final.json").read_text())
    assert all(r["key_freqs"] == final["key_freqs"] for r in rows)  # the final model's keys
    from project.interp.fourier import NEURON_KEY_RULE

    assert final["key_rule"] == NEURON_KEY_RULE  # labelled with the rule that found them
    assert "weight_sq_sum" in rows[0] and "weight_norm" not in rows[0]
    header = (out / "csv_logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert set(header) <= {"epoch", "step", "lr", "train/loss", "train/acc", "val/loss", "val/acc"}
    assert main([str(out)]) == 0
    data = json.loads((out / "report" / "report.json").read_text())
    assert data["phase_source"] == "snapshots (final key frequencies)"
    assert data["final"]["key_freqs"] == final["key_freqs"]
    assert len(data["trajectory"]["epoch"]) == len(rows)
    assert record_main([str(tmp_path / "missing"), str(tmp_path / "x")]) == 2
