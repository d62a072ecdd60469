"""The three phases of grokking, placed from the signals Nanda et al. 2023 (§5.1) name (the
grokking plugin's part of the run report: ``report_fourier.report_sections`` calls
:func:`report_phases`, which shades them on every figure over epochs).

``detect_phases(measures, grok_epoch, memorised_epoch)`` takes one row per measured epoch with
(some of) the columns ``epoch``, ``train_loss``, ``test_loss`` (val loss), ``excluded_loss`` (train
pairs, key frequencies removed from the logits), ``restricted_loss`` (only the key frequencies
kept) and ``weight_norm`` (total sum of squared weights), and returns the phase boundaries:

* **memorisation** ``[first epoch, e1]``: e1 = the later of the memorised epoch (train accuracy
  first >= 99%, measured every epoch) and the epoch at which the excluded loss has come down to
  within ``settle`` (5%) of its lowest value before the grok (from there on the key-frequency
  circuit carries more and more of the train fit; the 5% band, not the argmin, so that a flat
  minimum sampled at another cadence does not move it). Memorisation never ends before the train
  set is memorised.
* **circuit formation** ``[e1, e2]``: excluded loss rises, restricted loss falls, test loss stays
  high. It ends where clean-up begins.
* **clean-up** ``[e2, e3]``: test loss and restricted loss fall sharply. A loss falls sharply
  where ln(loss) falls at least ``sharp`` (25%) as fast as at its steepest after e1; the sharp
  fall is the contiguous stretch around that steepest point. Losses are floored at the lowest
  train loss of the run before the log (a test loss as low as the train loss ever got has no
  further to fall), so the slow decline of an already tiny loss is not read as a fall. e2 =
  where the first of the two starts its sharp fall, e3 = where the last one ends it. The weight
  norm is not used to place them; whether it fell over [e2, e3] is reported as a check.

Cadence: every series is interpolated linearly onto one uniform grid of ``GRID`` points over the
run and smoothed by a running mean over ``window`` (5%) of the run length, so a boundary does not
depend on how densely the snapshots sample it (halving or doubling the cadence moves boundaries
by <= 5% of the run length: ``tests/report/test_phases_and_keys.py`` on synthetic curves,
``tests/report/test_recorded_phases.py`` on the recorded fast_grok run). Rates are per epoch, of
the natural log of the loss.

A run that has not generalised (``grok_epoch`` None) has circuit formation open to its last
measured epoch and no clean-up. ``evidence`` holds, per boundary (``e1``, ``e2``, ``e3``), the
rule that placed it and every signal's value there (train loss/acc, test, excluded and restricted
loss, weight norm), the excluded-loss low and the sharp-fall stretches with their rates, and
``checks`` the paper's claims as
booleans (excluded loss rose over circuit formation, restricted loss fell, weight norm fell over
clean-up, the grok epoch lies in clean-up), so a reader sees where the run agrees with the paper.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from project.runs.load import Reached, first_epoch_at
from project.runs.report_generic import ReportContext

PHASES = ("memorisation", "circuit_formation", "cleanup")
PHASE_COLORS = {
    "memorisation": "tab:orange",
    "circuit_formation": "tab:purple",
    "cleanup": "tab:green",
}
PHASE_LABELS = {
    "memorisation": "memorisation",
    "circuit_formation": "circuit formation",
    "cleanup": "clean-up",
}
TITLE = "Phases of grokking"
THRESHOLD = 0.99  # the paper's memorised / generalised: train / val accuracy >= 99%
GRID = 2001
LOSSES = ("test_loss", "restricted_loss")
SIGNALS = (
    "train_loss",
    "train_acc",
    "test_loss",
    "excluded_loss",
    "restricted_loss",
    "weight_norm",
)


def _series(df: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, values) of ``col`` sorted by epoch, NaNs dropped; None with < 2 points."""
    if col not in df:
        return None
    rows = df[["epoch", col]].dropna().groupby("epoch", as_index=False)[col].mean()
    if len(rows) < 2:
        return None
    return rows["epoch"].to_numpy(dtype=float), rows[col].to_numpy(dtype=float)


