"""Representation sections of the run report for group-composition runs (Chughtai et al. 2023),
declared by ``GroupCompositionDataModule.report_sections``: the measures of
``project.interp.representations`` recomputed on the checkpoint snapshots with the final model's
key irreps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from project.data.groups import symmetric_group
from project.interp import representations as rep
from project.runs import report_plot as rp
from project.runs.report_generic import ReportContext, Section, choose_snapshots, frame_json
from project.stored import load_checkpoint

TITLE = "Representations of the final model"


def is_group_task(dm: Any) -> bool:
    """A datamodule of ``project.data.groups`` (it carries the multiplication table)."""
    return hasattr(dm, "table") and hasattr(dm, "group") and hasattr(dm, "train_idx")


def irreps_of(dm: Any) -> list[rep.Irrep]:
    """The real irreps of the run's group (``S<n>`` from its permutations, ``C<n>`` from its table)."""
    perms = symmetric_group(int(dm.group[1:])) if str(dm.group).startswith("S") else None
    return rep.group_irreps(dm.table, perms)


def final_measures(model: Any, dm: Any, irreps: list[rep.Irrep]) -> dict[str, Any]:
    """The final model's measures; its key irreps come from its own logit shares."""
    return rep.representation_measures(model, dm.table, irreps, dm.train_idx, dm.val_idx)


def trajectory(
    paths: list[tuple[int, Any]],
    dm: Any,
    irreps: list[rep.Irrep],
    keys: list[str],
    max_snapshots: int,
) -> pd.DataFrame:
    """One row of ``representation_measures`` (key irreps fixed to ``keys``) per chosen snapshot,
    plus ``excluded_loss_<irrep>`` (train, that key irrep alone removed) and ``seconds``."""
    import time

    rows = []
    for epoch, path in choose_snapshots(paths, max_snapshots):
        start = time.perf_counter()
        model = load_checkpoint(path)[0]
        m = rep.representation_measures(
            model, dm.table, irreps, dm.train_idx, dm.val_idx, keys, per_key=len(keys) > 1
        )
        m.pop("key_irreps", None)
        m["key_irreps_found"] = ",".join(m["key_irreps_found"])
        m["epoch"], m["seconds"] = epoch, time.perf_counter() - start
        rows.append(m)
    return pd.DataFrame(rows)


def fig_losses(traj: pd.DataFrame, order: int, marks: rp.Marks | None, xscale: str) -> str:
    fig, axes = rp.figure(2, height=4.0)
    x = traj["epoch"]
    series = {c.replace("_", " "): traj[c] for c in
              ("train_loss", "val_loss", "restricted_loss", "excluded_loss") if c in traj}  # fmt: skip
    series.update(
        {f"only {c[14:]} removed": traj[c] for c in traj if c.startswith("excluded_loss_")}
    )
    rp.lines(axes[0], x, series, marker=".")
    rp.lnp_line(axes[0], order)
    rp.positive_log_y(axes[0])
    axes[0].set_title("Losses (key irreps of the final model)")
    rp.lines(axes[1], x, {c.replace("_", " "): traj[c] for c in
                          ("train_acc", "val_acc", "restricted_acc", "excluded_acc") if c in traj},
             marker=".")  # fmt: skip
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title("Accuracy: full, restricted (all pairs), excluded (train)")
    return rp.over_training(fig, axes, marks, xscale, float(x.max()))


def fig_shares(
    traj: pd.DataFrame, irreps: list[rep.Irrep], marks: rp.Marks | None, xscale: str
) -> str:
    fig, axes = rp.figure(3, height=3.8, cols=3)
    x = traj["epoch"]
    for ax, prefix, title in zip(
        axes, ("logit_share_", "embed_share_", "unembed_share_"),
        ("Logit variance along chi(g h c^-1)", "W_E in each matrix-element subspace",
         "W_U in each matrix-element subspace"), strict=True,
    ):  # fmt: skip
        rp.lines(ax, x, {f"{r.name} ({r.dim})": traj[prefix + r.name] for r in irreps})
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        rp.shade(ax, marks)
        rp.x_axis(ax, xscale, float(x.max()))
    for ax in axes[1:]:
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
    rp.legend(fig, marks)
    return rp.png(fig)


