"""Interpretability tour of a grokked modular-addition model: ablate, patch, probe, plot.

    uv run python examples/interp_demo.py                       # trains a p=23 model in seconds
    uv run python examples/interp_demo.py --ckpt outputs/<date>/<time>/checkpoints/last.ckpt

With ``--ckpt`` the model comes from a training run (``project.utils.helpers.load_checkpoint``);
the operation and modulus are read from the run's ``resolved_config.yaml`` when it is there.
Without it, a small model (d_model 64) is trained in-process on (a + b) mod 23 until it
generalises (100% validation accuracy). PNGs are written to ``--out`` (default: a temp dir).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from project.data.arithmetic import all_pairs, split_indices
from project.interp import (
    Site,
    ablation_sweep,
    activation_patching,
    corrupt_operand,
    head_ablations,
    layer_ablations,
    modular_labels,
    path_patching,
    probe_cache,
    viz,
)
from project.interp.metrics import accuracy, logit_diff
from project.models.tiny_transformer import TinyTransformer


def train_small(p: int = 23, operation: str = "add", max_steps: int = 1500) -> TinyTransformer:
    """Full-batch AdamW on 80% of the table until validation accuracy is 1.0 twice in a row."""
    tokens, labels = all_pairs(operation, p)
    train, val = split_indices(len(tokens), 0.8, 598)
    torch.manual_seed(1)
    model = TinyTransformer(
        d_vocab=p + 1, d_vocab_out=p, d_model=64, n_heads=4, d_head=16, d_mlp=256
    )
    opt = torch.optim.AdamW(model.parameters(), lr=2e-2, weight_decay=1.0, betas=(0.9, 0.98))
    perfect = 0
    for step in range(1, max_steps + 1):
        loss = F.cross_entropy(model(tokens[train])[:, -1], labels[train])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0:
            with torch.no_grad():
                val_acc = float(accuracy(model(tokens[val]), labels[val]))
            perfect = perfect + 1 if val_acc == 1.0 else 0
            if perfect == 2:
                break
    print(f"trained {step} steps: val accuracy {val_acc:.3f}")
    return model.eval()


def load(ckpt: Path, operation: str) -> tuple[TinyTransformer, str]:
    import yaml

    from project.utils.helpers import load_checkpoint

    model, hparams = load_checkpoint(ckpt)
    resolved = ckpt.resolve().parent.parent / "resolved_config.yaml"
    if resolved.is_file():
        operation = yaml.safe_load(resolved.read_text())["data"]["operation"]
    print(f"loaded {ckpt} (epoch {hparams['epoch']}), operation {operation!r}")
    return model, operation


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, help="checkpoint of a training run (default: train)")
    parser.add_argument("--operation", default="add", help="operation when not in the run config")
    parser.add_argument("--p", type=int, default=23, help="modulus when training here")
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default: a temp dir)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny model: one thread is fastest

    if args.ckpt:
        model, operation = load(args.ckpt, args.operation)
    else:
        model, operation = train_small(args.p, args.operation), args.operation
    torch.set_grad_enabled(False)  # analysis only from here on
    p = model.cfg.d_vocab_out
    out = args.out or Path(tempfile.mkdtemp(prefix="interp_demo_"))
    out.mkdir(parents=True, exist_ok=True)
    tokens, labels = all_pairs(operation, p)
    print(f"accuracy on all {len(tokens)} pairs: {float(accuracy(model(tokens), labels)):.3f}")

    # 1. ablation: which components matter for accuracy?
    table = ablation_sweep(
        model,
        tokens,
        lambda lg: accuracy(lg, labels),
        layer_ablations(model, "mean") + head_ablations(model, "mean"),
    )
    print("\nmean-ablation sweep (sorted by |effect|):")
    print(table[["component", "metric", "effect"]].to_string(index=False))
    viz.plot_ablation_effects(table, path=out / "ablation.png")

    # 2. activation patching: resample a, patch clean activations back in
    corrupted = corrupt_operand(tokens, "a", p=p)
    corrupted_labels = modular_labels(corrupted, operation, p=p)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logit_diff(logits, labels, corrupted_labels)

    hooks = lambda name: name.endswith(("hook_resid_pre", "hook_resid_mid", "hook_resid_post"))  # noqa: E731
    patch = activation_patching(model, tokens, corrupted, metric, hooks=hooks)
    print("\nactivation patching (0 = corrupted, 1 = clean):")
    print(
        patch.to_frame()
        .pivot(index="hook", columns="pos", values="normalised")
        .reindex(patch.hooks)
        .round(3)
    )
    viz.plot_patching(patch, path=out / "patching.png")
    heads = activation_patching(
        model, tokens, corrupted, metric, hooks="blocks.0.attn.hook_z", by_head=True
    )
    viz.plot_patching(heads, title="patching hook_z per head", path=out / "patching_heads.png")

    # 3. path patching: does attention act through the MLP or directly on the logits?
    via_mlp = path_patching(
        model, tokens, corrupted, metric, "blocks.0.hook_attn_out", "blocks.0.mlp.hook_pre"
    )
    direct = path_patching(
        model, tokens, corrupted, metric, "blocks.0.hook_attn_out", "blocks.0.hook_resid_post"
    )
    head0 = path_patching(
        model,
        tokens,
        corrupted,
        metric,
        Site("blocks.0.attn.hook_z", head=0),
        "blocks.0.mlp.hook_pre",
    )
    print(
        f"\npath patching attn -> MLP: {via_mlp.normalised:.3f}, attn -> logits directly: "
        f"{direct.normalised:.3f}, head 0 -> MLP: {head0.normalised:.3f}"
    )

    # 4. probes: where is `a` linearly decodable?
    _, cache = model.run_with_cache(tokens)
    probes = probe_cache(cache, tokens[:, 0], n_classes=p, names=lambda n: "resid" in n)
    print("\nlinear probe for a (val accuracy):")
    print(
        probes.pivot(index="hook", columns="pos", values="val_acc")
        .reindex(probes["hook"].unique())
        .round(3)
    )
    viz.plot_probe_accuracy(probes, path=out / "probes.png")

    # 5. pictures of the mechanism
    viz.plot_attention_patterns(
        cache["pattern", 0], token_labels=["a", "b", "="], path=out / "attention.png"
    )
    top = cache["post", 0][:, -1].var(0).argsort(descending=True)[:6].tolist()
    viz.plot_neuron_grid(cache["post", 0][:, -1], top, p, path=out / "neurons.png")
    viz.plot_embedding(model.embed.W_E, title="W_E", path=out / "W_E.png")
    print(f"\nwrote {len(list(out.glob('*.png')))} PNGs to {out}")


if __name__ == "__main__":
    main()
