"""Fourier sections of the run report for modular-arithmetic runs (the grokking plugin's
``report_sections`` entry, declared by ``ModularDataModule``): the measures of Nanda et al. 2023
recomputed on the checkpoint snapshots with the final model's key frequencies, the phases
(``report_phases``) and the paper's figures of the final model. Without checkpoints, the recorded
trajectory (``python -m project.grokking.report_record``) or the live progress records stand in
for the snapshots.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from project.interp import fourier as fo
from project.runs import report_plot as rp
from project.runs.load import Run
from project.runs.report_generic import (
    ReportContext,
    Section,
    choose_snapshots,
    frame_json,
    jsonable,
)
from project.stored import load_checkpoint

TITLE = "Fourier progress measures"
NEEDS_WEIGHTS = [
    "key frequencies and measures recomputed with the final model (trajectory.jsonl if recorded, "
    "else the live ones)",
    "Fourier spectra of W_E and W_L",
    "neurons in the 2-D Fourier basis",
]


def is_modular(run: Run) -> bool:
    """Whether the run's task is modular arithmetic (its config has ``data.modulus``)."""
    return "modulus" in (run.config.get("data") or {})


def modulus(run: Run) -> int:
    """``data.modulus`` of a modular-arithmetic run (113 when absent)."""
    return int((run.config.get("data") or {}).get("modulus", 113))


def operation(run: Run) -> str:
    """``data.operation`` of a modular-arithmetic run (``add`` when absent)."""
    return str((run.config.get("data") or {}).get("operation", "add"))


