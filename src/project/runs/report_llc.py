"""The LLC section of the run report (any task): the local learning coefficient of each chosen
snapshot, estimated with devinterp (``project.interp.llc``), plotted with the loss curves, and the
SGLD chains' loss traces with each estimate's convergence diagnostic.

Only estimates that pass their diagnostic are plotted as values; the others are marked (a grey x
on the epoch axis) and listed with the reason in the caption and ``report.json``.

Results are cached in ``<run_dir>/llc.json`` (``{settings key: {epoch: result}}``, loss traces
and diagnostics included), shared with the live ``LLCMonitor`` callback: a snapshot already
estimated with the same settings is not sampled again. Settings come from the run's
``callbacks.llc`` config when it has one, else ``LLCConfig``'s defaults.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps

from project.interp.llc import (
    CACHE,
    LLCConfig,
    diagnostic_of,
    estimate_llc,
    read_cache,
    write_result,
)
from project.runs import report_plot as rp
from project.runs.report_generic import choose_snapshots, frame_json
from project.stored import load_checkpoint

Section = tuple[str, str, str]
SETTINGS = tuple(LLCConfig.__dataclass_fields__)
DIAGNOSTIC = ("converged", "reason", "drift_rel", "doubling_change_rel", "chance_fraction")
COLUMNS = ["llc_mean", "llc_std", "init_loss", "n_beta", "seconds", "cached", *DIAGNOSTIC]


def config_of(run_config: dict[str, Any]) -> LLCConfig:
    """The LLC settings of a run: its ``callbacks.llc`` node (when present), else the defaults."""
    node = (run_config.get("callbacks") or {}).get("llc") or {}
    return LLCConfig(**{k: node[k] for k in SETTINGS if k in node})


def _row(epoch: int, result: dict[str, Any], cached: bool) -> dict[str, Any]:
    diag = diagnostic_of(result)
    row = {"epoch": epoch, **{c: result.get(c) for c in COLUMNS}, "cached": cached}
    row.update({k: diag.get(k) for k in DIAGNOSTIC})
    row["converged"] = bool(row["converged"])
    trace = result.get("trace_mean")
    if trace is None and result.get("loss_trace"):  # cached before trace_mean existed
        trace = np.asarray(result["loss_trace"], dtype=float).mean(0).tolist()
    row["trace_mean"] = trace
    return row


def llc_curve(
    run: Any, dm: Any, config: LLCConfig, max_snapshots: int, compute: bool = True
) -> pd.DataFrame:
    """One row per chosen snapshot (plus any epoch the live callback cached): ``epoch``,
    ``llc_mean``, ``llc_std``, ``init_loss``, ``seconds``, ``cached``, the diagnostic
    (``converged``, ``reason``, ...) and ``trace_mean`` (mean chain loss by draw); with ``compute``
    the missing snapshots are estimated and cached."""
    cached = read_cache(run.run_dir).get(config.key(), {})
    rows = {int(e): _row(int(e), r, True) for e, r in cached.items()}
    if compute:
        tokens, labels = dm.split("train")
        for epoch, path in choose_snapshots(run.snapshot_paths, max_snapshots):
            if epoch in rows:
                continue
            net = load_checkpoint(path)[0]
            result = estimate_llc(net, tokens, labels, config, device="cpu")
            write_result(run.run_dir, config, epoch, result)
            rows[epoch] = _row(epoch, result, False)
    return pd.DataFrame([rows[e] for e in sorted(rows)], columns=["epoch", *COLUMNS, "trace_mean"])


def report_data(curve: pd.DataFrame, config: LLCConfig) -> dict[str, Any]:
    """report.json's ``llc``: the settings, the curve with each estimate's diagnostic and trace;
    ``llc_mean`` is null where the estimate did not converge (its value is in ``unconverged``)."""
    shown = curve.copy()
    shown["llc_unconverged"] = shown["llc_mean"].where(~shown["converged"].astype(bool))
    shown["llc_mean"] = shown["llc_mean"].where(shown["converged"].astype(bool))
    return {"settings": config.key(), **frame_json(shown)}


def summary(curve: pd.DataFrame) -> str:
    """The report's one-line LLC summary: the last converged estimate, and how many did not."""
    ok = curve[curve["converged"].astype(bool)]
    bad = len(curve) - len(ok)
    tail = f" ({bad} of {len(curve)} estimates did not converge: not shown)" if bad else ""
    if ok.empty:
        return f"none converged{tail}"
    last = ok.iloc[-1]
    return f"{last['llc_mean']:.3g} +- {last['llc_std']:.2g} at epoch {int(last['epoch'])}{tail}"


