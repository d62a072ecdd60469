"""Epoch time of the template CLI against two hand-written loops, interleaved in one process.

    uv run python benchmarks/step_time.py [--blocks 30] [--block 10]   # the issue's measurement
    uv run python benchmarks/step_time.py --quick                       # smoke test (~a minute)
    TORCH_NUM_THREADS=1 OMP_NUM_THREADS=1 uv run python benchmarks/step_time.py --modulus 31 \
        --frac-train 0.5 --no-extras --steps-per-batch 10                # the small-model case

One real CLI run (``project.train.run`` in this process: Hydra config, LightningModule, Trainer,
TensorBoard logging, the default callbacks and progress bar, default config) of
``warmup + blocks x block`` epochs. A callback added with a Hydra override splits it into blocks of
``block`` epochs and, at each block boundary, runs ``block`` epochs of each reference loop:

* plain loop = the template's own ``TinyTransformer`` (last-position forward) in a bare loop;
* strong loop = ``StrongNet`` (``benchmarks/_common.py``): the same model written from scratch
  with ``F.embedding``, fused ``scaled_dot_product_attention`` and the last position only.

So the three alternate every ``block`` epochs in the same process, threads and memory state, and
slow drifts of the machine (this box's step time wanders by 10-20% over minutes) hit all three
alike. The template's block time runs from one boundary to the next with the loops' time taken
out: every epoch's training step, validation, callbacks, logging and progress bar. Headline: the
total over all blocks, template / strong (per-block ratios shown too).

Same work in all three: same data and split, AdamW (lr 1e-3, wd 1, betas 0.9/0.98) + 10-step
warm-up, float64 loss at the last position, train loss and accuracy every epoch, a validation pass
(loss + accuracy) every 10 epochs (``block`` is a multiple of 10). The Fourier progress measures
are switched off in the timed run: they are science the loops do not do (one ~0.7 s call every 200
epochs by default; the extras print their amortised cost), as in the issue's marginal-cost method,
where they cancelled. ``last.ckpt`` every 50 epochs stays on.

From the callback's stamps the template's epoch also splits into the training step
(``on_train_batch_start`` -> ``on_train_batch_end``) and everything outside it, a split that is
immune to the machine's drift.

``--steps-per-batch K`` (full batch) runs the template with ``model.steps_per_batch=K``: K
optimiser steps (K epochs) per Lightning step, the same weights and real epoch counts; a
Lightning epoch is then K real epochs, and the step / outside split is reported per optimiser step
and per real epoch. K must divide ``--block``, ``--warmup`` and the validation cadence (10).

Extras (``--extras``, on unless ``--quick``): per-step medians of the loops (full vs last-position
forward, fused AdamW), HookPoints unused vs absent, ``run_with_cache``, TransformerLens, and the
amortised cost of the progress measures and checkpoint writes. Prints a table last.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import (  # noqa: E402
    PlainLoop,
    StrongLoop,
    default_data,
    load_note,
    machine,
    median_time,
    plain_model,
    print_table,
    run_entrypoint,
    run_epochs,
)

VAL_EVERY = 10
LOOPS = ("strong", "plain")
_RESULT: dict[str, list[float]] = {}  # filled by the callback (Hydra builds it from this module)


class Interleaved(L.Callback):
    """Runs ``block`` epochs of each reference loop every ``block`` template epochs after
    ``warmup``; records the template's block times without them, and its step / outside split."""

    def __init__(
        self,
        warmup: int,
        block: int,
        blocks: int,
        batch_size: int | None = None,
        modulus: int = 113,
        frac_train: float = 0.3,
    ) -> None:
        self.warmup, self.block, self.blocks, self.batch_size = warmup, block, blocks, batch_size
        self.data = default_data(modulus, frac_train)
        self.loops = {
            "strong": StrongLoop(modulus=modulus),
            "plain": PlainLoop(plain_model(modulus=modulus), last_only=True),
        }
        self.block_start: float | None = None
        self.batch_start = 0.0
        self.batch_first_step = 0
        self.epoch_start = 0.0
        self.epoch_first_step = 0  # global_step at the Lightning epoch's start
        self.epoch_steps = 0.0  # seconds in training steps during the current epoch

    def run_loops(self, epochs: int, first_epoch: int) -> dict[str, float]:
        return {
            kind: run_epochs(loop, self.data, epochs, VAL_EVERY, self.batch_size, first_epoch)
            for kind, loop in self.loops.items()
        }

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = time.perf_counter()
        epoch = trainer.current_epoch
        if self.block_start is not None and self.warmup < epoch:  # the previous epoch, whole
            # per real epoch: a Lightning epoch is steps_per_batch of them (full batch)
            epochs = max(trainer.global_step - self.epoch_first_step, 1)
            _RESULT["outside"].append((now - self.epoch_start - self.epoch_steps) / epochs)
        if epoch >= self.warmup and (epoch - self.warmup) % self.block == 0:
            if self.block_start is None:
                self.run_loops(3, 0)  # the loops' own first-step warm-up
            else:
                _RESULT["template"].append(now - self.block_start)
            if len(_RESULT["template"]) < self.blocks:
                for kind, seconds in self.run_loops(self.block, epoch).items():
                    _RESULT[kind].append(seconds)
            now = time.perf_counter()
            self.block_start = now
        self.epoch_start, self.epoch_steps = now, 0.0
        self.epoch_first_step = trainer.global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch_start = time.perf_counter()
        self.batch_first_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = time.perf_counter() - self.batch_start
        self.epoch_steps += step
        if self.block_start is not None:  # per optimiser step (steps_per_batch of them a batch)
            _RESULT["step"].append(step / max(trainer.global_step - self.batch_first_step, 1))