def _grid_labels(dm: Any, p: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    if len(dm.answers) != p * p:
        return None
    gidx = dm.tokens[:, 0] * p + dm.tokens[:, 1]
    labels = torch.empty_like(dm.answers)
    labels[gidx] = dm.answers
    return labels, gidx


def trajectory(
    paths: list[tuple[int, Any]], dm: Any, keys: list[int], max_snapshots: int
) -> pd.DataFrame:
    """Measures per chosen snapshot, with fixed key frequencies ``keys``.

    Scalar columns as ``progress_measures`` plus ``excluded_loss_k{k}`` (train, only frequency k
    removed), ``alpha_k{k}`` (coefficient of cos(w_k(a+b-c)) in the logits), ``sq_<param>`` (sum of
    squared weights per parameter) and ``embed_norms`` (array by frequency).
    """
    p, op = dm.modulus, dm.operation
    grid = _grid_labels(dm, p)
    rows = []
    for epoch, path in choose_snapshots(paths, max_snapshots):
        model = load_checkpoint(path)[0]
        m = fo.progress_measures(
            model, p, dm.tokens, dm.answers, dm.train_idx, dm.val_idx, op, keys
        )
        m.pop("key_freqs_found", None)
        m["epoch"] = epoch
        m["embed_norms"] = fo.embedding_frequency_norms(model, p).numpy()
        for name, value in fo.parameter_sq_norms(model).items():
            m[f"sq_{name}"] = value
        if grid is not None and op in fo.SUM_OPERATIONS and keys:
            logits, _ = fo.grid_forward(model, p)
            labels, gidx = grid
            train = gidx[dm.train_idx]
            for k in keys:
                m[f"excluded_loss_k{k}"] = fo.excluded_loss(logits, labels, p, [k], train, op)
            for k, a in fo.logit_trig_coefficients(logits, p, keys, op).items():
                m[f"alpha_k{k}"] = a
        rows.append(m)
    return pd.DataFrame(rows)


def _cols(traj: pd.DataFrame, prefix: str) -> list[str]:
    return [c for c in traj.columns if c.startswith(prefix)]


def fig_losses(traj: pd.DataFrame, marks: rp.Marks | None, p: int, xscale: str) -> str:
    fig, axes = rp.figure(2, height=4.0)
    x = traj["epoch"]
    for ax, kind in zip(axes, ("loss", "acc"), strict=True):
        cols = [f"{s}_{kind}" for s in ("train", "val", "restricted", "excluded")]
        rp.lines(ax, x, {c.replace("_", " "): traj[c] for c in cols if c in traj}, marker=".")
    rp.lnp_line(axes[0], p)
    rp.positive_log_y(axes[0])
    axes[0].set_title("Losses (key frequencies of the final model)")
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title("Accuracy: full, restricted (all pairs), excluded (train)")
    return rp.over_training(fig, axes, marks, xscale, float(x.max()))


def fig_structure(traj: pd.DataFrame, marks: rp.Marks | None, xscale: str) -> str:
    fig, axes = rp.figure(4, height=3.6, cols=2)
    x = traj["epoch"]
    rp.lines(axes[0], x, {"W_E": traj.get("embed_gini"), "W_L": traj.get("logit_weights_gini")})
    axes[0].set_title("Gini of the Fourier-component norms")
    rp.lines(axes[1], x, {"all parameters": traj.get("weight_sq_sum")})
    axes[1].set_title("Total sum of squared weights")
    sq = _cols(traj, "sq_")
    rp.lines(axes[2], x, {c[3:]: traj[c] for c in sq})
    rp.positive_log_y(axes[2])
    axes[2].set_title("Sum of squared weights per parameter")
    if sq:  # per-parameter sums come from the snapshots only
        axes[2].legend(fontsize=7, ncols=2, loc="best")
    rp.lines(axes[3], x, {c.replace("_", " "): traj[c] for c in
                          ("embed_key_frac", "neuron_key_frac", "logit_key_frac") if c in traj})  # fmt: skip
    axes[3].set_title("Share of variance in the key frequencies")
    return rp.over_training(fig, axes, marks, xscale, float(x.max()))


def fig_per_key(traj: pd.DataFrame, marks: rp.Marks | None, p: int, xscale: str) -> str:
    fig, axes = rp.figure(2, height=4.0)
    x = traj["epoch"]
    series = {f"k={c.split('_k')[-1]} removed": traj[c] for c in _cols(traj, "excluded_loss_k")}
    if "excluded_loss" in traj:
        series["all keys removed"] = traj["excluded_loss"]
    rp.lines(axes[0], x, series, marker=".")
    rp.lnp_line(axes[0], p)
    rp.positive_log_y(axes[0])
    axes[0].set_title("Excluded loss (train) per key frequency")
    rp.lines(axes[1], x, {f"k={c[7:]}": traj[c] for c in _cols(traj, "alpha_k")}, marker=".")
    axes[1].axhline(0, color="gray", lw=0.6)
    axes[1].set_title("Logit coefficient of cos(w_k(a+b-c))")
    return rp.over_training(fig, axes, marks, xscale, float(x.max()))


def _bars_cos_sin(ax: Any, comp: torch.Tensor, keys: list[int], ylabel: str) -> None:
    cos, sin = fo.split_cos_sin(comp)
    k = np.arange(1, len(cos) + 1)
    ax.bar(k - 0.2, cos.numpy(), width=0.4, color="tab:blue", label="cos k")
    ax.bar(k + 0.2, sin.numpy(), width=0.4, color="tab:orange", label="sin k")
    top = float(max(cos.max(), sin.max())) if len(cos) else 1.0
    for key in keys:
        ax.annotate(str(key), (key, top * 1.02), ha="center", fontsize=9, color="tab:red")
        ax.axvline(key, color="tab:red", lw=0.6, alpha=0.4)
    ax.set_ylim(0, top * 1.12 if top > 0 else 1)
    ax.set_xlabel("frequency k")
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper right")


def fig_spectra(model: Any, p: int, keys: list[int]) -> str:
    fig, axes = rp.figure(2, height=3.4, cols=1)
    emb = fo.fourier_component_norms(fo.embedding_fourier(model, p))
    _bars_cos_sin(axes[0], emb, keys, "norm of W_E component")
    axes[0].set_title("Embedding W_E in the Fourier basis (cos and sin apart; key frequencies red)")
    if hasattr(model, "blocks") and hasattr(model, "unembed"):
        _bars_cos_sin(axes[1], fo.logit_weights_fourier_norms(model, p), keys, "norm over neurons")
        axes[1].set_title("W_L = W_out W_U in the Fourier basis of the output")
    return rp.png(fig)


def fig_spectrum_over_time(traj: pd.DataFrame) -> str:
    mat = np.stack(traj["embed_norms"].to_list())[:, 1:]  # [snapshots, freqs]
    fig, axes = rp.figure(1, height=3.8)
    ax = axes[0]
    x = traj["epoch"].to_numpy(dtype=float)
    edges = np.concatenate([[x[0]], (x[1:] + x[:-1]) / 2, [x[-1] + 1]]) if len(x) > 1 else None
    if edges is None:
        return ""
    im = ax.pcolormesh(edges, np.arange(mat.shape[1] + 1) + 0.5, mat.T, cmap="viridis")
    ax.set_xlabel("epoch (snapshots)")
    ax.set_ylabel("frequency k")
    ax.set_title("Embedding Fourier norm per frequency over training")
    fig.colorbar(im, ax=ax)
    return rp.png(fig)


def fig_neuron_fourier(acts: torch.Tensor, keys: list[int]) -> str:
    p = acts.shape[0]
    energy = fo.neuron_fourier_2d_norms(acts).pow(2)
    freq = fo.basis_frequencies(p)
    k = fo.n_frequencies(p) + 1
    by_a = energy.new_zeros(k, p).index_add_(0, freq, energy)
    binned = energy.new_zeros(k, k).index_add_(1, freq, by_a).sqrt().numpy()  # [k_a, k_b]
    fig, axes = rp.figure(1, height=7.0)
    ax = axes[0]
    im = ax.imshow(binned, cmap="Blues", interpolation="nearest", origin="lower")
    for key in keys:
        ax.plot([key, 0], [0, key], "r^", ms=5, clip_on=False)
    ax.set_xlabel("frequency of b (0 = constant; red marks = key frequencies)")
    ax.set_ylabel("frequency of a")
    ax.set_title(f"MLP activations at '=' in the 2-D Fourier basis, keys {keys}")
    fig.colorbar(im, ax=ax, shrink=0.8, label="norm over neurons (cos and sin combined)")
    return rp.png(fig)


def neuron_order(acts: torch.Tensor, freq: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Neurons sorted by cluster frequency (unexplained last) then by the phase of their
    response to ``a`` at that frequency; returns (order, the 1-D profiles [d_mlp, p])."""
    p = acts.shape[0]
    prof = acts.double().mean(1).T  # [d_mlp, p]: mean over b, as a function of a
    prof = prof - prof.mean(1, keepdim=True)
    x = torch.arange(p, dtype=torch.float64)
    best = torch.where(freq > 0, freq, 1).double()
    ang = 2 * torch.pi * best[:, None] * x[None, :] / p
    phase = torch.atan2((prof * torch.sin(ang)).sum(1), (prof * torch.cos(ang)).sum(1))
    key = torch.where(freq > 0, freq, p).double() * 10 + (phase + torch.pi) / (2 * torch.pi)
    order = torch.argsort(key).numpy()
    scale = prof.abs().amax(1, keepdim=True).clamp_min(1e-12)
    return order, (prof / scale).numpy()


def fig_neurons(acts: torch.Tensor, freq: torch.Tensor) -> str:
    order, prof = neuron_order(acts, freq)
    clusters = sorted(int(k) for k in torch.unique(freq[freq > 0]))
    fig = Figure(figsize=(rp.WIDTH_IN, 6.0), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 3])
    labels = [str(k) for k in clusters] + ["unexpl."]
    counts = [int((freq == k).sum()) for k in clusters] + [int((freq < 0).sum())]
    left.barh(labels, counts, color=["tab:red"] * len(clusters) + ["tab:gray"])
    left.invert_yaxis()
    left.set_xlabel("neurons")
    left.set_ylabel("frequency cluster (>85% of variance)")
    left.set_title("Neurons per cluster")
    im = right.imshow(prof[order], aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                      interpolation="antialiased")  # fmt: skip
    bounds = np.cumsum(counts)[:-1]
    for b, lab in zip(np.concatenate([[0], bounds]), labels, strict=False):
        right.axhline(b - 0.5, color="black", lw=0.6)
        right.annotate(lab, (1.0, b), xycoords=("axes fraction", "data"), fontsize=8,
                       va="top", ha="left")  # fmt: skip
    right.set_xlabel("a (mean over b)")
    right.set_ylabel("neuron (sorted by cluster, then phase)")
    right.set_title("Each neuron's response to a, normalised")
    fig.colorbar(im, ax=right, shrink=0.8)
    return rp.png(fig)


def phase_sort(profile: torch.Tensor) -> tuple[np.ndarray, int]:
    """Order of 0..p-1 by ``k x mod p`` for the dominant frequency k of a profile ``[p]``: a
    sinusoid of frequency k becomes one smooth period (no stripes to alias)."""
    p = profile.shape[0]
    coeffs = fo.fourier_basis(p)[0] @ (profile.double() - profile.double().mean())
    norms = fo.frequency_norms(coeffs)
    k = int(norms[1:].argmax()) + 1
    return np.argsort((k * np.arange(p)) % p, kind="stable"), k


@torch.no_grad()
def fig_attention_grid(model: Any, p: int) -> str:
    _, cache = model.run_with_cache(fo.grid_tokens(p), names_filter="blocks.0.attn.hook_pattern")
    pattern = cache["blocks.0.attn.hook_pattern"][:, :, -1, 0]  # '=' -> a: [p^2, head]
    n = pattern.shape[1]
    fig, axes = rp.figure(n, height=rp.WIDTH_IN / max(n, 1) + 0.8)
    for h, ax in enumerate(axes):
        grid = pattern[:, h].reshape(p, p)
        order_a, ka = phase_sort(grid.mean(1))
        order_b, kb = phase_sort(grid.mean(0))
        im = ax.imshow(grid[order_a][:, order_b].numpy(), cmap="magma", vmin=0, vmax=1,
                       interpolation="antialiased", origin="lower")  # fmt: skip
        ax.set_title(f"head {h}")
        ax.set_xlabel(f"b sorted by {kb}b mod {p}")
        ax.set_ylabel(f"a sorted by {ka}a mod {p}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="attention '=' -> a")
    return rp.png(fig)


def trajectory_sections(
    traj: pd.DataFrame, p: int, marks: rp.Marks | None, xscale: str
) -> list[Section]:
    """The sections drawn from measures alone (no weights): losses, accuracy, weight structure."""
    out: list[Section] = []
    if len(traj):
        out.append(("Progress measures: losses and accuracy", fig_losses(traj, marks, p, xscale),
                    "Excluded loss rising while train loss stays low = the key-frequency circuit "
                    "carries the train fit; restricted loss falling before val loss = it "
                    "generalises."))  # fmt: skip
        out.append(("Progress measures: weight structure", fig_structure(traj, marks, xscale),
                    "Gini rising and the sum of squared weights falling mark clean-up; the "
                    "per-parameter sums show which weights weight decay removes."))  # fmt: skip
        if _cols(traj, "alpha_k"):
            out.append(("Per key frequency", fig_per_key(traj, marks, p, xscale),
                        "Removing one key frequency should hurt the train loss once the circuit "
                        "uses it; alpha_k grows as the logits become sum_k alpha_k "
                        "cos(w_k(a+b-c))."))  # fmt: skip
    return [s for s in out if s[1]]


def sections(
    model: Any, dm: Any, traj: pd.DataFrame, keys: list[int], acts: Any, marks: rp.Marks | None,
    xscale: str,
) -> list[Section]:  # fmt: skip
    p = dm.modulus
    out = trajectory_sections(traj, p, marks, xscale)
    out.append(("Fourier spectra of W_E and W_L", fig_spectra(model, p, keys),
                "A handful of frequencies (red) should carry most of the norm, with cos and sin "
                "both present."))  # fmt: skip
    if len(traj) > 1:
        out.append(("Embedding spectrum over training", fig_spectrum_over_time(traj),
                    "The key frequencies' rows brighten while the rest fade (clean-up)."))  # fmt: skip
    if acts is not None:
        freq, _ = fo.neuron_clusters(acts)
        out.append(("Neurons in the 2-D Fourier basis", fig_neuron_fourier(acts, keys),
                    "Energy should sit in the (const, cos/sin k), (cos/sin k, const) and (cos/sin "
                    "k, cos/sin k) cells of the key frequencies only."))  # fmt: skip
        out.append(("Neurons sorted by key frequency and phase", fig_neurons(acts, freq),
                    "Within a cluster, each neuron is a sinusoid of a at the cluster's frequency, "
                    "phases sweeping smoothly."))  # fmt: skip
    out.append(("Attention from '=' over the (a, b) grid", fig_attention_grid(model, p),
                "Axes sorted by k x mod p for each head's main frequency k: a smooth single "
                "period = a head reading one Fourier feature of the operands."))  # fmt: skip
    return [s for s in out if s[1]]


def final_numbers(model: Any, dm: Any, keys: list[int]) -> dict[str, Any]:
    p = dm.modulus
    emb_cos, emb_sin = fo.split_cos_sin(fo.fourier_component_norms(fo.embedding_fourier(model, p)))
    out: dict[str, Any] = {
        "embed_norms_cos": emb_cos.tolist(),
        "embed_norms_sin": emb_sin.tolist(),
        "key_freqs": keys,
    }
    if hasattr(model, "blocks") and hasattr(model, "unembed"):
        wl_cos, wl_sin = fo.split_cos_sin(fo.logit_weights_fourier_norms(model, p))
        out["w_l_norms_cos"], out["w_l_norms_sin"] = wl_cos.tolist(), wl_sin.tolist()
    return out


def report_sections(ctx: ReportContext) -> list[Section]:
    """The entry ``ModularDataModule.report_sections`` names: key frequencies, the snapshot
    trajectory (else the recorded one, else the live progress records), the phases, and the
    Fourier figures; adds summary rows and ``final``, ``trajectory``, ``phases``... to report.json.
    """
    from project.grokking.report_phases import read_trajectory, report_phases, with_sq_sum

    run, dm, model = ctx.run, ctx.dm, ctx.model
    if not hasattr(dm, "modulus"):
        ctx.note(TITLE, f"{run.task} is not a modular-arithmetic task (no modulus)")
        return []
    if model is not None and not hasattr(model, "run_with_hooks"):
        ctx.note(TITLE, "the net has no HookPoints (run_with_hooks): the Fourier tools need them")
        return []
    p, op = dm.modulus, dm.operation
    ctx.summary["task"] = f"{op} mod {p}, train fraction {dm.frac_train}"
    traj, keys, acts = pd.DataFrame(), [], None
    phase_traj = pd.DataFrame()  # what the phases read excluded / restricted loss from
    if model is None:
        ctx.needs_weights += NEEDS_WEIGHTS
        recorded, final_rec = read_trajectory(run.run_dir)
        if len(recorded):  # python -m project.grokking.report_record: final-key measures
            traj = phase_traj = recorded
            keys = list(final_rec.get("key_freqs", []))
            ctx.summary["key frequencies (neuron clusters, recorded)"] = keys or "none"
            ctx.data["final"] = final_rec
            ctx.data["trajectory"] = frame_json(traj)
        elif len(run.progress) and "key_freqs" in run.progress:
            traj = with_sq_sum(run.progress)  # the live measures stand in for the snapshots
            keys = list(run.progress["key_freqs"].dropna().iloc[-1])
            ctx.summary["key frequencies (live, last progress record)"] = keys or "none"
            ctx.data["final"] = {"key_freqs": keys, "key_rule": "live (progress.jsonl)"}
        else:
            ctx.note(TITLE, "needs checkpoints, a recorded trajectory (python -m "
                     "project.grokking.report_record) or progress.jsonl: none in this run dir")  # fmt: skip
    else:
        _, acts = fo.grid_forward(model, p)
        final = fo.progress_measures(model, p, dm.tokens, dm.answers, dm.train_idx, dm.val_idx, op)
        keys = final["key_freqs"]
        embed_keys = fo.key_frequencies_from_norms(fo.embedding_frequency_norms(model, p))
        if run.snapshot_paths:
            traj = phase_traj = trajectory(run.snapshot_paths, dm, keys, ctx.max_snapshots)
        ctx.summary["key frequencies (neuron clusters)"] = keys or "none"
        ctx.summary["key frequencies (embedding spectrum)"] = embed_keys or "none"
        ctx.summary["final train / val acc"] = f"{final['train_acc']:.2%} / {final['val_acc']:.2%}"
        ctx.summary["neurons >85% one frequency"] = f"{final.get('neuron_explained_frac', 0.0):.0%}"
        ctx.data["final"] = {**jsonable(final), **final_numbers(model, dm, keys),
                             "key_rule": fo.key_rule(final), "key_freqs_embedding": embed_keys,
                             "key_rule_embedding": fo.KEY_RULE}  # fmt: skip
        ctx.data["trajectory"] = frame_json(traj)
    report_phases(ctx, phase_traj)
    ctx.summary["snapshots analysed"] = len(traj)
    if model is None:
        return trajectory_sections(traj, p, ctx.marks, ctx.xscale)
    return sections(model, dm, traj, keys, acts, ctx.marks, ctx.xscale)
