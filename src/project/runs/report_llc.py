"""The LLC section of the run report (any task): the local learning coefficient of each chosen
snapshot, estimated with devinterp (``project.interp.llc``), plotted with the loss curves.

Results are cached in ``<run_dir>/llc.json`` (``{settings key: {epoch: result}}``, loss traces
included), shared with the live ``LLCMonitor`` callback: a snapshot already estimated with the same
settings is not sampled again. Settings come from the run's ``callbacks.llc`` config when it has
one, else ``LLCConfig``'s defaults.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from project.interp.llc import CACHE, LLCConfig, estimate_llc, read_cache, write_result
from project.runs import report_plot as rp
from project.runs.report_generic import choose_snapshots
from project.stored import load_checkpoint

Section = tuple[str, str, str]
SETTINGS = tuple(LLCConfig.__dataclass_fields__)


def config_of(run_config: dict[str, Any]) -> LLCConfig:
    """The LLC settings of a run: its ``callbacks.llc`` node (when present), else the defaults."""
    node = (run_config.get("callbacks") or {}).get("llc") or {}
    return LLCConfig(**{k: node[k] for k in SETTINGS if k in node})


def llc_curve(
    run: Any, dm: Any, config: LLCConfig, max_snapshots: int, compute: bool = True
) -> pd.DataFrame:
    """``epoch, llc_mean, llc_std, seconds, cached`` per chosen snapshot (plus any epoch the live
    callback cached); with ``compute`` the missing snapshots are estimated and cached."""
    cached = read_cache(run.run_dir).get(config.key(), {})
    rows = {int(e): {**r, "cached": True} for e, r in cached.items()}
    if compute:
        tokens, labels = dm.split("train")
        for epoch, path in choose_snapshots(run.snapshot_paths, max_snapshots):
            if epoch in rows:
                continue
            net = load_checkpoint(path)[0]
            result = estimate_llc(net, tokens, labels, config, device="cpu")
            write_result(run.run_dir, config, epoch, result)
            rows[epoch] = {**result, "cached": False}
    cols = ["llc_mean", "llc_std", "init_loss", "seconds", "cached"]
    data = [{"epoch": e, **{c: r.get(c) for c in cols}} for e, r in sorted(rows.items())]
    return pd.DataFrame(data, columns=["epoch", *cols])


def section(curve: pd.DataFrame, curves: pd.DataFrame, config: LLCConfig, xscale: str) -> Section:
    """LLC (mean, band = +- std over chains) with the train/val loss on a second axis."""
    fig, axes = rp.figure(1, height=4.2)
    ax = axes[0]
    x = curve["epoch"].astype(float)
    mean, std = curve["llc_mean"].astype(float), curve["llc_std"].astype(float).fillna(0.0)
    ax.plot(x, mean, marker="o", ms=3, color="tab:red", label="LLC (mean over chains)")
    ax.fill_between(x, mean - std, mean + std, color="tab:red", alpha=0.2, label="+- std")
    ax.set_ylabel("LLC")
    ax.legend(loc="upper left")
    twin = ax.twinx()
    for col, style in (("train/loss", "-"), ("val/loss", "--")):
        if col in curves:
            rows = curves[["epoch", col]].dropna()
            twin.plot(rows["epoch"], rows[col], style, color="gray", lw=1, label=col)
    if twin.get_lines():
        rp.positive_log_y(twin)
        twin.set_ylabel("loss")
        twin.legend(loc="upper right")
    rp.x_axis(ax, xscale, float(max(x.max(), curves["epoch"].max() if len(curves) else 0)))
    fresh = curve[~curve["cached"].astype(bool)]
    per = float(curve["seconds"].astype(float).mean()) if len(curve) else float("nan")
    caption = (
        f"Local learning coefficient (devinterp SGLD: lr {config.lr:g}, n_beta "
        f"{config.resolved_n_beta():.3g}, localization {config.localization:g}, "
        f"{config.num_chains} chains x {config.num_draws} draws, batch {config.batch_size}) of "
        f"{len(curve)} snapshots; band = +- one std over chains. Cost: {per:.1f} s per snapshot "
        f"on average ({len(fresh)} computed now, the rest from {CACHE}). Grey: loss curves."
    )
    return "Local learning coefficient over training", rp.png(fig), caption
