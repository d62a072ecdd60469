"""The three phases of grokking, placed from the signals Nanda et al. 2023 (§5.1) name, and the
paper's description of each phase tested on them (``report_fourier.report_sections`` calls
:func:`report_phases`; ``scripts/phase_table.py`` prints them for the runs in ``docs/results``).

``detect_phases(measures, grok_epoch, memorised_epoch)`` takes one row per measured epoch with
(some of) the columns ``epoch``, ``train_loss``, ``test_loss`` (val loss), ``excluded_loss`` (train
pairs, key frequencies removed from the logits), ``restricted_loss`` (only the key frequencies
kept) and ``weight_sq_sum`` (the paper's total sum of squared weights; ``weight_norm`` is read as
the same column). Boundaries:

* **e1, memorisation ends**: the later of the memorised epoch (train accuracy first >= 99%) and the
  epoch at which the excluded loss has come down to within ``settle`` (5%) of its lowest value
  before the grok (the band, not the argmin, so that a flat minimum sampled at another cadence does
  not move it).
* **e2, clean-up begins**: where the first of test loss and restricted loss starts its sharp fall.
  A loss falls sharply where ln(loss) falls at least ``sharp`` (25%) as fast as at its steepest
  after e1; the sharp fall is the contiguous stretch around that steepest point (it may reach back
  before e1). Losses are floored at the lowest train loss of the run before the log (a test loss
  as low as the train loss ever got has no further to fall).
* **e3, clean-up ends**: where the last of the two ends its sharp fall.

A phase whose boundaries are out of order or closer than the smoothing window (``window`` x the
run length: the detector cannot tell them apart) is **not separated**: ``phases[name]`` is None
and ``not_placed[name]`` says why (e.g. the restricted loss is already falling sharply where
memorisation ends: no circuit formation lies between them), never a zero-length interval;
clean-up then starts at e1. A run that has not generalised (``grok_epoch`` None) has circuit
formation open to its last measured epoch and no clean-up.

``checks`` test the paper's description of each phase on the placed spans, and can fail; each
comes with its numbers in ``check_values``. "Falls / rises" compares the values at the two ends of
the span. A *share* is a fall in ln(loss) over a stretch divided by a reference fall; ``share``
(0.5) is the line between "most" and "little":

* memorisation: train loss falls; excluded loss tracks train loss (its fall over memorisation is
  >= ``share`` of the train loss's fall: the train fit does not yet rest on the key frequencies);
  test and restricted loss stay high (< ``share`` of their fall to their lowest is done by e1).
* circuit formation: excluded loss rises; restricted loss falls; test loss stays high
  (< ``share`` of its fall to its lowest is done by e2).
* clean-up: test loss falls sharply (>= ``share`` of its fall from e2 to its lowest happens in
  clean-up); restricted loss falls; the sum of squared weights falls, and faster (ln per epoch)
  than over circuit formation; the grok epoch lies in clean-up (nearly so by construction, as
  clean-up is placed by the test-loss fall: reported, not evidence).

A check on a phase that is absent or not separated is None. ``sensitivity`` gives the boundaries
recomputed with one detector constant moved at a time (``VARIANTS``), so a reader sees how much of
a boundary is the data and how much the constant.

Cadence: every series is interpolated linearly onto one uniform grid of ``GRID`` points over the
run and smoothed by a running mean over ``window`` (5%) of the run length, so a boundary does not
depend on how densely the snapshots sample it (halving or doubling the cadence moves boundaries
by <= 5% of the run length). Rates are per epoch, of the natural log of the loss. ``evidence`` holds, per boundary, the rule that placed it and every
signal's value there, the excluded-loss low and the sharp-fall stretches with their rates.
"""

from __future__ import annotations

import json
from pathlib import Path
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
    "weight_sq_sum",
)
SHARE = 0.5  # "most" of a fall vs "little" of it (the checks' line; see the module docstring)
VARIANTS = {"settle": (0.02, 0.05, 0.1), "sharp": (0.1, 0.25, 0.5), "window": (0.025, 0.05, 0.1)}
OLD_NAMES = {"weight_norm": "weight_sq_sum"}  # old column name: new