def interleaved(
    block: int,
    blocks: int,
    warmup: int,
    overrides: list[str],
    batch_size: int | None = None,
    modulus: int = 113,
    frac_train: float = 0.3,
    steps_per_batch: int = 1,
) -> dict[str, list]:
    """Seconds per block for ``template``, ``strong`` and ``plain``, and the template's per-step
    ``step`` / per-epoch ``outside`` times, from one CLI run."""
    import benchmarks.step_time as this  # the module Hydra instantiates the callback from

    if block % VAL_EVERY:
        raise SystemExit(f"--block must be a multiple of {VAL_EVERY} (same validations per block)")
    if steps_per_batch > 1 and (block % steps_per_batch or warmup % steps_per_batch):
        raise SystemExit("--steps-per-batch must divide --block and --warmup (blocks start then)")
    this._RESULT.clear()
    this._RESULT.update({k: [] for k in ("template", *LOOPS, "step", "outside")})
    with tempfile.TemporaryDirectory() as tmp:
        run_entrypoint(
            f"run.output_root={tmp}/outputs",
            f"trainer.max_epochs={warmup + block * blocks + 1}",
            f"trainer.check_val_every_n_epoch={VAL_EVERY}",
            f"data.batch_size={batch_size if batch_size else 'null'}",
            "callbacks.progress_measures.every_n_epochs=0",
            "+callbacks.interleaved._target_=benchmarks.step_time.Interleaved",
            f"+callbacks.interleaved.warmup={warmup}",
            f"+callbacks.interleaved.block={block}",
            f"+callbacks.interleaved.blocks={blocks}",
            f"+callbacks.interleaved.batch_size={batch_size if batch_size else 'null'}",
            f"data.modulus={modulus}",
            f"data.frac_train={frac_train}",
            f"+callbacks.interleaved.modulus={modulus}",
            f"+callbacks.interleaved.frac_train={frac_train}",
            f"model.steps_per_batch={steps_per_batch}",
            *overrides,
        )
    return dict(this._RESULT)


def step_medians(steps: int) -> list[tuple]:
    """Median time of one training step (no validation) of each loop variant."""
    x, y, _, _ = default_data()

    def timed(loop: PlainLoop) -> float:
        return median_time(lambda: loop.step(x, y), steps, warmup=2)

    t_full = timed(PlainLoop(plain_model()))
    rows = [("step: plain loop, full forward", f"{t_full * 1e3:.1f}", "1.00")]
    for name, loop in (
        ("step: plain loop, last-position forward", PlainLoop(plain_model(), last_only=True)),
        ("step: strong loop", StrongLoop()),
    ):
        t = timed(loop)
        rows.append((name, f"{t * 1e3:.1f}", f"{t / t_full:.3f}"))
    try:  # a config-only change for the template too: model.optimizer.fused=true
        t = timed(StrongLoop(fused=True))
        rows.append(("step: strong loop, AdamW(fused=True)", f"{t * 1e3:.1f}", f"{t / t_full:.3f}"))
    except (RuntimeError, TypeError) as exc:
        rows.append(("step: strong loop, AdamW(fused=True)", "n/a", str(exc)[:40]))
    return rows