def section(curve: pd.DataFrame, curves: pd.DataFrame, config: LLCConfig, xscale: str) -> Section:
    """Left: the converged LLC estimates (mean, error bar = +- std over chains) with the train/val
    loss on a second axis, unconverged ones as grey x on the epoch axis. Right: each snapshot's
    mean chain loss minus the loss at the weights, by draw (the diagnostic's input)."""
    fig, axes = rp.figure(2, height=4.2)
    ax = axes[0]
    ok = curve[curve["converged"].astype(bool)]
    bad = curve[~curve["converged"].astype(bool)]
    x = ok["epoch"].astype(float)
    if len(ok):
        ax.errorbar(x, ok["llc_mean"].astype(float), ok["llc_std"].astype(float).fillna(0.0),
                    marker="o", ms=3, color="tab:red", capsize=2,
                    label="LLC (converged; +- std over chains)")  # fmt: skip
    if len(bad):
        ax.plot(bad["epoch"].astype(float), np.zeros(len(bad)), "x", color="gray", ms=7,
                clip_on=False, label="not converged (no value)")  # fmt: skip
    ax.set_ylabel("LLC")
    ax.legend(loc="upper left", fontsize=8)
    twin = ax.twinx()
    for col, style in (("train/loss", "-"), ("val/loss", "--")):
        if col in curves:
            rows = curves[["epoch", col]].dropna()
            twin.plot(rows["epoch"], rows[col], style, color="gray", lw=1, label=col)
    if twin.get_lines():
        rp.positive_log_y(twin)
        twin.set_ylabel("loss")
        twin.legend(loc="upper right", fontsize=8)
    last = float(curve["epoch"].max()) if len(curve) else 0.0
    rp.x_axis(ax, xscale, float(max(last, curves["epoch"].max() if len(curves) else 0)))
    right = axes[1]
    colors = colormaps["viridis"](np.linspace(0, 1, max(1, len(curve))))
    for color, (_, row) in zip(colors, curve.iterrows(), strict=True):
        if row["trace_mean"] is None or row["init_loss"] is None:
            continue
        rise = np.asarray(row["trace_mean"], dtype=float) - float(row["init_loss"])
        style = "-" if row["converged"] else ":"
        right.plot(rise, style, color=color, lw=1, label=f"epoch {int(row['epoch'])}")
    right.set_xlabel("draw (after burn-in)")
    right.set_ylabel("mean chain loss - loss at the weights")
    if len(curve) <= 12:
        right.legend(fontsize=7, ncol=2)
    fresh = curve[~curve["cached"].astype(bool)]
    known = curve["n_beta"].dropna()
    n_beta = float(known.iloc[0]) if len(known) else config.resolved_n_beta()
    per = float(curve["seconds"].astype(float).mean()) if len(curve) else float("nan")
    failed = "; ".join(f"epoch {int(r['epoch'])}: {r['reason']}" for _, r in bad.iterrows())
    caption = (
        f"Local learning coefficient (devinterp SGLD: lr {config.lr:g}, n_beta "
        f"{n_beta:.3g}, localization {config.localization:g}, "
        f"{config.num_chains} chains x {config.num_draws} draws after "
        f"{config.num_burnin_steps} burn-in steps, batch {config.batch_size}) of {len(curve)} "
        f"snapshots; {len(ok)} pass the convergence diagnostic (chains levelled off, estimate "
        f"stable when the chain doubles, far from chance) and are plotted, error bar = +- one "
        f"std over chains. Right: the chains' mean loss by draw (dotted: not converged). "
        + (f"Not converged, no value shown: {failed}. " if len(bad) else "")
        + f"Cost: {per:.1f} s per snapshot on average ({len(fresh)} computed now, the rest from "
        f"{CACHE}). Grey lines: loss curves."
    )
    return "Local learning coefficient over training", rp.png(fig), caption
