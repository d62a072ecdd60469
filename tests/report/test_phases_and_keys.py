"""Phase detection on synthetic progress records with known boundaries, and the key-frequency
rule on synthetic spectra."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from project.grokking.report_phases import PHASES, detect_phases
from project.interp.fourier import key_frequencies_from_norms

E1, E2, E3, END = 1400, 9400, 13400, 20000
MEMORISED = 300  # train acc >= 99% long before excluded loss bottoms out (as in the faithful run)


def synthetic_progress(step: int = 100, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Curves shaped as in Nanda et al. 2023, with phase boundaries E1, E2, E3: train loss falls
    to a floor; excluded loss is lowest at E1, then rises; test and restricted loss stay high
    until E2, fall sharply (log scale) to E3, then keep creeping down slowly; weight norm falls
    slowly, then steeply over [E2, E3]."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, END + 1, step, dtype=float)
    train = np.exp(np.log(4.7) - 20 * np.minimum(t, E1) / E1 - 2 * np.maximum(t - E1, 0) / END)
    excluded = np.where(t <= E1, 4.7 * np.exp(-5 * t / E1) + 0.03, 0.03 + 3e-4 * (t - E1))
    # ln test loss: up to ln 30 at E1, down to ln 10 at E2, -17 nats by E3, then -1 nat per 7k
    ln_test = np.interp(t, [0, E1, E2, E3, END], [np.log(4.7), np.log(30), np.log(10),
                                                  np.log(10) - 17, np.log(10) - 18])  # fmt: skip
    ln_restr = np.interp(t, [0, E1, E2, E3, END], [np.log(4.7), np.log(4.0), np.log(2.0),
                                                   np.log(2.0) - 16, np.log(2.0) - 17])  # fmt: skip
    slow = 3000 - 0.02 * t
    steep = 3000 - 0.02 * E2 - 0.2 * (t - E2)
    floor = 3000 - 0.02 * E2 - 0.2 * (E3 - E2)
    weight = np.where(t <= E2, slow, np.where(t <= E3, steep, floor))
    df = pd.DataFrame({"epoch": t, "train_loss": train, "excluded_loss": excluded,
                       "test_loss": np.exp(ln_test), "restricted_loss": np.exp(ln_restr),
                       "weight_norm": weight})  # fmt: skip
    if noise:
        for col in ("excluded_loss", "weight_norm", "test_loss", "restricted_loss"):
            df[col] *= 1 + noise * rng.standard_normal(len(t))
    return df


GROK = 12000  # val acc crosses 99% inside the sharp fall


@pytest.mark.parametrize("noise", [0.0, 0.02])
def test_phases_found_at_the_known_boundaries(noise: float) -> None:
    out = detect_phases(synthetic_progress(noise=noise), grok_epoch=GROK, memorised_epoch=MEMORISED)
    ph, ev = out["phases"], out["evidence"]
    assert set(ph) == set(PHASES)
    tol = 0.02 * END
    assert ph["memorisation"][0] == 0 and abs(ph["memorisation"][1] - E1) <= tol
    assert ph["circuit_formation"][0] == ph["memorisation"][1]
    assert abs(ph["circuit_formation"][1] - E2) <= tol
    assert ph["cleanup"][0] == ph["circuit_formation"][1]
    assert abs(ph["cleanup"][1] - E3) <= tol  # the slow creep after E3 is not a sharp fall
    assert all(out["checks"].values()), out["checks"]
    for key in ("e1", "e2", "e3"):  # each boundary carries the values that placed it
        assert {"rule", "epoch", "test_loss", "excluded_loss", "restricted_loss"} <= set(ev[key])
    assert ev["e1"]["rule"].startswith("excluded loss within 5%")


def test_memorisation_never_ends_before_the_train_set_is_memorised() -> None:
    df = synthetic_progress()
    out = detect_phases(df, grok_epoch=GROK, memorised_epoch=3000)  # memorised after E1
    assert out["phases"]["memorisation"][1] == 3000
    assert out["evidence"]["e1"]["rule"].startswith("memorised epoch")
    assert out["checks"]["memorisation_ends_after_memorised"]


@pytest.mark.parametrize("factor", [2, 4])
def test_boundaries_move_less_than_5_percent_when_the_cadence_changes(factor: int) -> None:
    """Halving or doubling the measurement spacing moves no boundary by more than 5% of the run."""
    dense = synthetic_progress(step=100, noise=0.02)
    base = detect_phases(dense.iloc[::2], grok_epoch=GROK, memorised_epoch=MEMORISED)["phases"]
    for df in (dense, dense.iloc[:: 2 * factor]):
        other = detect_phases(df, grok_epoch=GROK, memorised_epoch=MEMORISED)["phases"]
        for name in PHASES:
            for a, b in zip(base[name], other[name], strict=True):
                assert abs(a - b) <= 0.05 * END, (name, base[name], other[name])


def test_phases_of_a_run_still_memorising_are_open() -> None:
    df = synthetic_progress()
    early = df[df["epoch"] <= 1000]
    ph = detect_phases(early, memorised_epoch=MEMORISED)["phases"]
    assert abs(ph["memorisation"][1] - 1000) <= 20  # excluded loss still falling: low at the end
    assert ph["memorisation"][0] == 0
    assert ph["cleanup"] is None


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
    ph = detect_phases(midway, grok_epoch=None, memorised_epoch=MEMORISED)["phases"]
    assert abs(ph["memorisation"][1] - E1) <= 200
    assert ph["circuit_formation"] == [ph["memorisation"][1], 11000]
    assert ph["cleanup"] is None