def strip_hookpoints(model: torch.nn.Module) -> torch.nn.Module:
    """Replace every HookPoint module by a plain identity function (no module call at all)."""
    from project.models.hooks import HookPoint

    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, HookPoint):
                delattr(module, child_name)
                object.__setattr__(module, child_name, lambda x: x)
    return model


def hook_costs(repeats: int) -> list[tuple]:
    tokens, labels, _, _ = default_data()
    hooked = plain_model()
    bare = strip_hookpoints(plain_model())
    rows = []

    def fwd_bwd(model):
        def f():
            model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(tokens)[:, -1], labels).backward()

        return f

    t_bare = median_time(fwd_bwd(bare), repeats)
    t_hooked = median_time(fwd_bwd(hooked), repeats)
    rows.append(("fwd+bwd, no HookPoints", f"{t_bare * 1e3:.1f}", "1.00"))
    rows.append(("fwd+bwd, HookPoints unused", f"{t_hooked * 1e3:.1f}", f"{t_hooked / t_bare:.3f}"))
    x = torch.zeros(8)
    points = list(hooked.hook_dict.values())
    t_calls = median_time(lambda: [hp(x) for hp in points], 2000)  # identity: no autograd node
    rows.append(
        (
            f"  {len(points)} HookPoint calls per forward",
            f"{t_calls * 1e3:.3f}",
            f"+{t_calls / t_bare * 100:.3f}%",
        )
    )
    with torch.no_grad():
        t_fwd = median_time(lambda: hooked(tokens), repeats)
        t_cache = median_time(lambda: hooked.run_with_cache(tokens), repeats)
        rows.append(("forward (no grad)", f"{t_fwd * 1e3:.1f}", "1.00"))
        rows.append(
            ("run_with_cache (all hooks)", f"{t_cache * 1e3:.1f}", f"{t_cache / t_fwd:.3f}")
        )
        try:
            from project.interp.tl_export import to_hooked_transformer

            tl = to_hooked_transformer(hooked)
            t_tl = median_time(lambda: tl(tokens), repeats)
            t_tl_cache = median_time(lambda: tl.run_with_cache(tokens), repeats)
            rows.append(("TransformerLens forward", f"{t_tl * 1e3:.1f}", f"{t_tl / t_fwd:.3f}"))
            rows.append(
                (
                    "TransformerLens run_with_cache",
                    f"{t_tl_cache * 1e3:.1f}",
                    f"{t_tl_cache / t_fwd:.3f}",
                )
            )
        except ImportError as exc:
            rows.append(("TransformerLens", "skipped", str(exc)[:40]))
    return rows


