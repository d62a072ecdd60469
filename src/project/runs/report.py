"""One-command run report: ``uv run python -m project.runs.report <run_dir>``.

Writes ``<run_dir>/report/index.html``, a single self-contained page (figures are embedded PNG
data URIs) with: a text summary (memorisation and grokking epochs, key frequencies), train/val
loss and accuracy over epochs (log x axis) with the phases shaded, the Fourier progress measures
over training recomputed on the checkpoint snapshots with the *final* model's key frequencies (as
in Nanda et al. 2023), the embedding's Fourier spectrum (final, and over training), attention
patterns from ``=`` over the (a, b) grid, and neuron activations clustered by frequency.
Epochs are completed epochs throughout (snapshot ``epoch=000100.ckpt`` = after 100 epochs).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from project.checkpoint import load_checkpoint  # noqa: E402
from project.interp import fourier as fo  # noqa: E402
from project.runs.load import Run, first_epoch_at, load_run  # noqa: E402

THRESHOLD = 0.99


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def curves(run: Run) -> pd.DataFrame:
    """train/val loss and acc by completed epoch, from the loggers (else progress.jsonl)."""
    cols = ["train/loss", "train/acc", "val/loss", "val/acc"]
    m = run.metrics
    if any(c in m for c in cols):
        df = m[["epoch", *[c for c in cols if c in m]]].copy()
        df["epoch"] = df["epoch"].astype(float) + 1  # loggers: 0-based index of the epoch done
        df = df.groupby("epoch", as_index=False).first()
    else:
        df = pd.DataFrame({"epoch": []})
    prog = run.progress.rename(columns={c.replace("/", "_"): c for c in cols})
    if df.dropna(how="all", subset=[c for c in cols if c in df]).empty and not prog.empty:
        df = prog[["epoch", *[c for c in cols if c in prog]]].copy()
    return df.sort_values("epoch").reset_index(drop=True)


def phases(df: pd.DataFrame) -> tuple[int | None, int | None]:
    """(epoch train acc first >= 99%, epoch val acc first >= 99%) from the curves."""
    out = []
    for col in ("train/acc", "val/acc"):
        rows = df[["epoch", col]].dropna() if col in df else pd.DataFrame(columns=["epoch", col])
        out.append(first_epoch_at(rows["epoch"].to_numpy(), rows[col].to_numpy(), THRESHOLD))
    return out[0], out[1]


def _shade(ax: plt.Axes, t_mem: int | None, t_grok: int | None, end: float) -> None:
    start = 1
    if t_mem:
        ax.axvspan(start, t_mem, color="tab:orange", alpha=0.10, label="memorisation")
        stop = t_grok or end
        label = "circuit formation & clean-up" if t_grok else "not generalised (yet)"
        ax.axvspan(t_mem, max(stop, t_mem + 1), color="tab:purple", alpha=0.08, label=label)
    if t_grok:
        ax.axvline(t_grok, color="tab:green", ls="--", lw=1)
        ax.axvspan(t_grok, max(end, t_grok + 1), color="tab:green", alpha=0.06, label="generalised")


def fig_curves(df: pd.DataFrame, t_mem: int | None, t_grok: int | None) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    end = float(df["epoch"].max()) if len(df) else 1.0
    for ax, kind in zip(axes, ("loss", "acc"), strict=True):
        for split, color in (("train", "tab:blue"), ("val", "tab:red")):
            col = f"{split}/{kind}"
            if col in df:
                rows = df[["epoch", col]].dropna()
                ax.plot(rows["epoch"], rows[col], color=color, label=split)
        _shade(ax, t_mem, t_grok, end)
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(kind)
        if kind == "loss":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle("Training curves")
    return _png(fig)


def trajectory(run: Run, keys: list[int], max_snapshots: int) -> pd.DataFrame:
    """Progress measures for (a subsample of) the snapshots, with fixed key frequencies."""
    dm = run.datamodule()
    every = max(1, -(-len(run.snapshot_paths) // max(1, max_snapshots)))
    chosen = run.snapshot_paths[::every]
    if run.snapshot_paths and chosen[-1] != run.snapshot_paths[-1]:
        chosen.append(run.snapshot_paths[-1])
    rows = []
    for epoch, path in chosen:
        model = load_checkpoint(path)[0]
        m = fo.progress_measures(
            model, dm.modulus, dm.tokens, dm.answers, dm.train_idx, dm.val_idx, dm.operation, keys
        )
        m["epoch"] = epoch
        m["embed_norms"] = fo.embedding_frequency_norms(model, dm.modulus).numpy()
        rows.append(m)
    return pd.DataFrame(rows)


def fig_progress(traj: pd.DataFrame, t_mem: int | None, t_grok: int | None) -> str:
    panels = [
        (
            "Losses (key freqs of the final model)",
            ["train_loss", "val_loss", "restricted_loss", "excluded_loss"],
            True,
        ),
        ("Gini of Fourier norms", ["embed_gini", "logit_weights_gini"], False),
        ("Total sum of squared weights", ["weight_norm"], False),
        (
            "Share explained by key freqs",
            ["embed_key_frac", "neuron_key_frac", "logit_key_frac"],
            False,
        ),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    x = traj["epoch"].clip(lower=1)
    for ax, (title, cols, logy) in zip(axes, panels, strict=True):
        for col in cols:
            if col in traj and traj[col].notna().any():
                ax.plot(x, traj[col], marker=".", label=col)
        _shade(ax, t_mem, t_grok, float(x.max()))
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    return _png(fig)


def fig_spectrum(norms: np.ndarray, keys: list[int]) -> str:
    fig, ax = plt.subplots(figsize=(11, 3.2))
    k = np.arange(len(norms))
    colors = ["tab:red" if i in keys else "tab:gray" for i in k]
    ax.bar(k[1:], norms[1:], color=colors[1:])
    for i in keys:
        ax.annotate(str(i), (i, norms[i]), ha="center", va="bottom", fontsize=8, color="tab:red")
    ax.set_xlabel("frequency k")
    ax.set_ylabel("norm of W_E (cos k, sin k)")
    ax.set_title("Embedding Fourier spectrum of the final model (key frequencies in red)")
    return _png(fig)


def fig_spectrum_over_time(traj: pd.DataFrame) -> str:
    mat = np.stack(traj["embed_norms"].to_list())[:, 1:]  # [snapshots, freqs]
    fig, ax = plt.subplots(figsize=(11, 3.2))
    im = ax.imshow(
        mat.T,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        extent=(-0.5, len(traj) - 0.5, 0.5, mat.shape[1] + 0.5),
    )
    ticks = np.linspace(0, len(traj) - 1, min(8, len(traj))).astype(int)
    ax.set_xticks(ticks, [str(int(traj["epoch"].iloc[t])) for t in ticks])
    ax.set_xlabel("snapshot epoch")
    ax.set_ylabel("frequency k")
    ax.set_title("Embedding Fourier norms over training")
    fig.colorbar(im, ax=ax)
    return _png(fig)


@torch.no_grad()
def fig_attention(model: Any, p: int) -> str:
    _, cache = model.run_with_cache(fo.grid_tokens(p), names_filter="blocks.0.attn.hook_pattern")
    pattern = cache["blocks.0.attn.hook_pattern"][:, :, -1, 0]  # '=' attending to a: [p^2, head]
    n_heads = pattern.shape[1]
    fig, axes = plt.subplots(1, n_heads, figsize=(3.2 * n_heads, 3.2), squeeze=False)
    for h, ax in enumerate(axes[0]):
        im = ax.imshow(pattern[:, h].reshape(p, p).numpy(), cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"head {h}: attn '=' -> a", fontsize=9)
        ax.set_xlabel("b")
        ax.set_ylabel("a")
    fig.colorbar(im, ax=axes[0].tolist())
    return _png(fig)


def fig_neurons(acts: torch.Tensor, freq: torch.Tensor, share: torch.Tensor) -> str:
    clusters = sorted(int(k) for k in torch.unique(freq[freq > 0]))[:6]
    ncols = 1 + max(1, len(clusters))
    fig, axes = plt.subplots(1, ncols, figsize=(3.3 * ncols, 3.2), squeeze=False)
    labels = [str(k) for k in clusters] + ["unexplained"]
    counts = [int((freq == k).sum()) for k in clusters] + [int((freq < 0).sum())]
    axes[0, 0].bar(labels, counts, color=["tab:red"] * len(clusters) + ["tab:gray"])
    axes[0, 0].set_title("neurons per frequency cluster", fontsize=9)
    axes[0, 0].set_xlabel("frequency")
    for ax, k in zip(axes[0, 1:], clusters, strict=False):
        idx = int(torch.where(freq == k, share, -1.0).argmax())
        ax.imshow(acts[:, :, idx].numpy(), cmap="coolwarm")
        ax.set_title(f"neuron {idx}: freq {k} ({float(share[idx]):.0%} explained)", fontsize=8)
        ax.set_xlabel("b")
        ax.set_ylabel("a")
    if not clusters:
        axes[0, 1].axis("off")
        axes[0, 1].text(0.5, 0.5, "no neuron is >85% one frequency", ha="center")
    return _png(fig)


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else html.escape(str(x))


def build_report(run_dir: str | Path, max_snapshots: int = 30) -> Path:
    """Write ``<run_dir>/report/index.html`` and return its path."""
    run = load_run(run_dir)
    dm = run.datamodule()
    p, op = dm.modulus, dm.operation
    df = curves(run)
    t_mem, t_grok = phases(df)
    model = run.final_model()
    logits, acts = fo.grid_forward(model, p)
    final = fo.progress_measures(model, p, dm.tokens, dm.answers, dm.train_idx, dm.val_idx, op)
    keys = final["key_freqs"]
    norms = fo.embedding_frequency_norms(model, p).numpy()
    embed_keys = fo.key_frequencies_from_norms(torch.from_numpy(norms))
    traj = trajectory(run, keys, max_snapshots) if run.snapshot_paths else pd.DataFrame()

    end = int(df["epoch"].max()) if len(df) else (run.epochs[-1] if run.epochs else 0)
    val_max = (
        float(df["val/acc"].max()) if "val/acc" in df and df["val/acc"].notna().any() else None
    )
    if t_grok:
        verdict = (
            f"Grokked: validation accuracy first reached {THRESHOLD:.0%} after {t_grok} epochs"
        )
        verdict += f", {t_grok - t_mem} epochs after memorisation." if t_mem else "."
    elif val_max is not None:
        verdict = f"Has NOT grokked: validation accuracy never reached {THRESHOLD:.0%} "
        verdict += f"(best {val_max:.1%})."
    else:
        verdict = "Has NOT grokked (no validation accuracy logged)."
    summary = {
        "run dir": str(run.run_dir),
        "task": f"{op} mod {p}, train fraction {dm.frac_train}",
        "epochs trained": end,
        "memorised (train acc >= 99%)": f"after {t_mem} epochs" if t_mem else "not yet",
        "generalised (val acc >= 99%)": f"after {t_grok} epochs" if t_grok else "not yet",
        "key frequencies (neuron clusters)": keys or "none",
        "key frequencies (embedding spectrum)": embed_keys or "none",
        "final train / val acc": f"{final['train_acc']:.2%} / {final['val_acc']:.2%}",
        "neurons >85% one frequency": f"{final.get('neuron_explained_frac', 0.0):.0%}",
        "metrics source": run.metrics_source,
        "snapshots analysed": len(traj),
    }
    model_cfg = run.config.get("model", {})
    for key in ("lr", "weight_decay", "grokfast"):
        if key in model_cfg:
            summary[f"model.{key}"] = model_cfg[key]

    sections = [("Training curves", fig_curves(df, t_mem, t_grok), "")]
    if len(traj):
        sections.append(
            (
                "Progress measures over training",
                fig_progress(traj, t_mem, t_grok),
                "Restricted loss keeps only the key-frequency directions cos/sin(w_k(a+b)) of the "
                "logits (plus the constant), on all pairs; excluded loss removes them, on the train "
                "pairs. Key frequencies are the final model's.",
            )
        )
    sections.append(("Embedding Fourier spectrum", fig_spectrum(norms, embed_keys or keys), ""))
    if len(traj) > 1:
        sections.append(("Embedding spectrum over training", fig_spectrum_over_time(traj), ""))
    sections.append(("Attention patterns (layer 0)", fig_attention(model, p), ""))
    if acts is not None:
        freq, share = fo.neuron_clusters(acts)
        sections.append(
            (
                "Neurons clustered by frequency",
                fig_neurons(acts, freq, share),
                "Each neuron's activation at '=' over the (a, b) grid; clusters as in "
                "the paper (>85% of its variance in one frequency).",
            )
        )
    rows = "".join(f"<tr><th>{_fmt(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in summary.items())
    body = "".join(
        f'<section><h2>{html.escape(t)}</h2><img alt="{html.escape(t)}" src="{src}">'
        f"<p>{html.escape(note)}</p></section>"
        for t, src, note in sections
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Run report</title><style>"
        "body{font-family:sans-serif;max-width:1300px;margin:2em auto;color:#222}"
        "img{max-width:100%}th{text-align:left;padding-right:1em}td,th{border-bottom:1px solid #eee}"
        ".verdict{font-size:1.2em;font-weight:bold}</style></head><body>"
        f"<h1>Run report: {html.escape(run.run_dir.name)}</h1>"
        f"<p class='verdict'>{html.escape(verdict)}</p><table>{rows}</table>{body}</body></html>"
    )
    out = run.run_dir / "report" / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m project.runs.report", description=__doc__)
    parser.add_argument("run_dir", help="a run dir written by project.train.run")
    parser.add_argument(
        "--max-snapshots",
        type=int,
        default=30,
        help="analyse at most this many checkpoint snapshots (default 30)",
    )
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        print(f"error: run_dir={str(run_dir)!r} is not a directory", file=sys.stderr)
        return 2
    if not (run_dir / "checkpoints").is_dir():
        print(
            f"error: run_dir={str(run_dir)!r} has no checkpoints/ (not a run dir)", file=sys.stderr
        )
        return 2
    out = build_report(run_dir, args.max_snapshots)
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
