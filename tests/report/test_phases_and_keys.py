"""Phase detection on synthetic progress records with known boundaries, and the key-frequency
rule on synthetic spectra."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from project.interp.fourier import key_frequencies_from_norms
from project.runs.report_phases import PHASES, detect_phases, knee

E1, E2, E3, END = 1400, 9400, 13400, 20000


def synthetic_progress(step: int = 100, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Curves shaped as in Nanda et al. 2023, with phase boundaries E1, E2, E3."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, END + 1, step, dtype=float)
    # excluded loss: falls with train loss to its minimum at E1, then rises (circuit forms)
    excluded = np.where(t <= E1, 4.7 * np.exp(-5 * t / E1) + 0.03, 0.03 + 3e-4 * (t - E1))
    # weight norm: slow decline until E2, steep fall to E3, flat after
    slow = 3000 - 0.02 * t
    steep = 3000 - 0.02 * E2 - 0.2 * (t - E2)
    floor = 3000 - 0.02 * E2 - 0.2 * (E3 - E2)
    weight = np.where(t <= E2, slow, np.where(t <= E3, steep, floor))
    # Gini: slow rise until E2, fast rise to E3, plateau
    gini = np.where(
        t <= E2, 0.1 + 1e-5 * t,
        np.where(t <= E3, 0.1 + 1e-5 * E2 + 1e-4 * (t - E2), 0.1 + 1e-5 * E2 + 1e-4 * (E3 - E2)),
    )  # fmt: skip
    df = pd.DataFrame({"epoch": t, "excluded_loss": excluded, "weight_norm": weight, "gini": gini})
    if noise:
        for col in ("excluded_loss", "weight_norm", "gini"):
            df[col] *= 1 + noise * rng.standard_normal(len(t))
    return df


@pytest.mark.parametrize("noise", [0.0, 0.002])
def test_phases_found_at_the_known_boundaries(noise: float) -> None:
    out = detect_phases(synthetic_progress(noise=noise), grok_epoch=13000)
    ph = out["phases"]
    assert set(ph) == set(PHASES)
    assert ph["memorisation"][0] == 0 and abs(ph["memorisation"][1] - E1) <= 200
    assert ph["circuit_formation"][0] == ph["memorisation"][1]
    assert abs(ph["circuit_formation"][1] - E2) <= 300
    assert ph["cleanup"][0] == ph["circuit_formation"][1]
    assert abs(ph["cleanup"][1] - E3) <= 0.1 * (E3 - E2) + 200  # 90% of the rise
    assert out["evidence"]["excluded_loss_min"]["epoch"] == ph["memorisation"][1]


def test_phases_of_a_run_still_memorising_are_open() -> None:
    df = synthetic_progress()
    early = df[df["epoch"] <= 1000]
    ph = detect_phases(early)["phases"]
    assert ph["memorisation"] == [0, 1000]  # excluded loss still falling: lowest at the end
    assert ph["cleanup"] is None


def test_knee_of_flat_then_falling_curve() -> None:
    x = np.arange(100.0)
    y = np.where(x < 70, 10 - 0.01 * x, 10 - 0.7 - 0.3 * (x - 70))
    assert knee(x, y, "fall") == 70
    assert knee(x, np.ones(100), "fall") is None


def spectrum(peaks: dict[int, float], secondary: dict[int, float], n: int = 57) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    norms = torch.rand(n, generator=g, dtype=torch.float64) * 0.6 + 0.7
    for k, v in {**secondary, **peaks}.items():
        norms[k] = v
    return norms


def test_key_rule_keeps_all_five_peaks_with_secondary_peaks() -> None:
    peaks = {5: 6.0, 7: 5.4, 25: 5.8, 48: 5.0, 54: 5.2}
    secondary = {3: 3.0, 11: 2.7, 30: 2.4, 40: 2.1}
    assert key_frequencies_from_norms(spectrum(peaks, secondary)) == [5, 7, 25, 48, 54]
    assert key_frequencies_from_norms(spectrum(peaks, {})) == [5, 7, 25, 48, 54]


def test_key_rule_flat_single_and_dominant() -> None:
    assert key_frequencies_from_norms(spectrum({}, {})) == []  # untrained: flat
    assert key_frequencies_from_norms(spectrum({14: 4.0}, {})) == [14]
    one_hot = torch.zeros(57, dtype=torch.float64)
    one_hot[9] = 1.0
    assert key_frequencies_from_norms(one_hot) == [9]


def test_a_run_that_has_not_generalised_is_still_forming_its_circuit() -> None:
    df = synthetic_progress()
    midway = df[df["epoch"] <= 11000]
    ph = detect_phases(midway, grok_epoch=None)["phases"]
    assert abs(ph["memorisation"][1] - E1) <= 200
    assert ph["circuit_formation"] == [ph["memorisation"][1], 11000]
    assert ph["cleanup"] is None