def callback_costs(t_epoch: float) -> list[tuple]:
    """Per-call cost of the progress measures and of a checkpoint write, amortised over the
    default cadences (the long-run overhead; a short run also pays the fixed start/end calls)."""
    import io

    from hydra import compose, initialize_config_dir

    from project.data.modular import ModularDataModule
    from project.interp.fourier import progress_measures
    from project.lit_module import LitCausalLM
    from project.train.checks import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config")
    every_measure = cfg.callbacks.progress_measures.every_n_epochs
    every_last = cfg.callbacks.last_checkpoint.every_n_epochs
    every_snap = cfg.callbacks.snapshots.every_n_epochs
    dm = ModularDataModule()
    model = plain_model()
    t_measure = median_time(
        lambda: progress_measures(model, 113, dm.tokens, dm.answers, dm.train_idx, dm.val_idx),
        3,
        warmup=1,
    )
    module = LitCausalLM(net=plain_model(), optimizer=functools.partial(torch.optim.AdamW))
    opt = torch.optim.AdamW(module.parameters())
    module.net(dm.tokens[:8]).sum().backward()
    opt.step()  # optimiser state exists, as in a real checkpoint
    state = {"state_dict": module.state_dict(), "optimizer_states": [opt.state_dict()]}
    t_ckpt = median_time(lambda: torch.save(state, io.BytesIO()), 5, warmup=1)
    share = (
        t_measure / every_measure + t_ckpt / every_last + (t_ckpt / every_snap if every_snap else 0)
    ) / t_epoch
    return [
        ("progress measures, one call", f"{t_measure * 1e3:.0f}", f"every {every_measure} epochs"),
        (
            "checkpoint write (in memory), one call",
            f"{t_ckpt * 1e3:.1f}",
            f"last every {every_last}",
        ),
        ("callbacks amortised over a long run", "", f"+{share * 100:.1f}%"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--block", type=int, default=10, help="epochs per block (x10)")
    parser.add_argument("--blocks", type=int, default=30, help="blocks of each contender")
    parser.add_argument("--warmup", type=int, default=10, help="template epochs before timing")
    parser.add_argument("--steps", type=int, default=30, help="timed steps for the step medians")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="minibatches of this size (shuffled every epoch) for all three; default full batch",
    )
    parser.add_argument("--modulus", type=int, default=113, help="p (31: the small-model case)")
    parser.add_argument("--frac-train", type=float, default=0.3, help="train fraction")
    parser.add_argument(
        "--steps-per-batch",
        type=int,
        default=1,
        help="the template's model.steps_per_batch (K full-batch optimiser steps per Lightning "
        "step; same weights); must divide --block and --warmup",
    )
    parser.add_argument("--extras", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--quick", action="store_true", help="2 blocks of 10, no extras")
    parser.add_argument(
        "--override", action="append", default=[], help="extra Hydra override for the template"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.block, args.blocks, args.warmup, args.steps = 10, 2, 3, 3
    extras = (not args.quick) if args.extras is None else args.extras
    print(f"machine: {machine()}; {load_note()}", flush=True)

    res = interleaved(
        args.block, args.blocks, args.warmup, args.override, args.batch_size, args.modulus,
        args.frac_train, args.steps_per_batch,
    )  # fmt: skip
    epochs = args.block * args.blocks
    per_epoch = {k: sum(res[k]) / epochs for k in ("template", *LOOPS)}
    t_tpl, t_strong, t_plain = per_epoch["template"], per_epoch["strong"], per_epoch["plain"]
    ratios = sorted(t / s for t, s in zip(res["template"], res["strong"], strict=True))
    step, outside = statistics.median(res["step"]), statistics.median(res["outside"])
    mean_outside = statistics.fmean(res["outside"])
    rows = [
        (f"epoch: strong loop ({epochs} epochs)", f"{t_strong * 1e3:.1f}", "1.00"),
        (
            f"epoch: plain loop ({epochs} epochs)",
            f"{t_plain * 1e3:.1f}",
            f"{t_plain / t_strong:.3f}",
        ),
        (f"epoch: template CLI ({epochs} epochs)", f"{t_tpl * 1e3:.1f}", f"{t_tpl / t_strong:.3f}"),
        ("template CLI / strong loop", "", f"{t_tpl / t_strong:.3f}"),
        ("template CLI / plain loop", "", f"{t_tpl / t_plain:.3f}"),
        (
            f"  per block ({args.block} epochs): template/strong min, median, max",
            "",
            f"{ratios[0]:.3f} {statistics.median(ratios):.3f} {ratios[-1]:.3f}",
        ),
        ("template: one optimiser step, median", f"{step * 1e3:.1f}", ""),
        (
            "template: outside the step per epoch, median / mean (val, ckpt incl.)",
            f"{outside * 1e3:.2f} / {mean_outside * 1e3:.2f}",
            f"+{outside / t_strong * 100:.1f}% / +{mean_outside / t_strong * 100:.1f}%",
        ),
    ]
    if extras:
        rows += step_medians(args.steps)
        rows += hook_costs(repeats=max(10, args.steps))
        rows += callback_costs(t_tpl)
    batches = f"minibatches of {args.batch_size}" if args.batch_size else "full-batch"
    if args.steps_per_batch > 1:
        batches += f", model.steps_per_batch={args.steps_per_batch}"
    print_table(
        f"{batches}: ms per epoch (val every {VAL_EVERY}), default config p={args.modulus} "
        f"(train fraction {args.frac_train}), "
        f"{args.blocks} interleaved blocks of {args.block} epochs; {machine()}; {load_note()}",
        rows,
        ("what", "ms", "ratio"),
    )


if __name__ == "__main__":
    main()