def at(df: pd.DataFrame, col: str, epoch: float) -> float | None:
    """``col`` linearly interpolated at ``epoch`` (None when absent)."""
    s = _series(df, col)
    if s is None:
        return None
    return float(np.interp(epoch, *s))


def smooth_log(
    df: pd.DataFrame, col: str, grid: np.ndarray, window: float, floor: float = 1e-30
) -> np.ndarray | None:
    """ln of ``max(col, floor)`` on ``grid`` (linear interpolation) smoothed by a running mean of
    ``window`` epochs; NaN outside the measured range. ``[len(grid)]``."""
    s = _series(df, col)
    if s is None:
        return None
    x, y = s
    y = np.log(np.clip(y, max(floor, 1e-30), None))
    out = np.interp(grid, x, y)
    step = grid[1] - grid[0] if len(grid) > 1 else 1.0
    k = max(1, int(round(window / step)) | 1)  # odd
    if k > 1:
        pad = k // 2
        padded = np.pad(out, pad, mode="edge")
        out = np.convolve(padded, np.ones(k) / k, mode="valid")
    out[(grid < x[0]) | (grid > x[-1])] = np.nan
    return out


def sharp_fall(
    grid: np.ndarray, y: np.ndarray, after: float, sharp: float
) -> dict[str, float] | None:
    """The stretch after ``after`` where ``y`` (a smoothed log loss on ``grid``) falls at >= ``sharp``
    x its steepest rate: ``{start, end, steepest, rate}`` (rates in ln per epoch) or None."""
    rate = np.gradient(y, grid)
    ok = (grid >= after) & np.isfinite(rate)
    if not ok.any():
        return None
    masked = np.where(ok, rate, np.inf)
    i = int(np.argmin(masked))
    if not masked[i] < 0:
        return None
    steep = masked <= sharp * masked[i]
    a = i
    while a > 0 and steep[a - 1]:
        a -= 1
    b = i
    while b < len(grid) - 1 and steep[b + 1]:
        b += 1
    return {"start": float(grid[a]), "end": float(grid[b]), "steepest": float(grid[i]),
            "rate": float(masked[i])}  # fmt: skip


def _reached(x: np.ndarray, y: np.ndarray, level: float) -> float:
    """First epoch at which the falling series ``y`` reaches ``level`` (linear interpolation)."""
    hit = int(np.flatnonzero(y <= level)[0])
    if hit == 0:
        return float(x[0])
    x0, x1, y0, y1 = x[hit - 1], x[hit], y[hit - 1], y[hit]
    return float(x0 + (x1 - x0) * (y0 - level) / (y0 - y1))


