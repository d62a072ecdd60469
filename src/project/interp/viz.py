"""Matplotlib figures for the interp toolkit; headless-safe.

Every function builds a ``matplotlib.figure.Figure`` directly (no ``pyplot``, no GUI backend,
no display needed), returns it, and writes a PNG when ``path`` is given. In Jupyter a returned
Figure renders inline as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from project.interp.patching import PatchingResult


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as PNG (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", bbox_inches="tight")
    return path


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


def plot_attention_patterns(
    pattern: torch.Tensor,
    token_labels: Sequence[str] | None = None,
    heads: Sequence[int] | None = None,
    title: str = "attention pattern",
    path: str | Path | None = None,
) -> Figure:
    """Attention pattern per head: ``pattern [head, q_pos, k_pos]`` (one example) or
    ``[batch, head, q_pos, k_pos]`` (averaged over the batch). ``token_labels`` label the axes."""
    pat = _np(pattern)
    if pat.ndim == 4:
        pat, title = pat.mean(0), f"{title} (mean over {pat.shape[0]} examples)"
    if pat.ndim != 3:
        raise ValueError(f"pattern must be [head, q, k] or [batch, head, q, k], got {pat.shape}")
    heads = list(range(pat.shape[0])) if heads is None else list(heads)
    n_pos = pat.shape[-1]
    labels = list(token_labels) if token_labels is not None else [str(i) for i in range(n_pos)]
    if len(labels) != n_pos:
        raise ValueError(f"{len(labels)} token labels for {n_pos} positions")
    rows, cols = _grid(len(heads))
    fig = Figure(figsize=(3.0 * cols, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, h in zip(axes.flat, heads, strict=False):
        im = ax.imshow(pat[h], vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(f"head {h}")
        ax.set_xticks(range(n_pos), labels, rotation=45 if max(map(len, labels)) > 3 else 0)
        ax.set_yticks(range(n_pos), labels)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
    for ax in list(axes.flat)[len(heads) :]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle(title)
    return _finish(fig, path)


def plot_patching(
    result: PatchingResult,
    title: str = "activation patching (0 = corrupted, 1 = clean)",
    path: str | Path | None = None,
) -> Figure:
    """Heatmap of normalised patching effects: rows = hooks, columns = positions; when the
    result was patched per head, one panel per hook with rows = heads."""
    values = _np(result.values)
    pos_labels = [str(p) for p in result.positions]
    if result.heads is None:
        panels = [(values, list(result.hooks), "")]
    else:  # [hooks, pos, heads] -> per hook [heads, pos]
        head_labels = [f"head {h}" for h in result.heads]
        panels = [(values[i].T, head_labels, hook) for i, hook in enumerate(result.hooks)]
    bound = max(1.0, float(np.nanmax(np.abs(values))))
    rows, cols = _grid(len(panels), max_cols=3)
    n_rows = len(panels[0][1])
    fig = Figure(
        figsize=(max(4.0, 1.1 * len(pos_labels) + 3.5) * cols, (0.45 * n_rows + 1.6) * rows),
        layout="constrained",
    )
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (panel, row_labels, name) in zip(axes.flat, panels, strict=False):
        im = ax.imshow(panel, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
        ax.set_xticks(range(len(pos_labels)), pos_labels)
        ax.set_yticks(range(len(row_labels)), row_labels)
        ax.set_xlabel("position")
        if name:
            ax.set_title(name, fontsize=9)
        for (i, j), v in np.ndenumerate(panel):
            color = "white" if abs(v) > 0.6 * bound else "black"
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=color)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle(title)
    return _finish(fig, path)


def plot_ablation_effects(
    table: pd.DataFrame,
    top: int = 20,
    title: str = "ablation effect (metric - baseline)",
    path: str | Path | None = None,
) -> Figure:
    """Horizontal bars of ``effect`` per ``component`` (an ``ablation_sweep`` table), the ``top``
    largest |effect| first."""
    for col in ("component", "effect"):
        if col not in table.columns:
            raise ValueError(f"table needs a {col!r} column (an ablation_sweep result)")
    shown = table.reindex(table["effect"].abs().sort_values(ascending=False).index).head(top)
    fig = Figure(figsize=(7.0, 0.32 * len(shown) + 1.4), layout="constrained")
    ax = fig.subplots()
    effects = shown["effect"].to_numpy(dtype=float)[::-1]
    colors = ["tab:red" if e < 0 else "tab:blue" for e in effects]
    ax.barh(range(len(shown)), effects, color=colors)
    ax.set_yticks(range(len(shown)), list(shown["component"])[::-1], fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("effect")
    ax.set_title(title)
    return _finish(fig, path)


def plot_probe_accuracy(
    table: pd.DataFrame,
    title: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Probe score by hook (forward order), one line per position: a ``probe_cache`` table.
    Validation solid, train dashed (accuracy or R^2, whichever the table holds)."""
    kind = "acc" if "val_acc" in table.columns else "r2"
    if f"val_{kind}" not in table.columns:
        raise ValueError("table needs val_acc/train_acc or val_r2/train_r2 (a probe_cache result)")
    hooks = list(dict.fromkeys(table["hook"]))
    fig = Figure(figsize=(max(6.0, 0.7 * len(hooks) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    for pos, group in table.groupby("pos", sort=True):
        x = [hooks.index(h) for h in group["hook"]]
        (line,) = ax.plot(x, group[f"val_{kind}"], marker="o", label=f"pos {pos} (val)")
        ax.plot(x, group[f"train_{kind}"], linestyle="--", color=line.get_color(), alpha=0.6)
    ax.set_xticks(
        range(len(hooks)),
        [h.replace("blocks.", "L").replace(".hook_", " ") for h in hooks],
        rotation=60,
        ha="right",
    )
    ax.set_ylabel("accuracy" if kind == "acc" else "R^2")
    if kind == "acc":
        ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(title or f"linear probe {'accuracy' if kind == 'acc' else 'R^2'} (dashed = train)")
    return _finish(fig, path)


def plot_neuron_grid(
    acts: torch.Tensor,
    neurons: Sequence[int],
    p: int,
    title: str = "MLP neuron activations over (a, b)",
    path: str | Path | None = None,
) -> Figure:
    """Activation of chosen neurons over the input grid: ``acts [p*p, d_mlp]`` (a-major order,
    as ``all_pairs``) or ``[p, p, d_mlp]``; rows = a, columns = b."""
    arr = _np(acts)
    if arr.ndim == 2:
        if arr.shape[0] != p * p:
            raise ValueError(f"acts has {arr.shape[0]} rows, expected p*p = {p * p}")
        arr = arr.reshape(p, p, -1)
    if arr.ndim != 3 or arr.shape[:2] != (p, p):
        raise ValueError(f"acts must be [p*p, d_mlp] or [p, p, d_mlp], got {arr.shape}")
    neurons = list(neurons)
    rows, cols = _grid(len(neurons))
    fig = Figure(figsize=(2.8 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, n in zip(axes.flat, neurons, strict=False):
        im = ax.imshow(arr[:, :, n], cmap="magma", origin="lower")
        ax.set_title(f"neuron {n}")
        ax.set_xlabel("b")
        ax.set_ylabel("a")
        fig.colorbar(im, ax=ax, shrink=0.8)
    for ax in list(axes.flat)[len(neurons) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    return _finish(fig, path)


def plot_embedding(
    weight: torch.Tensor,
    title: str = "embedding",
    row_label: str = "token",
    col_label: str = "d_model",
    path: str | Path | None = None,
) -> Figure:
    """Heatmap of a weight matrix, e.g. ``W_E [d_vocab, d_model]`` or ``W_U.T [d_vocab_out,
    d_model]`` (rows = tokens)."""
    arr = _np(weight)
    if arr.ndim != 2:
        raise ValueError(f"weight must be 2-D, got shape {arr.shape}")
    bound = float(np.abs(arr).max()) or 1.0
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(arr, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    return _finish(fig, path)
