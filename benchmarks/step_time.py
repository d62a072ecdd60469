"""Epoch time of the template CLI against two hand-written loops, measured in one process.

    uv run python benchmarks/step_time.py [--epochs 100] [--rounds 2]   # the issue's measurement
    uv run python benchmarks/step_time.py --quick                        # smoke test (~a minute)

Headline: the marginal cost of N full-batch epochs, ``(t(N + 10 epochs) - t(10 epochs)) / N``, for

* template = the real entrypoint (``project.train.run``: Hydra config, LightningModule, Trainer,
  TensorBoard logging, the default callbacks and progress bar) on the default config, timed from
  ``on_fit_start`` to ``on_fit_end`` by a callback added with a Hydra override;
* plain loop = the template's own ``TinyTransformer`` (last-position forward) in a bare loop;
* strong loop = ``StrongNet`` (``benchmarks/_common.py``): the same model written from scratch
  with ``F.embedding``, fused ``scaled_dot_product_attention`` and the last position only.

Same work in all three: same data and split, AdamW (lr 1e-3, wd 1, betas 0.9/0.98) + 10-step
warm-up, float64 loss at the last position, train loss and accuracy every epoch, a validation pass
(loss + accuracy) every 10 epochs. The 10-epoch run is subtracted, so start-up, the first-step
warm-up and the fixed start/end work (initial snapshot, progress measures at start and end, final
checkpoint) cancel; what remains is per-epoch work, including the default callbacks at their
default cadence (``last.ckpt`` every 50 epochs). Rounds interleave all three so background load hits
them alike; each row is the median over rounds.

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
_LAST_FIT: dict[str, float] = {}


class FitTimer(L.Callback):
    """Records the wall time from ``on_fit_start`` to ``on_fit_end`` (in this process)."""

    def on_fit_start(self, trainer, pl_module) -> None:
        self.t0 = time.perf_counter()

    def on_fit_end(self, trainer, pl_module) -> None:
        _LAST_FIT["fit"] = time.perf_counter() - self.t0


def template_fit(epochs: int, *overrides: str) -> float:
    """Seconds of ``trainer.fit`` for an ``epochs``-epoch CLI run of the default config."""
    import benchmarks.step_time as this  # the module Hydra instantiates FitTimer from (not __main__)

    with tempfile.TemporaryDirectory() as tmp:
        this._LAST_FIT.clear()
        run_entrypoint(
            f"run.output_root={tmp}/outputs",
            f"trainer.max_epochs={epochs}",
            f"trainer.check_val_every_n_epoch={VAL_EVERY}",
            "+callbacks.fit_timer._target_=benchmarks.step_time.FitTimer",
            *overrides,
        )
        return this._LAST_FIT["fit"]


def loop_time(kind: str, epochs: int, data: tuple) -> float:
    loop = StrongLoop() if kind == "strong" else PlainLoop(plain_model(), last_only=True)
    return run_epochs(loop, data, epochs, VAL_EVERY)


def marginal_epochs(n: int, rounds: int, overrides: list[str]) -> dict[str, list[float]]:
    """Per-epoch marginal seconds ``(t(n + 10) - t(10)) / n`` per round, for the three contenders."""
    data = default_data()
    out: dict[str, list[float]] = {"plain": [], "strong": [], "template": []}
    for r in range(rounds):
        for kind in ("plain", "strong"):
            short, long = loop_time(kind, 10, data), loop_time(kind, n + 10, data)
            out[kind].append((long - short) / n)
        short = template_fit(10, *overrides)
        long = template_fit(n + 10, *overrides)
        out["template"].append((long - short) / n)
        print(
            f"round {r + 1}/{rounds}: ms/epoch plain {out['plain'][-1] * 1e3:.1f}, strong "
            f"{out['strong'][-1] * 1e3:.1f}, template {out['template'][-1] * 1e3:.1f} "
            f"({load_note()})",
            flush=True,
        )
    return out


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

    from project.data.modular import ModularDataModule
    from project.interp.fourier import progress_measures
    from project.lit_module import LitCausalLM
    from project.train.preflight import compose_config

    cfg = compose_config([])
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
    parser.add_argument("--epochs", type=int, default=100, help="N: marginal epochs per round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=30, help="timed steps for the step medians")
    parser.add_argument("--extras", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--quick", action="store_true", help="N=10, 1 round, no extras")
    parser.add_argument(
        "--override", action="append", default=[], help="extra Hydra override for the template"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.rounds, args.steps = 10, 1, 3
    extras = (not args.quick) if args.extras is None else args.extras
    print(f"machine: {machine()}; {load_note()}", flush=True)

    per = marginal_epochs(args.epochs, args.rounds, args.override)
    t_plain, t_strong, t_tpl = (statistics.median(per[k]) for k in ("plain", "strong", "template"))
    n = args.epochs
    rows = [
        (f"epoch: strong loop (marginal of {n})", f"{t_strong * 1e3:.1f}", "1.00"),
        (
            f"epoch: plain loop (marginal of {n})",
            f"{t_plain * 1e3:.1f}",
            f"{t_plain / t_strong:.3f}",
        ),
        (f"epoch: template CLI (marginal of {n})", f"{t_tpl * 1e3:.1f}", f"{t_tpl / t_strong:.3f}"),
        ("template CLI / strong loop", "", f"{t_tpl / t_strong:.3f}"),
        ("template CLI / plain loop", "", f"{t_tpl / t_plain:.3f}"),
        (
            "  per round: template/strong",
            "",
            " ".join(f"{a / b:.3f}" for a, b in zip(per["template"], per["strong"], strict=True)),
        ),
    ]
    if extras:
        rows += step_medians(args.steps)
        rows += hook_costs(repeats=max(10, args.steps))
        rows += callback_costs(t_tpl)
    print_table(
        f"full-batch ms per epoch (val every {VAL_EVERY}), default config p=113, "
        f"{args.rounds} round(s); {machine()}; {load_note()}",
        rows,
        ("what", "ms", "ratio"),
    )


if __name__ == "__main__":
    main()
