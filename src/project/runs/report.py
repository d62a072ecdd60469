"""One-command run report: ``uv run python -m project.runs.report <run_dir>`` (or
``python -m project.report <run_dir>``).

Writes ``<run_dir>/report/index.html``, one self-contained page (figures are embedded PNG data
URIs, >= 1000 px wide, one-line caption each), and ``<run_dir>/report/report.json`` with every
number behind it.

Sections for any task under the template contract: the summary (the threshold epochs of the run's
record, ``project.runs.load.reached``), training curves (linear x by default, log-y loss with a
ln(classes) line), the local learning coefficient over training (``--llc``, or cached), and with
the final model: attention per head on an example, head and layer ablation effects. A task adds
its own sections by declaring them on its class (``report_sections``; see
``project.runs.report_generic``); they run before the curves are drawn, so spans they mark (e.g.
phases) are shaded on the curves too. A section that does not apply is listed under "Not shown"
with the reason (``report.json``: ``not_shown``). Epochs are completed epochs throughout.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from project.runs import report_generic as rg  # noqa: E402
from project.runs.load import Reached, Run, load_run  # noqa: E402

Section = rg.Section
NEEDS_WEIGHTS = ["attention patterns", "head and layer ablations"]
NO_WEIGHTS = "needs checkpoints: none in this run dir"


def has_weights(run: Run) -> bool:
    """Whether the run dir holds a model (last.ckpt or a snapshot)."""
    return (run.run_dir / "checkpoints" / "last.ckpt").is_file() or bool(run.snapshot_paths)


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else html.escape(str(x))


def _not_shown(notes: dict[str, str] | None) -> str:
    if not notes:
        return ""
    items = "".join(
        f"<li><b>{html.escape(t)}</b>: {html.escape(why)}</li>" for t, why in notes.items()
    )
    return f"<section class='absent'><h2>Not shown</h2><ul>{items}</ul></section>"


def page(
    title: str, verdict: str, summary: dict[str, Any], sections: list[Section],
    not_shown: dict[str, str] | None = None,
) -> str:  # fmt: skip
    """The HTML page: title, verdict, summary table, the sections, then what is not shown and why."""
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
        ".verdict{font-size:1.2em;font-weight:bold}.absent{color:#555}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='verdict'>{html.escape(verdict)}</p>"
        f"<table>{rows}</table>{body}{_not_shown(not_shown)}</body></html>"
    )


def reached_label(reached: Reached, train: bool = False) -> str:
    """``val/acc >= 0.99``, with the task's word when it has one (``RunRecord.names``) in brackets."""
    generic = "train_reached_epoch" if train else "reached_epoch"
    word = reached.names.get(generic)
    return reached.rule(train) + (f" ({word})" if word else "")


def _after(epoch: int | None) -> str:
    return f"after {epoch} epochs" if epoch is not None else "not yet"


def verdict_text(reached: Reached) -> str:
    """One neutral line for any task: when the monitored metric reached its threshold."""
    thr = f"{reached.threshold:g}"
    if reached.epoch is not None:
        text = f"{reached.monitor} first reached {thr} after {reached.epoch} epochs"
        if reached.train_epoch is not None:
            gap = reached.epoch - reached.train_epoch
            return text + f", {gap} epochs after {reached.train_monitor} did."
        return text + "."
    if reached.best is not None:
        return f"{reached.monitor} never reached {thr} (best {reached.best:.4g})."
    return f"No {reached.monitor} logged."


