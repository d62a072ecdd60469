"""Seed statistics and phase diagrams over a sweep's runs (fake run dirs: no training)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from project.runs import collect_runs
from project.runs.sweep import format_phase_table, phase_table, seed_stats
from project.runs.table import main
from tests.sweeps.conftest import fake_run

WD, FRAC = "model.optimizer.weight_decay", "data.frac_train"


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    """wd {1, 3} x frac {0.3, 0.5} x seeds {0, 1, 2}; (1, 0.3) never groks, (3, 0.3) 2 of 3."""
    root = tmp_path / "sweep"
    epochs = {(1, 0.3): [None] * 3, (1, 0.5): [300, 320, 340], (3, 0.5): [100, 110, 120]}
    epochs[(3, 0.3)] = [200, None, 240]
    job = 0
    for (wd, frac), groks in epochs.items():
        for seed, grok in enumerate(groks):
            acc = 1.0 if grok else 0.2 + 0.1 * seed
            ovs = ["data.modulus=23", f"{WD}={wd}", f"{FRAC}={frac}", f"seed={seed}"]
            fake_run(root, str(job), ovs, grok, acc, val_loss=0.1 * (seed + 1))
            job += 1
    return root


def test_seed_stats_mean_std_n(grid: Path) -> None:
    stats = seed_stats(collect_runs(grid)).set_index("config")
    assert len(stats) == 4 and (stats["n"] == 3).all()
    row = stats.loc[f"data.modulus=23 {WD}=1 {FRAC}=0.5"]
    assert row["grok_epoch_mean"] == 320 and row["grok_epoch_std"] == pytest.approx(20)
    assert row["grok_epoch_n"] == 3 and row["val_loss_mean"] == pytest.approx(0.2)
    never = stats.loc[f"data.modulus=23 {WD}=1 {FRAC}=0.3"]
    assert never["grok_epoch_n"] == 0 and never["best_val_acc_mean"] == pytest.approx(0.3)
    assert seed_stats(pd.DataFrame()).empty


def test_phase_table_png_and_cli(grid: Path, tmp_path: Path, capsys) -> None:
    cells = phase_table(collect_runs(grid), WD, FRAC)
    cell = cells[(cells[WD] == 3) & (cells[FRAC] == 0.3)].iloc[0]
    assert cell["n"] == 3 and cell["reached"] == 2 and cell["reached_mean"] == 220
    text = format_phase_table(cells, WD, FRAC)
    assert "220 (2/3)" in text and "acc 0.30 (0/3)" in text and "105" not in text

    png = tmp_path / "phase.png"
    main([str(grid), "--phase-diagram", WD, FRAC, "--png", str(png)])
    out = capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 200_000
    assert "seed statistics: mean ± std (n)" in out and "320 ± 20 (3/3)" in out
    assert "110 (3/3)" in out and f"wrote {png}" in out

    with pytest.raises(SystemExit, match="not swept"):
        main([str(grid), "--phase-diagram", WD, "model.optimizer.lr"])
