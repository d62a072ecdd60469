"""Time to grok: epochs and wall seconds until validation accuracy first reaches 99%.

    uv run python benchmarks/time_to_grok.py                       # fast_grok, 3 seeds + references
    uv run python benchmarks/time_to_grok.py --seeds 0 --recipes fast_grok --cap 300 --nanda-cap 50
    uv run python benchmarks/time_to_grok.py --quick    # smoke test: fast_grok seed 0, 20 epochs

Each (recipe, seed) runs the real CLI (``python -m project.train.run experiment=... seed=...``) in
a subprocess, with an EarlyStopping callback that stops at the first validation with val/acc >=
0.99 (``trainer.max_epochs`` = the cap). Wall seconds to 99% are measured from the process start
(imports included) to the TensorBoard event of that validation; epochs come from the same event.
Validation runs every 10 epochs (the presets' default), so epochs are multiples of 10.

Recipes: ``fast_grok`` (the preset), ``grokfast`` (fast_grok + Grokfast EMA, alpha 0.98, lamb 2),
``nanda2023`` (the faithful recipe, capped by ``--nanda-cap``). ``--plain`` (on by default) also
times a hand-written PyTorch loop of the fast_grok recipe (same model init and split, full batch,
validation every 10 steps, no progress measures or checkpoints) in this process, as a reference
for the framework's overhead. The table is printed last.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks._common

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "fast_grok": ["experiment=fast_grok"],
    "grokfast": ["experiment=fast_grok", "grokfast=ema"],
    "nanda2023": ["experiment=nanda2023"],
}
STOP = [
    "+callbacks.stop_at_99._target_=lightning.pytorch.callbacks.EarlyStopping",
    "+callbacks.stop_at_99.monitor=val/acc",
    "+callbacks.stop_at_99.mode=max",
    "+callbacks.stop_at_99.stopping_threshold=0.99",
    "+callbacks.stop_at_99.patience=1000000",
    "+callbacks.stop_at_99.check_on_train_epoch_end=false",
]


def first_crossing(run_dir: Path, threshold: float = 0.99) -> tuple[int | None, float | None]:
    """(completed epochs, event wall time) of the first val/acc >= threshold in tb_logs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted({f.parent for f in (run_dir / "tb_logs").rglob("events.out.tfevents.*")})
    for path in events:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        if "val/acc" not in acc.Tags()["scalars"]:
            continue
        epochs = (
            {e.step: e.value for e in acc.Scalars("epoch")}
            if "epoch" in acc.Tags()["scalars"]
            else {}
        )
        for e in acc.Scalars("val/acc"):
            if e.value >= threshold:
                return int(epochs.get(e.step, e.step)) + 1, e.wall_time
    return None, None


def run_cli(recipe: str, seed: int, cap: int, out: Path, extra: list[str]) -> dict:
    overrides = [
        *RECIPES[recipe],
        f"seed={seed}",
        f"trainer.max_epochs={cap}",
        "logger=tensorboard",
        f"run.output_root={out}",
        f"run.name={recipe}-s{seed}",
        *STOP,
        *extra,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "project.train.run", *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    total = time.time() - start
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"{recipe} seed {seed}: training exited {proc.returncode}")
    run_dir = sorted(out.glob(f"*/*-{recipe}-s{seed}"))[-1]
    epochs, wall = first_crossing(run_dir)
    return {
        "recipe": recipe,
        "seed": seed,
        "epochs": epochs,
        "wall": (wall - start) if wall else None,
        "process": total,
        "cap": cap,
    }


def run_plain(
    seed: int, cap: int, p: int = 113, frac: float = 0.3, lr: float = 1e-2, wd: float = 3.0
) -> dict:
    """The fast_grok recipe as a hand-written loop (``_common.PlainLoop``), val every 10 epochs."""
    import torch
    from benchmarks._common import PlainLoop

    from project.data.arithmetic import all_pairs, split_indices
    from project.models.tiny_transformer import TinyTransformer

    start = time.time()
    tokens, labels = all_pairs("add", p)
    train_idx, val_idx = split_indices(len(labels), frac, 598)
    torch.manual_seed(seed)
    model = TinyTransformer(d_vocab=p + 1, d_vocab_out=p)
    loop = PlainLoop(model, lr=lr, weight_decay=wd, last_only=True)  # as the template trains
    x_tr, y_tr, x_va, y_va = tokens[train_idx], labels[train_idx], tokens[val_idx], labels[val_idx]
    reached = None
    for epoch in range(1, cap + 1):
        loop.step(x_tr, y_tr)
        if epoch % 10 == 0:
            _, acc = loop.validate(x_va, y_va)
            if acc >= 0.99:
                reached = epoch
                break
    wall = time.time() - start
    return {
        "recipe": "plain-pytorch fast_grok",
        "seed": seed,
        "epochs": reached,
        "wall": wall if reached else None,
        "process": wall,
        "cap": cap,
    }


def table(rows: list[dict]) -> str:
    head = "| recipe | seed | epochs to 99% val acc | wall s to 99% | process wall s |"
    lines = [head, "|---|---|---|---|---|"]
    for r in rows:
        epochs = str(r["epochs"]) if r["epochs"] else f"not reached by {r['cap']}"
        wall = f"{r['wall']:.1f}" if r["wall"] else "-"
        lines.append(f"| {r['recipe']} | {r['seed']} | {epochs} | {wall} | {r['process']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=["fast_grok", "grokfast", "nanda2023"],
        choices=list(RECIPES),
    )
    parser.add_argument("--cap", type=int, default=600, help="max epochs for fast_grok/grokfast")
    parser.add_argument("--nanda-cap", type=int, default=1000, help="max epochs for nanda2023")
    parser.add_argument("--nanda-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-plain", action="store_true", help="skip the plain-PyTorch loop")
    parser.add_argument("--p", type=int, default=113, help="modulus (data.modulus)")
    parser.add_argument("--frac", type=float, default=0.3, help="train fraction (data.frac_train)")
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for all runs")
    parser.add_argument("--quick", action="store_true", help="fast_grok, seed 0, cap 20 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.recipes, args.cap = [0], ["fast_grok"], 20
    rows = []
    with tempfile.TemporaryDirectory(prefix="time_to_grok-") as tmp:
        for recipe in args.recipes:
            seeds = args.nanda_seeds if recipe == "nanda2023" else args.seeds
            cap = args.nanda_cap if recipe == "nanda2023" else args.cap
            for seed in seeds:
                data = [f"data.modulus={args.p}", f"data.frac_train={args.frac}"]
                rows.append(run_cli(recipe, seed, cap, Path(tmp), data + args.extra))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    if not args.no_plain:
        for seed in args.seeds:
            rows.append(run_plain(seed, args.cap, args.p, args.frac))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    import torch

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), p={args.p}, "
        f"train fraction {args.frac}"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