def detect_phases(
    measures: pd.DataFrame,
    grok_epoch: int | None = None,
    memorised_epoch: int | None = None,
    sharp: float = 0.25,
    window: float = 0.05,
    settle: float = 0.05,
) -> dict[str, Any]:
    """Phase boundaries from the measures; see the module docstring.

    Returns ``{"phases": {name: [start, end] or None}, "evidence": {...}, "checks": {...}}``;
    epochs are completed epochs. ``window`` is a fraction of the run length.
    """
    ev: dict[str, Any] = {"grok_epoch": grok_epoch, "memorised_epoch": memorised_epoch,
                          "sharp": sharp, "window_frac": window}  # fmt: skip
    checks: dict[str, bool | None] = {}
    epochs = measures["epoch"].dropna().astype(float) if "epoch" in measures else pd.Series([])
    if epochs.empty:
        return {"phases": dict.fromkeys(PHASES), "evidence": ev, "checks": checks}
    start, last = float(epochs.min()), float(epochs.max())

    def values(epoch: float, cols: tuple[str, ...] = SIGNALS) -> dict[str, Any]:
        out: dict[str, Any] = {"epoch": round(epoch, 1)}
        for col in cols:
            v = at(measures, col, epoch)
            if v is not None:
                out[col] = v
        return out

    # e1: memorised, and the excluded loss at its lowest (before the grok)
    e1: float | None = None if memorised_epoch is None else float(memorised_epoch)
    rule1 = "memorised epoch (train acc >= 99%)"
    excl = _series(measures, "excluded_loss")
    if excl is not None:
        x, y = excl
        upto = x <= (grok_epoch if grok_epoch is not None else last)
        if upto.any():
            i = int(np.argmin(y[upto]))
            ev["excluded_loss_min"] = {"epoch": float(x[upto][i]), "value": float(y[upto][i])}
            low = _reached(x[: i + 1], y[: i + 1], (1 + settle) * float(y[upto][i]))
            ev["excluded_loss_settled"] = {"epoch": low, "within": settle}
            if e1 is None or low > e1:
                e1, rule1 = low, f"excluded loss within {settle:.0%} of its pre-grok low"
    if e1 is None:
        return {"phases": dict.fromkeys(PHASES), "evidence": ev, "checks": checks}
    e1 = min(max(start, e1), last)
    ev["e1"] = {"rule": rule1, **values(e1)}

    if grok_epoch is None or e1 >= last:
        ev["circuit_formation_open"] = True  # clean-up (test loss falls) has not begun
        phases = {"memorisation": [int(start), int(e1)], "cleanup": None,
                  "circuit_formation": [int(e1), int(last)] if last > e1 else None}  # fmt: skip
        return {"phases": phases, "evidence": ev, "checks": checks}

    grid = np.linspace(start, last, GRID)
    train = _series(measures, "train_loss")
    floor = float(train[1].min()) if train is not None else 1e-30
    ev["loss_floor"] = {"rule": "lowest train loss of the run", "value": floor}
    falls = {}
    for col in LOSSES:
        curve = smooth_log(measures, col, grid, window * (last - start), floor)
        if curve is not None:
            found = sharp_fall(grid, curve, e1, sharp)
            if found is not None:
                falls[col] = found
    ev["sharp_falls"] = falls
    if not falls:
        phases = {"memorisation": [int(start), int(e1)], "circuit_formation": None,
                  "cleanup": None}  # fmt: skip
        return {"phases": phases, "evidence": ev, "checks": checks}
    e2 = max(e1, min(f["start"] for f in falls.values()))
    e3 = max(e2, max(f["end"] for f in falls.values()))
    first = min(falls, key=lambda c: falls[c]["start"])
    last_ = max(falls, key=lambda c: falls[c]["end"])
    ev["e2"] = {"rule": f"{first} starts its sharp fall", **values(e2)}
    ev["e3"] = {"rule": f"{last_} ends its sharp fall", **values(e3)}

    def rose(col: str, a: float, b: float) -> bool | None:
        va, vb = at(measures, col, a), at(measures, col, b)
        return None if va is None or vb is None else bool(vb > va)

    checks["memorisation_ends_after_memorised"] = (
        None if memorised_epoch is None else bool(e1 >= memorised_epoch)
    )
    checks["excluded_loss_rises_in_circuit_formation"] = rose("excluded_loss", e1, e2)
    fell = rose("restricted_loss", e1, e2)
    checks["restricted_loss_falls_in_circuit_formation"] = None if fell is None else not fell
    wn = rose("weight_norm", e2, e3)
    checks["weight_norm_falls_in_cleanup"] = None if wn is None else not wn
    checks["grok_epoch_in_cleanup"] = bool(e2 <= grok_epoch <= e3)
    phases = {
        "memorisation": [int(round(start)), int(round(e1))],
        "circuit_formation": [int(round(e1)), int(round(e2))],
        "cleanup": [int(round(e2)), int(round(e3))],
    }
    return {"phases": phases, "evidence": ev, "checks": checks}


