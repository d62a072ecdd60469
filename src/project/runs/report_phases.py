"""The three phases of grokking measured from the progress measures (Nanda et al. 2023, §5).

``detect_phases(measures)`` takes one row per measured epoch with (some of) the columns
``epoch``, ``excluded_loss`` (train pairs, key frequencies removed), ``restricted_loss``,
``weight_norm`` (total sum of squared weights), ``gini`` (Gini of the Fourier norms of W_L or
W_E) and returns the phase boundaries, as the paper defines them:

* **memorisation** ``[first epoch, e1]``: e1 = where excluded loss is lowest (train loss has
  fallen; from here on the key-frequency circuit carries more and more of the train fit, so
  removing it hurts). Without excluded loss: where restricted loss peaks (starts to fall).
* **circuit formation** ``[e1, e2]``: e2 = where the sum of squared weights starts its steep
  fall, the knee of its curve after e1 (the point farthest above the chord from e1 to its
  minimum); the knee of Gini's rise (farthest below its chord) when there is no weight norm.
* **clean-up** ``[e2, e3]``: e3 = where Gini plateaus, the first epoch after e2 at which Gini has
  made ``plateau`` (90%) of its rise from e2 to its maximum (``gini_still_rising`` in the
  evidence when that is the last measured epoch).

Clean-up is when test loss falls, so a run that has not generalised (``grok_epoch`` None) has
circuit formation open to its last measured epoch and no clean-up yet.

Each series is smoothed by a centred running median of 3 first. A boundary that cannot be
measured yet (the run stopped before it) is ``None``; ``evidence`` holds every intermediate
number so the page can be checked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

PHASES = ("memorisation", "circuit_formation", "cleanup")


def _series(df: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray] | None:
    if col not in df:
        return None
    rows = df[["epoch", col]].dropna().sort_values("epoch")
    if len(rows) < 3:
        return None
    y = rows[col].astype(float).rolling(3, center=True, min_periods=1).median().to_numpy()
    return rows["epoch"].to_numpy(dtype=float), y


def knee(x: np.ndarray, y: np.ndarray, direction: str) -> int | None:
    """Index of the knee of a curve that is flat then falls (``direction="fall"``) or rises.

    Both axes scaled to [0, 1]; the knee is the point farthest from the chord joining the ends on
    the flat side (above it for a fall, below it for a rise). None with < 3 points or no change.
    """
    if len(x) < 3 or x[-1] == x[0] or np.ptp(y) == 0:
        return None
    xs = (x - x[0]) / (x[-1] - x[0])
    ys = (y - y.min()) / np.ptp(y)
    chord = ys[0] + (ys[-1] - ys[0]) * xs
    gap = ys - chord if direction == "fall" else chord - ys
    i = int(np.argmax(gap))
    return i if gap[i] > 0 else None


def detect_phases(
    measures: pd.DataFrame, grok_epoch: int | None = None, plateau: float = 0.9
) -> dict[str, Any]:
    """Phase boundaries from the measures; see the module docstring.

    Returns ``{"phases": {name: [start, end] or None}, "evidence": {...}}``; epochs are completed
    epochs. ``grok_epoch`` (first epoch with val acc >= 99%) bounds the search for e1.
    """
    ev: dict[str, Any] = {"plateau": plateau, "grok_epoch": grok_epoch}
    epochs = measures["epoch"].dropna().astype(float) if "epoch" in measures else pd.Series([])
    if epochs.empty:
        return {"phases": dict.fromkeys(PHASES), "evidence": ev}
    start, last = float(epochs.min()), float(epochs.max())

    e1 = None
    excl = _series(measures, "excluded_loss")
    if excl is not None:
        x, y = excl
        upto = x <= (grok_epoch if grok_epoch is not None else last)
        if upto.any():
            e1 = float(x[upto][int(np.argmin(y[upto]))])
            ev["excluded_loss_min"] = {"epoch": e1, "value": float(y[upto].min())}
    restr = _series(measures, "restricted_loss")
    if restr is not None:
        x, y = restr
        upto = x <= (grok_epoch if grok_epoch is not None else last)
        if upto.any():
            peak = float(x[upto][int(np.argmax(y[upto]))])
            ev["restricted_loss_peak"] = {"epoch": peak, "value": float(y[upto].max())}
            if e1 is None:
                e1 = peak
    ev["e1_rule"] = "argmin excluded loss" if excl is not None else "argmax restricted loss"

    e2 = None
    if e1 is not None and grok_epoch is None:
        # clean-up is when test loss falls: without generalisation the circuit is still forming
        ev["circuit_formation_open"] = True
    elif e1 is not None:
        wn = _series(measures, "weight_norm")
        if wn is not None:
            x, y = wn
            after = x >= e1
            x, y = x[after], y[after]
            if len(x) >= 3:
                end = int(np.argmin(y))
                i = knee(x[: end + 1], y[: end + 1], "fall") if end >= 2 else None
                if i is not None:
                    e2 = float(x[i])
                    ev["weight_norm_knee"] = {"epoch": e2, "value": float(y[i])}
        gi = _series(measures, "gini")
        if gi is not None:
            x, y = gi
            after = x >= e1
            x, y = x[after], y[after]
            if len(x) >= 3:
                end = int(np.argmax(y))
                i = knee(x[: end + 1], y[: end + 1], "rise") if end >= 2 else None
                if i is not None:
                    ev["gini_knee"] = {"epoch": float(x[i]), "value": float(y[i])}
                    if e2 is None:
                        e2 = float(x[i])
    ev["e2_rule"] = "knee of the weight-norm fall (else of the Gini rise)"

    e3 = None
    if e2 is not None:
        gi = _series(measures, "gini")
        if gi is not None:
            x, y = gi
            after = x >= e2
            x, y = x[after], y[after]
            if len(x):
                g0, gmax = float(y[0]), float(y.max())
                if gmax > g0:
                    hit = np.flatnonzero(y >= g0 + plateau * (gmax - g0))
                    e3 = float(x[hit[0]])
                    # still rising at the end of the run: the plateau is not reached yet
                    ev["gini_still_rising"] = bool(e3 >= last and len(x) > 1)
                    ev["gini_plateau"] = {"epoch": e3, "from": g0, "max": gmax}
    ev["e3_rule"] = f"Gini reaches {plateau:.0%} of its rise after e2"

    def span(a: float | None, b: float | None) -> list[int] | None:
        return [int(a), int(b)] if a is not None and b is not None else None

    e1_ = None if e1 is None else max(start, e1)
    if ev.get("circuit_formation_open") and e1_ is not None and last > e1_:
        phases_open = {"memorisation": span(start, e1_), "circuit_formation": span(e1_, last)}
        return {"phases": {**phases_open, "cleanup": None}, "evidence": ev}
    e2_ = None if e2 is None or e1_ is None else max(e1_, e2)
    e3_ = None if e3 is None or e2_ is None else max(e2_, e3)
    phases = {
        "memorisation": span(start, e1_),
        "circuit_formation": span(e1_, e2_),
        "cleanup": span(e2_, e3_),
    }
    return {"phases": phases, "evidence": ev}
