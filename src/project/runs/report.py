"""One-command run report: ``uv run python -m project.runs.report <run_dir>`` (or
``python -m project.report <run_dir>``).

Writes ``<run_dir>/report/index.html``, one self-contained page (figures are embedded PNG data
URIs, >= 1000 px wide, one-line caption each), and ``<run_dir>/report/report.json`` with every
number behind it: the phases measured from the progress measures (``phases``: memorisation,
circuit_formation, cleanup as ``[start, end]`` epochs; see ``project.runs.report_phases``),
``grok_epoch``, the curves, the snapshot trajectory and the final spectra.

Sections for any task under the template contract: summary, training curves (linear x by default,
log-y loss with a ln(classes) line), attention per head on an example, head and layer ablation
effects; for induction tasks, head scores. For modular-arithmetic runs, the measures of Nanda et
al. 2023 recomputed on the checkpoint snapshots with the final model's key frequencies, and the
paper's figures. For group-composition runs (``project.data.groups``), the representation
measures of Chughtai et al. 2023 (key irreps, restricted/excluded loss, shares per irrep) on the
snapshots with the final model's key irreps (``project.runs.report_groups``). Epochs are completed
epochs throughout.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from project.interp import fourier as fo  # noqa: E402
from project.runs import report_generic as rg  # noqa: E402
from project.runs.load import Run, first_epoch_at, load_run  # noqa: E402
from project.runs.record import read_trajectory  # noqa: E402
from project.runs.report_phases import detect_phases  # noqa: E402

THRESHOLD = 0.99
Section = tuple[str, str, str]
NEEDS_WEIGHTS = [
    "key frequencies and measures recomputed with the final model (trajectory.jsonl if recorded, "
    "else the live ones)",
    "Fourier spectra of W_E and W_L",
    "neurons in the 2-D Fourier basis",
    "attention patterns",
    "head and layer ablations",
    "induction head scores and ablations",
]


def has_weights(run: Run) -> bool:
    """Whether the run dir holds a model (last.ckpt or a snapshot)."""
    return (run.run_dir / "checkpoints" / "last.ckpt").is_file() or bool(run.snapshot_paths)


def thresholds(df: pd.DataFrame) -> tuple[int | None, int | None]:
    """(epoch train acc first >= 99%, epoch val acc first >= 99%) from the curves."""
    out = []
    for col in ("train/acc", "val/acc"):
        rows = df[["epoch", col]].dropna() if col in df else pd.DataFrame(columns=["epoch", col])
        out.append(first_epoch_at(rows["epoch"].to_numpy(), rows[col].to_numpy(), THRESHOLD))
    return out[0], out[1]


def phase_measures(run: Run, traj: pd.DataFrame, df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The signals phases are read from, one row per epoch: train loss/acc and test (val) loss
    from the metric history ``df`` (every epoch / every validation); excluded and restricted loss
    from the snapshot trajectory (final key frequencies) when it has >= 3 points, else the live
    progress records; weight norm from the live records and the snapshots together (denser)."""
    rename = {"train/loss": "train_loss", "train/acc": "train_acc", "val/loss": "test_loss"}
    parts = (
        [df[["epoch", *[c for c in rename if c in df]]].rename(columns=rename)] if len(df) else []
    )
    wn = [d[["epoch", "weight_norm"]] for d in (run.progress, traj) if "weight_norm" in d]
    if wn:
        parts.append(pd.concat(wn).groupby("epoch", as_index=False).first())
    use_traj = len(traj) >= 3 and "excluded_loss" in traj
    src = traj if use_traj else run.progress
    losses = [c for c in ("epoch", "excluded_loss", "restricted_loss") if c in src]
    source = "snapshots (final key frequencies)" if use_traj else "progress.jsonl (live keys)"
    if len(losses) > 1 and len(src):
        parts.append(src[losses])
    if not parts:
        return pd.DataFrame(), source
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part, on="epoch", how="outer")
    return merged.sort_values("epoch").reset_index(drop=True), source


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray | torch.Tensor):
        return _jsonable(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(float(x)) else None
    return x


def _frame(df: pd.DataFrame) -> dict[str, list[Any]]:
    return {str(c): _jsonable(df[c].tolist()) for c in df.columns}


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else html.escape(str(x))


def page(title: str, verdict: str, summary: dict[str, Any], sections: list[Section]) -> str:
    rows = "".join(f"<tr><th>{_fmt(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in summary.items())
    body = "".join(
        f'<section><h2>{html.escape(t)}</h2><img alt="{html.escape(t)}" src="{src}">'
        f"<p class='cap'>{html.escape(cap)}</p></section>"
        for t, src, cap in sections
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;max-width:1450px;margin:2em auto;color:#222;padding:0 1em}"
        "img{max-width:100%;display:block}th{text-align:left;padding-right:1em}"
        "td,th{border-bottom:1px solid #eee;padding:2px 6px}.cap{color:#444;margin-top:.3em}"
        ".verdict{font-size:1.2em;font-weight:bold}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='verdict'>{html.escape(verdict)}</p>"
        f"<table>{rows}</table>{body}</body></html>"
    )


def verdict_text(t_mem: int | None, t_grok: int | None, val_max: float | None) -> str:
    """One neutral line for any task (a delayed rise of val acc is grokking; not every task does)."""
    if t_grok:
        text = f"Validation accuracy first reached {THRESHOLD:.0%} after {t_grok} epochs"
        if t_mem:
            return text + f", {t_grok - t_mem} epochs after train accuracy did."
        return text + "."
    if val_max is not None:
        return f"Validation accuracy never reached {THRESHOLD:.0%} (best {val_max:.1%})."
    return "No validation accuracy logged."


def build_report(
    run_dir: str | Path, max_snapshots: int = 40, xscale: str = "linear", llc: bool = False,
    llc_snapshots: int = 12,
) -> Path:  # fmt: skip
    """Write ``<run_dir>/report/index.html`` and ``report.json``; returns the page's path.

    ``llc``: estimate the local learning coefficient of up to ``llc_snapshots`` snapshots with
    devinterp (needs ``uv sync --extra llc``; cached in ``<run_dir>/llc.json``). Without it, LLC
    values already cached (by the live callback or an earlier report) are still shown.
    """
    from project.runs import report_fourier as rf

    run = load_run(run_dir)
    dm = run.datamodule()
    weights = has_weights(run)
    model = run.final_model() if weights else None
    df = rg.curves(run)
    t_mem, t_grok = thresholds(df)
    end = int(df["epoch"].max()) if len(df) else (run.epochs[-1] if run.epochs else 0)
    val_max = (
        float(df["val/acc"].max()) if "val/acc" in df and df["val/acc"].notna().any() else None
    )
    summary: dict[str, Any] = {"run dir": str(run.run_dir), "task": run.config.get("data", {}).get(
        "_target_", "?"), "epochs trained": end}  # fmt: skip
    summary["memorised (train acc >= 99%)"] = f"after {t_mem} epochs" if t_mem else "not yet"
    summary["generalised (val acc >= 99%)"] = f"after {t_grok} epochs" if t_grok else "not yet"
    data: dict[str, Any] = {"run_dir": str(run.run_dir), "grok_epoch": t_grok,
                            "memorised_epoch": t_mem, "curves": _frame(df)}  # fmt: skip

    traj, keys, acts, modular = pd.DataFrame(), [], None, run.is_modular and hasattr(dm, "modulus")
    if weights:
        modular = modular and hasattr(
            model, "run_with_hooks"
        )  # the Fourier tools need a hooked net
    if not weights:
        summary["weights"] = "none in this run dir: " + "; ".join(NEEDS_WEIGHTS)
        data["not_computed_needs_weights"] = NEEDS_WEIGHTS
        recorded, final_rec = read_trajectory(run.run_dir)
        if modular and len(recorded):  # python -m project.runs.record: final-key measures
            traj, keys = recorded, list(final_rec.get("key_freqs", []))
            summary["task"] = f"{dm.operation} mod {dm.modulus}, train fraction {dm.frac_train}"
            summary["key frequencies (neuron clusters, recorded)"] = keys or "none"
            data["final"] = final_rec
            data["trajectory"] = _frame(traj)
        elif modular and len(run.progress):
            traj = run.progress  # the live measures stand in for the snapshot trajectory
            keys = list(run.progress["key_freqs"].dropna().iloc[-1]) if "key_freqs" in traj else []
            summary["task"] = f"{dm.operation} mod {dm.modulus}, train fraction {dm.frac_train}"
            summary["key frequencies (live, last progress record)"] = keys or "none"
            data["final"] = {"key_freqs": keys, "key_rule": "live (progress.jsonl)"}
    elif modular and model is not None:
        p, op = dm.modulus, dm.operation
        _, acts = fo.grid_forward(model, p)
        final = fo.progress_measures(model, p, dm.tokens, dm.answers, dm.train_idx, dm.val_idx, op)
        keys = final["key_freqs"]
        embed_keys = fo.key_frequencies_from_norms(fo.embedding_frequency_norms(model, p))
        if run.snapshot_paths:
            traj = rf.trajectory(run.snapshot_paths, dm, keys, max_snapshots)
        summary["task"] = f"{op} mod {p}, train fraction {dm.frac_train}"
        summary["key frequencies (neuron clusters)"] = keys or "none"
        summary["key frequencies (embedding spectrum)"] = embed_keys or "none"
        summary["final train / val acc"] = f"{final['train_acc']:.2%} / {final['val_acc']:.2%}"
        summary["neurons >85% one frequency"] = f"{final.get('neuron_explained_frac', 0.0):.0%}"
        data["final"] = {**_jsonable(final), **rf.final_numbers(model, dm, keys),
                         "key_freqs_embedding": embed_keys, "key_rule": fo.KEY_RULE}  # fmt: skip
        data["trajectory"] = _frame(traj)
    recorded_traj = not weights and (run.run_dir / "trajectory.jsonl").is_file()
    measures, source = phase_measures(run, traj if weights or recorded_traj else pd.DataFrame(), df)
    found = (
        detect_phases(measures, t_grok, t_mem)
        if modular and len(measures)  # the phases of Nanda et al. are about modular arithmetic
        else {"phases": None, "evidence": {}, "checks": {}}
    )
    phases = found["phases"]
    data.update(phases=phases, phase_evidence=found["evidence"], phase_source=source)
    data["phase_checks"] = found.get("checks", {})
    data["progress"] = _frame(run.progress)
    for name, span in (phases or {}).items():
        summary[f"phase: {name.replace('_', ' ')}"] = f"{span[0]}-{span[1]}" if span else "-"
    summary["metrics source"] = run.metrics_source
    summary["snapshots analysed"] = len(traj)
    for key in ("lr", "weight_decay"):
        value = run.config.get("model", {}).get("optimizer", {}).get(key)
        if value is not None:
            summary[f"model.optimizer.{key}"] = value

    shown = phases if modular else None
    sections: list[Section] = [(
        "Training curves", rg.fig_curves(df, shown, t_grok, rg.n_classes(dm), xscale),
        "Loss on a log scale (dashed: ln of the number of classes = chance); shading = phases "
        "measured from the progress measures (dotted: val acc reaches 99%)."
    )]  # fmt: skip
    if modular and model is None:
        sections += rf.trajectory_sections(traj, dm.modulus, shown, t_grok, xscale)
    elif modular:
        sections += rf.sections(model, dm, traj, keys, acts, shown, t_grok, xscale)
    sections += _group_sections(run, model, dm, summary, data, max_snapshots, t_grok, xscale)
    sections += _llc_sections(run, dm, df, summary, data, llc, llc_snapshots, xscale)
    if model is not None:
        sections += rg.attention_sections(model, dm)
        ablation, table = rg.ablation_section(model, dm)
        if ablation:
            sections.append(ablation)
        if table is not None:
            data["ablation"] = _frame(table.drop(columns=[c for c in ("neuron",) if c in table]))
    if (
        model is not None
        and "induction" in str(run.config.get("data", {}).get("_target_", "")).lower()
    ):
        induction, scores, causal = rg.induction_section(model, dm)
        if induction:
            sections.append(induction)
            data["induction_scores"] = _frame(scores) if scores is not None else None
            data["induction_ablation"] = _frame(causal) if causal is not None else None

    out = run.run_dir / "report" / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    verdict = verdict_text(t_mem, t_grok, val_max)
    out.write_text(page(f"Run report: {run.run_dir.name}", verdict, summary, sections))
    (out.parent / "report.json").write_text(json.dumps(_jsonable(data), indent=1))
    return out


def _group_sections(
    run: Run, model: Any, dm: Any, summary: dict[str, Any], data: dict[str, Any],
    max_snapshots: int, t_grok: int | None, xscale: str,
) -> list[Section]:  # fmt: skip
    """Representation sections for a group-composition run (adds to ``summary`` and ``data``)."""
    from project.runs import report_groups as rgr

    if not rgr.is_group_task(dm) or not hasattr(model, "run_with_hooks"):
        return []
    try:
        irreps = rgr.irreps_of(dm)
    except ValueError as exc:  # e.g. S6: irreps not built here
        summary["representations"] = f"not analysed: {exc}"
        return []
    final = rgr.final_measures(model, dm, irreps)
    traj = pd.DataFrame()
    if run.snapshot_paths:
        traj = rgr.trajectory(run.snapshot_paths, dm, irreps, final["key_irreps"], max_snapshots)
    summary.update(rgr.summary_rows(final, irreps))
    data["representations"] = {**rgr.to_json(final, irreps), "trajectory": _frame(traj)}
    return rgr.sections(model, dm, traj, irreps, final, None, t_grok, xscale)


def _llc_sections(
    run: Run, dm: Any, df: pd.DataFrame, summary: dict[str, Any], data: dict[str, Any],
    compute: bool, max_snapshots: int, xscale: str,
) -> list[Section]:  # fmt: skip
    """The LLC curve (any task): computed with ``compute``, else only what is cached."""
    from project.interp.llc import CACHE
    from project.runs import report_llc as rl

    if not compute and not (run.run_dir / CACHE).exists():
        return []
    config = rl.config_of(run.config)
    curve = rl.llc_curve(run, dm, config, max_snapshots, compute=compute)
    if curve.empty:
        return []
    data["llc"] = {"settings": config.key(), **_frame(curve)}
    last = curve.iloc[-1]
    summary["LLC (last snapshot, mean +- std over chains)"] = (
        f"{last['llc_mean']:.3g} +- {last['llc_std']:.2g} at epoch {int(last['epoch'])}"
    )
    return [rl.section(curve, df, config, xscale)]


def check_run_dir(run_dir: Path) -> str | None:
    """A run dir has checkpoints/, or (a recorded trajectory) a config and its progress records."""
    if not run_dir.is_dir():
        return f"error: run_dir={str(run_dir)!r} is not a directory"
    recorded = (run_dir / "resolved_config.yaml").is_file() and (
        (run_dir / "progress.jsonl").is_file() or any(run_dir.glob("csv_logs/**/metrics.csv"))
    )
    if not (run_dir / "checkpoints").is_dir() and not recorded:
        return (
            f"error: run_dir={str(run_dir)!r} has no checkpoints/ and no recorded trajectory "
            "(resolved_config.yaml + progress.jsonl or csv_logs/): not a run dir"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m project.runs.report", description=__doc__)
    parser.add_argument("run_dir", help="a run dir written by project.train.run")
    parser.add_argument("--max-snapshots", type=int, default=40,
                        help="analyse at most this many checkpoint snapshots (default 40)")  # fmt: skip
    parser.add_argument("--xscale", choices=("linear", "log"), default="linear",
                        help="epoch axis (default linear, as in the paper)")  # fmt: skip
    parser.add_argument("--llc", action="store_true",
                        help="estimate the local learning coefficient of the snapshots with "
                        "devinterp (uv sync --extra llc); cached in <run>/llc.json")  # fmt: skip
    parser.add_argument("--llc-snapshots", type=int, default=12,
                        help="LLC of at most this many snapshots (default 12)")  # fmt: skip
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    error = check_run_dir(run_dir)
    if error:
        print(error, file=sys.stderr)
        return 2
    if args.llc:
        from project.interp.llc import INSTALL_HINT, have_devinterp

        if not have_devinterp():
            print(f"error: --llc: {INSTALL_HINT}", file=sys.stderr)
            return 2
    from project.checkpoint import CheckpointError
    from project.trust import UntrustedTargetError

    try:
        out = build_report(run_dir, args.max_snapshots, args.xscale, args.llc, args.llc_snapshots)
    except (CheckpointError, UntrustedTargetError) as exc:  # a corrupt or crafted run dir
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