def acc_epochs(r: Reached, curves: pd.DataFrame) -> tuple[int | None, int | None]:
    """(memorised, grok) epochs: train / val accuracy first >= 99% (the paper's definitions): the
    run's threshold epochs when its monitor is val/acc >= 0.99, else from its curves."""
    if r.monitor == "val/acc" and r.mode == "max" and r.threshold == THRESHOLD:
        return r.train_epoch, r.epoch
    out = []
    for col in ("train/acc", "val/acc"):
        rows = curves[["epoch", col]].dropna() if col in curves else pd.DataFrame()
        out.append(first_epoch_at(rows["epoch"], rows[col], THRESHOLD) if len(rows) else None)
    return out[0], out[1]


def phase_measures(
    progress: pd.DataFrame, traj: pd.DataFrame, df: pd.DataFrame
) -> tuple[pd.DataFrame, str]:
    """The signals phases are read from, one row per epoch, and where the excluded / restricted
    losses came from: train loss/acc and test (val) loss from the metric history ``df`` (every
    epoch / every validation); excluded and restricted loss from the snapshot trajectory (final key
    frequencies) when it has >= 3 points, else the live progress records; weight norm from the
    live records and the snapshots together (denser)."""
    rename = {"train/loss": "train_loss", "train/acc": "train_acc", "val/loss": "test_loss"}
    parts = (
        [df[["epoch", *[c for c in rename if c in df]]].rename(columns=rename)] if len(df) else []
    )
    wn = [d[["epoch", "weight_norm"]] for d in (progress, traj) if "weight_norm" in d]
    if wn:
        parts.append(pd.concat(wn).groupby("epoch", as_index=False).first())
    use_traj = len(traj) >= 3 and "excluded_loss" in traj
    src = traj if use_traj else progress
    losses = [c for c in ("epoch", "excluded_loss", "restricted_loss") if c in src]
    if use_traj:
        source = "snapshots (final key frequencies)"
    elif len(losses) > 1 and len(src):
        source = "progress.jsonl (live keys)"
    else:
        source = "metric history only (no excluded or restricted loss measured)"
    if len(losses) > 1 and len(src):
        parts.append(src[losses])
    if not parts:
        return pd.DataFrame(), source
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part, on="epoch", how="outer")
    return merged.sort_values("epoch").reset_index(drop=True), source


def report_phases(ctx: ReportContext, traj: pd.DataFrame) -> dict[str, Any] | None:
    """Place the phases for the report: ``phases``, ``phase_evidence``, ``phase_checks``,
    ``phase_source`` in report.json, a summary row per phase, and the phases as shaded spans on
    every figure over epochs (``ctx.marks``). Returns the phases (None when none were placed: the
    page says why)."""
    memorised, grok = acc_epochs(ctx.reached, ctx.curves)
    measures, source = phase_measures(ctx.run.progress, traj, ctx.curves)
    if measures.empty:
        ctx.note(TITLE, "no metric history or progress measures to place them from")
        return None
    found = detect_phases(measures, grok, memorised)
    phases = found["phases"]
    ctx.data.update(phases=phases, phase_evidence=found["evidence"], phase_source=source)
    ctx.data["phase_checks"] = found.get("checks", {})
    if not phases or not any(phases.values()):
        ctx.note(TITLE, "not placed: no memorised epoch (train accuracy never reached 99%) and no "
                 "excluded loss to place the end of memorisation")  # fmt: skip
        return None
    for name, span in phases.items():
        ctx.summary[f"phase: {PHASE_LABELS[name]}"] = f"{span[0]}-{span[1]}" if span else "-"
    ctx.marks.spans = {k: v for k, v in phases.items() if v}
    ctx.marks.labels, ctx.marks.colors = dict(PHASE_LABELS), dict(PHASE_COLORS)
    ctx.marks.caption = f"phases of grokking placed from the progress measures; source: {source}"
    return phases