def build_report(
    run_dir: str | Path, max_snapshots: int = 40, xscale: str = "linear", llc: bool = False,
    llc_snapshots: int = 12,
) -> Path:  # fmt: skip
    """Write ``<run_dir>/report/index.html`` and ``report.json``; returns the page's path.

    ``llc``: estimate the local learning coefficient of up to ``llc_snapshots`` snapshots with
    devinterp (needs ``uv sync --extra llc``; cached in ``<run_dir>/llc.json``). Without it, LLC
    values already cached (by the live callback or an earlier report) are still shown.
    """
    from project.stored import check_no_escaping_links

    check_no_escaping_links(run_dir)  # report/, llc.json: written only inside the run dir
    run = load_run(run_dir)
    dm = run.datamodule()
    model = run.final_model() if has_weights(run) else None
    df = rg.curves(run)
    reached = run.reached
    ctx = rg.ReportContext(run, dm, model, df, reached, xscale, max_snapshots)
    if reached.epoch is not None:
        ctx.marks.at, ctx.marks.at_label = reached.epoch, f"{reached.rule()} at {reached.epoch}"
    end = int(df["epoch"].max()) if len(df) else (run.epochs[-1] if run.epochs else 0)
    summary = ctx.summary
    summary.update({"run dir": str(run.run_dir), "task": run.task, "epochs trained": end})
    if reached.train_monitor:
        epoch = reached.train_epoch
        summary[reached_label(reached, True)] = _after(epoch)
    summary[reached_label(reached)] = _after(reached.epoch)
    if not reached.source.startswith("summary.json"):
        summary["threshold epochs from"] = reached.source
    if model is None:
        summary["weights"] = "none in this run dir"  # the list is filled in below
    data = ctx.data
    data.update(run_dir=str(run.run_dir), task=run.task, reached=reached.to_dict())
    data.update(reached.epochs())
    data["curves"] = rg.frame_json(df)
    if len(run.progress):
        data["progress"] = rg.frame_json(run.progress)

    sections: list[Section] = []
    entries = rg.declared(dm, "report_sections")
    if entries:
        sections += rg.task_sections(ctx, [(run.task, e) for e in entries], "report_sections")
    else:
        ctx.note("Task sections", f"{run.task} declares none (report_sections on the task class; "
                 "README: Add your own task)")  # fmt: skip
    sections += _llc_sections(ctx, llc, llc_snapshots)
    sections += _weight_sections(ctx)
    caption = "Loss on a log scale (dashed: ln of the number of classes = chance)"
    if marks := ctx.marks.describe():
        caption += f"; {marks}"
    curves = (
        "Training curves",
        rg.fig_curves(df, ctx.marks, rg.n_classes(dm), xscale),
        caption + ".",
    )
    sections.insert(0, curves)

    summary["metrics source"] = run.metrics_source
    for key in ("lr", "weight_decay"):
        value = run.config.get("model", {}).get("optimizer", {}).get(key)
        if value is not None:
            summary[f"model.optimizer.{key}"] = value
    if model is None:
        needs = NEEDS_WEIGHTS + ctx.needs_weights
        summary["weights"] = "none in this run dir: " + "; ".join(needs)
        data["not_computed_needs_weights"] = needs
    data["not_shown"] = ctx.not_shown

    out = run.run_dir / "report" / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"Run report: {run.run_dir.name}"
    out.write_text(page(title, verdict_text(reached), summary, sections, ctx.not_shown))
    (out.parent / "report.json").write_text(json.dumps(rg.jsonable(data), indent=1))
    return out


def _weight_sections(ctx: rg.ReportContext) -> list[Section]:
    """Attention per head and the ablations (any task; they need the final model)."""
    attention, ablations = "Attention per head", "Head and layer ablation effects"
    if ctx.model is None:
        ctx.note(attention, NO_WEIGHTS)
        ctx.note(ablations, NO_WEIGHTS)
        return []
    sections = rg.attention_sections(ctx.model, ctx.dm)
    if not sections:
        ctx.note(attention, "the net has no attention-pattern HookPoints (attn.hook_pattern)")
    section, table = rg.ablation_section(ctx.model, ctx.dm)
    if section:
        sections.append(section)
    elif table is not None and "error" in table:
        ctx.note(ablations, f"not applicable to this net: {table['error'].iloc[0]}")
    if table is not None:
        ctx.data["ablation"] = rg.frame_json(
            table.drop(columns=[c for c in ("neuron",) if c in table])
        )
    return sections


def _llc_sections(ctx: rg.ReportContext, compute: bool, max_snapshots: int) -> list[Section]:
    """The LLC curve (any task): computed with ``compute``, else only what is cached."""
    from project.interp.llc import CACHE
    from project.runs import report_llc as rl

    title = "Local learning coefficient over training"
    run = ctx.run
    if not compute and not (run.run_dir / CACHE).exists():
        ctx.note(title, "not computed: python -m project.report RUN --llc (uv sync --extra llc)")
        return []
    config = rl.config_of(run.config)
    curve = rl.llc_curve(run, ctx.dm, config, max_snapshots, compute=compute)
    if curve.empty:
        ctx.note(title, f"no snapshots to estimate and nothing cached in {CACHE}")
        return []
    ctx.data["llc"] = rl.report_data(curve, config)  # unconverged estimates: llc_mean null
    ctx.summary["LLC (last converged snapshot, mean +- std over chains)"] = rl.summary(curve)
    return [rl.section(curve, ctx.curves, config, ctx.xscale)]


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