def with_sq_sum(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the old column name ``weight_norm`` read as ``weight_sq_sum``."""
    old = {k: v for k, v in OLD_NAMES.items() if k in df and v not in df}
    return df.rename(columns=old) if old else df


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
    """The stretch where ``y`` (a smoothed log loss on ``grid``) falls at >= ``sharp`` x its
    steepest rate after ``after``: ``{start, end, steepest, rate}`` (rates in ln per epoch) or None.
    The steepest point lies after ``after``; the stretch around it may reach back before it."""
    rate = np.gradient(y, grid)
    finite = np.isfinite(rate)
    ok = (grid >= after) & finite
    if not ok.any():
        return None
    masked = np.where(ok, rate, np.inf)
    i = int(np.argmin(masked))
    if not masked[i] < 0:
        return None
    steep = finite & (np.where(finite, rate, 0.0) <= sharp * masked[i])
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


def _boundaries(
    measures: pd.DataFrame,
    grok_epoch: int | None,
    memorised_epoch: int | None,
    sharp: float,
    window: float,
    settle: float,
) -> dict[str, Any]:
    """The raw boundaries: ``e1``, ``e2`` (where the first sharp fall starts; it may lie before
    e1), ``e3`` (None where not placed), the rules and what placed them (``ev``)."""
    out: dict[str, Any] = {"e1": None, "e2": None, "e3": None, "ev": {}}
    ev = out["ev"]
    epochs = measures["epoch"].dropna().astype(float) if "epoch" in measures else pd.Series([])
    if epochs.empty:
        return out
    start, last = float(epochs.min()), float(epochs.max())
    out.update(start=start, last=last)
    e1: float | None = None if memorised_epoch is None else float(memorised_epoch)
    out["rule1"] = "memorised epoch (train acc >= 99%)"
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
                e1, out["rule1"] = low, f"excluded loss within {settle:.0%} of its pre-grok low"
    if e1 is None:
        return out
    e1 = out["e1"] = min(max(start, e1), last)
    if grok_epoch is None or e1 >= last:
        out["open"] = True  # clean-up (test loss falls) has not begun
        return out
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
    if falls:
        out["first"] = min(falls, key=lambda c: falls[c]["start"])
        out["last_fall"] = max(falls, key=lambda c: falls[c]["end"])
        out["e2"] = falls[out["first"]]["start"]
        out["e3"] = falls[out["last_fall"]]["end"]
    return out


def _ln(measures: pd.DataFrame, col: str, epoch: float) -> float | None:
    v = at(measures, col, epoch)
    return None if v is None else float(np.log(max(v, 1e-30)))


def _fall(measures: pd.DataFrame, col: str, a: float, b: float) -> float | None:
    """ln(col at a) - ln(col at b): how far (nats) ``col`` fell from a to b (< 0: it rose)."""
    la, lb = _ln(measures, col, a), _ln(measures, col, b)
    return None if la is None or lb is None else la - lb


def _lowest_after(measures: pd.DataFrame, col: str, a: float) -> float | None:
    """ln of the lowest measured value of ``col`` at or after epoch ``a`` (None when absent)."""
    s = _series(measures, col)
    if s is None or not (s[0] >= a).any():
        return None
    return float(np.log(max(float(s[1][s[0] >= a].min()), 1e-30)))


def _checks(
    m: pd.DataFrame, spans: dict[str, tuple[float, float] | None], grok: int | None, share: float
) -> tuple[dict[str, bool | None], dict[str, dict[str, Any]]]:
    """The paper's description of each phase tested on the spans (see the module docstring)."""
    checks: dict[str, bool | None] = {}
    values: dict[str, dict[str, Any]] = {}

    def put(name: str, ok: bool | None, **vals: Any) -> None:
        checks[name] = ok
        values[name] = {
            k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in vals.items()
        }

    def moved(name: str, col: str, span: tuple[float, float] | None, falls: bool) -> None:
        d = None if span is None else _fall(m, col, *span)
        if d is None:
            return put(name, None)
        put(name, bool(d > 0), fall_nats=d) if falls else put(name, bool(d < 0), rise_nats=-d)

    def stays_high(name: str, col: str, start: float, upto: float | None) -> None:
        """< ``share`` of the loss's fall from ``start`` to its lowest value is done by ``upto``."""
        lo, l0 = _lowest_after(m, col, start), _ln(m, col, start)
        d = None if upto is None else _fall(m, col, start, upto)
        if lo is None or l0 is None or d is None:
            return put(name, None)
        total = l0 - lo
        frac = d / total if total > 0 else 0.0
        put(name, bool(frac < share), fall_nats=d, whole_run_fall_nats=total, share=frac,
            needs=f"< {share}")  # fmt: skip

    mem, cf, cu = (spans.get(name) for name in PHASES)
    moved("train_loss_falls_in_memorisation", "train_loss", mem, falls=True)
    tl = None if mem is None else _fall(m, "train_loss", *mem)
    ex = None if mem is None else _fall(m, "excluded_loss", *mem)
    if tl is None or ex is None or tl <= 0:
        put("excluded_loss_tracks_train_loss_in_memorisation", None)
    else:
        put("excluded_loss_tracks_train_loss_in_memorisation", bool(ex / tl >= share),
            excluded_fall_nats=ex, train_fall_nats=tl, share=ex / tl,
            needs=f">= {share}")  # fmt: skip
    start = mem[0] if mem else 0.0
    stays_high("test_loss_stays_high_in_memorisation", "test_loss", start, mem and mem[1])
    stays_high("restricted_loss_stays_high_in_memorisation", "restricted_loss", start,
               mem and mem[1])  # fmt: skip
    moved("excluded_loss_rises_in_circuit_formation", "excluded_loss", cf, falls=False)
    moved("restricted_loss_falls_in_circuit_formation", "restricted_loss", cf, falls=True)
    stays_high("test_loss_stays_high_in_circuit_formation", "test_loss", start, cf and cf[1])
    if cu is None:
        put("test_loss_falls_sharply_in_cleanup", None)
    else:
        d, lo, l0 = _fall(m, "test_loss", *cu), _lowest_after(m, "test_loss", cu[0]),\
            _ln(m, "test_loss", cu[0])  # fmt: skip
        if d is None or lo is None or l0 is None or l0 - lo <= 0:
            put("test_loss_falls_sharply_in_cleanup", None if d is None else False)
        else:
            put("test_loss_falls_sharply_in_cleanup", bool(d / (l0 - lo) >= share),
                fall_nats=d, fall_to_lowest_nats=l0 - lo, share=d / (l0 - lo),
                needs=f">= {share}")  # fmt: skip
    moved("restricted_loss_falls_in_cleanup", "restricted_loss", cu, falls=True)
    moved("weight_sq_sum_falls_in_cleanup", "weight_sq_sum", cu, falls=True)

    def rate(span: tuple[float, float] | None) -> float | None:
        """How fast (ln per epoch) the sum of squared weights falls over ``span``."""
        d = None if span is None or span[1] <= span[0] else _fall(m, "weight_sq_sum", *span)
        return None if d is None or span is None else d / (span[1] - span[0])

    rates = [rate(cf), rate(cu)]
    if rates[0] is None or rates[1] is None:
        put("weight_sq_sum_falls_faster_in_cleanup", None)
    else:
        put("weight_sq_sum_falls_faster_in_cleanup", bool(rates[1] > max(rates[0], 0.0)),
            cleanup_nats_per_epoch=rates[1], circuit_formation_nats_per_epoch=rates[0])  # fmt: skip
    put("grok_epoch_in_cleanup", None if cu is None or grok is None else
        bool(cu[0] <= grok <= cu[1]), grok_epoch=grok)  # fmt: skip
    return checks, values


def detect_phases(
    measures: pd.DataFrame,
    grok_epoch: int | None = None,
    memorised_epoch: int | None = None,
    sharp: float = 0.25,
    window: float = 0.05,
    settle: float = 0.05,
    share: float = SHARE,
    sensitivity: bool = True,
) -> dict[str, Any]:
    """Phase boundaries from the measures and the paper's description tested on them; see the
    module docstring.

    Returns ``{"phases": {name: [start, end] or None}, "not_placed": {name: why}, "evidence",
    "checks": {name: bool or None}, "check_values", "sensitivity"}``; epochs are completed epochs.
    ``window`` is a fraction of the run length.
    """
    measures = with_sq_sum(measures)
    ev: dict[str, Any] = {"grok_epoch": grok_epoch, "memorised_epoch": memorised_epoch,
                          "sharp": sharp, "window_frac": window, "settle": settle,
                          "share": share}  # fmt: skip
    b = _boundaries(measures, grok_epoch, memorised_epoch, sharp, window, settle)
    ev.update(b["ev"])
    out: dict[str, Any] = {"phases": dict.fromkeys(PHASES), "not_placed": {}, "evidence": ev,
                           "checks": {}, "check_values": {}, "sensitivity": {}}  # fmt: skip
    why = out["not_placed"]
    if b["e1"] is None:
        why.update(dict.fromkeys(PHASES, "no memorised epoch (train accuracy never reached 99%) "
                                 "and no excluded loss to place the end of memorisation"))  # fmt: skip
        return out
    start, last, e1 = b["start"], b["last"], b["e1"]

    def values(epoch: float) -> dict[str, Any]:
        found = {col: at(measures, col, epoch) for col in SIGNALS}
        return {"epoch": round(epoch, 1), **{k: v for k, v in found.items() if v is not None}}

    ev["e1"] = {"rule": b["rule1"], **values(e1)}
    spans: dict[str, tuple[float, float] | None] = {"memorisation": (start, e1)}
    if b.get("open"):
        ev["circuit_formation_open"] = True
        why["cleanup"] = "not reached: the run has not generalised (val acc never >= 99%)"
        if last > e1:
            spans["circuit_formation"] = (e1, last)
        else:
            why["circuit_formation"] = "not reached: memorisation lasts to the last epoch"
    elif b["e2"] is None:
        why["circuit_formation"] = why["cleanup"] = (
            "no sharp fall of test or restricted loss after memorisation ends"
        )
    else:
        e2, e3 = b["e2"], b["e3"]
        first = b["first"].replace("_", " ")
        ev["e2"] = {"rule": f"{first} starts its sharp fall", **values(e2)}
        ev["e3"] = {"rule": f"{b['last_fall'].replace('_', ' ')} ends its sharp fall", **values(e3)}
        res = window * (last - start)  # the smoothing window: boundaries closer are one epoch
        ev["resolution"] = {"rule": "the smoothing window (window x run length)", "epochs": res}
        if e2 - e1 < res:
            when = "before" if e2 < e1 else f"within {res:.0f} epochs (the smoothing window) of"
            why["circuit_formation"] = (
                f"not separated: {first} is already falling sharply at epoch {e2:.0f}, {when} "
                f"the end of memorisation at {e1:.0f} ({b['rule1']}); no stretch in which "
                "excluded loss rises while test loss stays high lies between them"
            )
            e2 = e1  # clean-up starts where memorisation ends: nothing lies between
        else:
            spans["circuit_formation"] = (e1, e2)
        if e3 - e2 < res:
            why["cleanup"] = (
                f"not separated: the sharp falls end at {e3:.0f}, within {res:.0f} epochs "
                f"(the smoothing window) of where clean-up would start ({e2:.0f})"
            )
        else:
            spans["cleanup"] = (e2, e3)
    for name in PHASES:
        span = spans.get(name)
        out["phases"][name] = None if span is None else [int(round(span[0])), int(round(span[1]))]
    out["checks"], out["check_values"] = _checks(measures, spans, grok_epoch, share)
    if sensitivity:
        out["sensitivity"] = boundary_sensitivity(
            measures, grok_epoch, memorised_epoch, sharp=sharp, window=window, settle=settle
        )
    return out


def boundary_sensitivity(
    measures: pd.DataFrame,
    grok_epoch: int | None,
    memorised_epoch: int | None,
    sharp: float = 0.25,
    window: float = 0.05,
    settle: float = 0.05,
) -> dict[str, dict[str, dict[str, int | None]]]:
    """Every boundary with one detector constant moved at a time:
    ``{constant: {value: {"e1", "e2", "e3"}}}`` (rounded epochs, None where not placed; e2 is
    where the first sharp fall starts, also when that is before e1)."""
    base = {"settle": settle, "sharp": sharp, "window": window}
    out: dict[str, dict[str, dict[str, int | None]]] = {}
    for name, options in VARIANTS.items():
        out[name] = {}
        for value in options:
            kw = {**base, name: value}
            b = _boundaries(measures, grok_epoch, memorised_epoch, **kw)
            out[name][f"{value:g}"] = {
                k: None if b[k] is None else int(round(b[k])) for k in ("e1", "e2", "e3")
            }
    return out


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
    frequencies) when it has >= 3 points, else the live progress records; the sum of squared
    weights from the live records and the snapshots together (denser)."""
    progress, traj = with_sq_sum(progress), with_sq_sum(traj)
    rename = {"train/loss": "train_loss", "train/acc": "train_acc", "val/loss": "test_loss"}
    parts = (
        [df[["epoch", *[c for c in rename if c in df]]].rename(columns=rename)] if len(df) else []
    )
    sq = [d[["epoch", "weight_sq_sum"]] for d in (progress, traj) if "weight_sq_sum" in d]
    if sq:
        parts.append(pd.concat(sq).groupby("epoch", as_index=False).first())
    use_traj = len(traj) >= 3 and "excluded_loss" in traj
    src = traj if use_traj else progress
    losses = [c for c in ("epoch", "excluded_loss", "restricted_loss") if c in src]
    source = "metric history only (no excluded or restricted loss measured)"
    if len(losses) > 1 and len(src):
        parts.append(src[losses])
        source = "progress.jsonl (live keys)"
    if use_traj:
        source = "snapshots (final key frequencies)"
    if not parts:
        return pd.DataFrame(), source
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part, on="epoch", how="outer")
    return merged.sort_values("epoch").reset_index(drop=True), source


def report_phases(ctx: ReportContext, traj: pd.DataFrame) -> dict[str, Any] | None:
    """Place the phases for the report: ``phases``, ``phases_not_placed``, ``phase_evidence``,
    ``phase_checks``, ``phase_check_values``, ``phase_sensitivity`` and ``phase_source`` in
    report.json, a summary row per phase (with why, where one is not placed) and per failed check,
    and the phases as shaded spans on every figure over epochs (``ctx.marks``). Returns the phases
    (None when none were placed: the page says why)."""
    memorised, grok = acc_epochs(ctx.reached, ctx.curves)
    measures, source = phase_measures(ctx.run.progress, traj, ctx.curves)
    if measures.empty:
        ctx.note(TITLE, "no metric history or progress measures to place them from")
        return None
    found = detect_phases(measures, grok, memorised)
    phases = found["phases"]
    ctx.data.update(phases=phases, phases_not_placed=found["not_placed"],
                    phase_evidence=found["evidence"], phase_source=source,
                    phase_checks=found["checks"], phase_check_values=found["check_values"],
                    phase_sensitivity=found["sensitivity"])  # fmt: skip
    if not any(phases.values()):
        ctx.note(TITLE, "not placed: " + found["not_placed"].get("memorisation", "no measures"))
        return None
    for name, span in phases.items():
        label = f"phase: {PHASE_LABELS[name]}"
        ctx.summary[label] = f"{span[0]}-{span[1]}" if span else found["not_placed"].get(name, "-")
    failed = [k for k, v in found["checks"].items() if v is False]
    ctx.summary["phase checks failed"] = ", ".join(failed) or "none"
    ctx.marks.spans = {k: v for k, v in phases.items() if v}
    ctx.marks.labels, ctx.marks.colors = dict(PHASE_LABELS), dict(PHASE_COLORS)
    ctx.marks.caption = f"phases of grokking placed from the progress measures; source: {source}"
    return phases


def read_trajectory(run_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``trajectory.jsonl`` and ``final.json`` of a recorded run dir (empty when absent)."""
    path, final = run_dir / "trajectory.jsonl", run_dir / "final.json"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    from project.interp import fourier as fo

    traj = with_sq_sum(pd.DataFrame(rows))
    if "embed_norms" in traj:
        traj["embed_norms"] = traj["embed_norms"].map(np.asarray)
    rec = json.loads(final.read_text()) if final.is_file() else {}
    if "weight_norm" in rec and "weight_sq_sum" not in rec:
        rec["weight_sq_sum"] = rec.pop("weight_norm")
    # recorded with the wrong label: the keys came from neurons
    if rec.get("key_rule") == fo.KEY_RULE and "neuron_explained_frac" in rec:
        rec["key_rule"] = fo.NEURON_KEY_RULE
    return traj, rec
