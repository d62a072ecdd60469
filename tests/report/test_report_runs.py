"""The report on real tiny runs: report.json schema, phases, the generic sections on a
non-modular task, the comparison page and the dense / weights-only snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from project.checkpoint import read_checkpoint
from project.grokking.report_phases import PHASES
from project.interp.fourier import KEY_RULE
from project.report import main as report_main
from project.runs.report import build_report
from project.stored import load_checkpoint
from tests.conftest import SMALL, train_in_process


@pytest.fixture(scope="module")
def modular_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return [
        train_in_process(
            tmp_path_factory.mktemp(f"seed{seed}"),
            *SMALL,
            f"seed={seed}",
            "trainer.max_epochs=12",
            "callbacks.progress_measures.every_n_epochs=3",
            "callbacks.snapshots.every_n_epochs=6",
            "+callbacks.snapshots.log_spaced=4",
            "callbacks.snapshots.save_weights_only=true",
        )
        for seed in (0, 1)
    ]


@pytest.fixture(scope="module")
def induction_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_in_process(
        tmp_path_factory.mktemp("induction"),
        "data=induction",
        "data.steps_per_epoch=2",
        "data.batch_size=16",
        "data.n_val=32",
        "trainer=cpu",
        "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=1",
        "callbacks.snapshots.every_n_epochs=1",
    )


def test_log_spaced_weights_only_snapshots_load(modular_runs: list[Path]) -> None:
    ckpts = modular_runs[0] / "checkpoints"
    epochs = sorted(int(p.stem.split("_")[1]) for p in ckpts.glob("epoch_*.ckpt"))
    assert epochs == [0, 1, 2, 3, 6, 10, 12]  # every 6 + round(10 ** (i / 4))
    snap = read_checkpoint(ckpts / "epoch_000010.ckpt")
    assert "optimizer_states" not in snap and "state_dict" in snap
    assert "optimizer_states" in read_checkpoint(ckpts / "last.ckpt")  # resume: untouched
    net, _ = load_checkpoint(ckpts / "epoch_000010.ckpt")
    assert isinstance(net, torch.nn.Module)


def test_report_json_schema(modular_runs: list[Path]) -> None:
    page = build_report(modular_runs[0])
    data = json.loads((page.parent / "report.json").read_text())
    assert set(data["phases"]) == set(PHASES)
    for span in data["phases"].values():
        assert span is None or (len(span) == 2 and span[0] <= span[1])
    assert "grok_epoch" in data and "memorise_epoch" in data
    for key in ("curves", "trajectory", "progress", "final", "phase_evidence", "ablation"):
        assert key in data, key
    traj = data["trajectory"]
    assert traj["epoch"] == [0, 1, 2, 3, 6, 10, 12]
    for col in ("restricted_loss", "excluded_loss", "restricted_acc", "excluded_acc",
                "weight_sq_sum", "embed_gini", "logit_weights_gini", "sq_embed.W_E"):  # fmt: skip
        assert len(traj[col]) == len(traj["epoch"]), col
    final = data["final"]
    assert final["key_rule"].startswith("neuron clusters")  # the rule that found key_freqs
    assert final["key_rule_embedding"] == KEY_RULE  # ... and the one behind key_freqs_embedding
    for key in ("phase_checks", "phase_check_values", "phase_sensitivity", "phases_not_placed"):
        assert key in data, key
    assert len(final["embed_norms_cos"]) == len(final["embed_norms_sin"]) == 23 // 2
    text = page.read_text()
    for heading in ("Training curves", "Fourier spectra of W_E and W_L", "Per key frequency",
                    "Head and layer ablation effects", "Attention per head"):  # fmt: skip
        if heading == "Per key frequency" and not final["key_freqs"]:
            continue
        assert heading in text, heading


def test_comparison_page_from_two_runs(modular_runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert report_main([str(r) for r in modular_runs] + ["--out", str(out)]) == 0
    text = (out / "index.html").read_text()
    assert "Comparison of 2 runs" in text and text.count("<img") == 2
    data = json.loads((out / "compare.json").read_text())
    assert [r["run_dir"] for r in data["runs"]] == [str(r) for r in modular_runs]
    assert all("seed=" in r["label"] for r in data["runs"])  # the differing config key


def test_report_on_a_non_modular_task_has_generic_sections(induction_run: Path) -> None:
    assert report_main([str(induction_run)]) == 0
    page = induction_run / "report" / "index.html"
    text = page.read_text()
    assert "Training curves" in text and "Attention per head" in text
    assert "Head and layer ablation effects" in text
    assert "Fourier" not in text
    assert "Induction head scores" in text
    data = json.loads((page.parent / "report.json").read_text())
    assert "trajectory" not in data and data["ablation"]["component"]