def fig_final(m: dict[str, Any], irreps: list[rep.Irrep], keys: list[str]) -> str:
    fig, axes = rp.figure(1, height=3.6)
    ax = axes[0]
    names = [r.name for r in irreps]
    pos = np.arange(len(names))
    for i, (prefix, label) in enumerate((("logit_share_", "logits"), ("embed_share_", "W_E"),
                                         ("unembed_share_", "W_U"))):  # fmt: skip
        ax.bar(pos + (i - 1) * 0.27, [m[prefix + n] for n in names], width=0.27, label=label)
    ax.set_xticks(pos, [f"{r.name}\n(dim {r.dim})" + ("\nKEY" if r.name in keys else "")
                        for r in irreps])  # fmt: skip
    ax.set_ylabel("share")
    ax.set_title("Final model: share per irreducible representation (key irreps marked)")
    ax.legend(loc="best")
    return rp.png(fig)


def sections(
    model: Any, dm: Any, traj: pd.DataFrame, irreps: list[rep.Irrep], final: dict[str, Any],
    marks: rp.Marks | None, xscale: str,
) -> list[Section]:  # fmt: skip
    """The report sections for a group run (figures only where there is data to show)."""
    keys = final["key_irreps"]
    out: list[Section] = [(
        TITLE,
        fig_final(final, irreps, keys),
        f"Key irreps (found from the logit shares): {', '.join(keys) or 'none'}; they explain "
        f"{final['logit_key_share']:.1%} of the logit variance. Restricted loss "
        f"{final['restricted_loss']:.3g} (all pairs), excluded loss {final['excluded_loss']:.3g} "
        f"(train; ln|G| = {np.log(dm.order):.3g}).",
    )]  # fmt: skip
    if len(traj) >= 2:
        out.append((
            "Restricted and excluded loss over training",
            fig_losses(traj, dm.order, marks, xscale),
            "Restricted: logits kept along the key irreps' functions of g·h (and the constant); "
            "excluded: those removed (train pairs). Recomputed on the snapshots.",
        ))  # fmt: skip
        out.append((
            "Representations over training",
            fig_shares(traj, irreps, marks, xscale),
            "Per irrep: share of the logit variance along its character term, and of W_E / W_U "
            "in its matrix-element subspace (the shares of each panel sum to 1).",
        ))  # fmt: skip
    return out


def summary_rows(final: dict[str, Any], irreps: list[rep.Irrep]) -> dict[str, Any]:
    """Lines for the report's summary table."""
    dims = {r.name: r.dim for r in irreps}
    keys = final["key_irreps"]
    return {
        "key irreps (logit shares)": ", ".join(f"{k} (dim {dims[k]})" for k in keys) or "none",
        "logit variance in key irreps": f"{final['logit_key_share']:.1%}",
        "restricted loss (all) / excluded loss (train)":
            f"{final['restricted_loss']:.3g} / {final['excluded_loss']:.3g}",
    }  # fmt: skip


def to_json(final: dict[str, Any], irreps: list[rep.Irrep]) -> dict[str, Any]:
    """The final measures plus each irrep's name, dimension and character."""
    return {
        **{k: v for k, v in final.items()},
        "irreps": [
            {"name": r.name, "dim": r.dim, "character": r.character.tolist()} for r in irreps
        ],
    }


def report_sections(ctx: ReportContext) -> list[Section]:
    """The entry the group task declares: final measures, the snapshot trajectory and their
    sections (adds summary rows and ``representations`` to report.json)."""
    model, dm = ctx.model, ctx.dm
    if model is None:
        ctx.needs_weights.append("representation measures (key irreps, shares)")
        ctx.note(TITLE, "needs checkpoints: none in this run dir")
        return []
    if not is_group_task(dm) or not hasattr(model, "run_with_hooks"):
        ctx.note(TITLE, "needs a group task's table and a net with HookPoints (run_with_hooks)")
        return []
    try:
        irreps = irreps_of(dm)
    except ValueError as exc:  # e.g. S6: irreps not built here
        ctx.summary["representations"] = f"not analysed: {exc}"
        ctx.note(TITLE, f"not analysed: {exc}")
        return []
    final = final_measures(model, dm, irreps)
    traj = pd.DataFrame()
    if ctx.run.snapshot_paths:
        traj = trajectory(
            ctx.run.snapshot_paths, dm, irreps, final["key_irreps"], ctx.max_snapshots
        )
    ctx.summary.update(summary_rows(final, irreps))
    ctx.data["representations"] = {**to_json(final, irreps), "trajectory": frame_json(traj)}
    return sections(model, dm, traj, irreps, final, ctx.marks, ctx.xscale)


__all__ = [
    "final_measures", "irreps_of", "is_group_task", "report_sections", "sections", "trajectory",
]  # fmt: skip
