"""Step time of the template vs a hand-written PyTorch loop, measured in the same process.

    uv run python benchmarks/step_time.py [--steps 40] [--rounds 2]

Template = the real entrypoint (``project.train.run``: Hydra config, LightningModule, Trainer, data
path, TensorBoard logging, default callbacks) on the default config; a timing callback records the
wall time between consecutive training-step starts. Plain = the same model, loss (float64, last
position) and optimiser (AdamW + warm-up) in a bare loop on the same full-batch tensors. Also:
HookPoints unused vs absent, ``run_with_cache`` vs plain forward, TransformerLens (if installed),
and the cost of the default callbacks (checkpoints, progress measures) over a whole run.
Prints a table last.
"""

from __future__ import annotations

import argparse
import json
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
    default_data,
    machine,
    median_time,
    plain_model,
    print_table,
    run_entrypoint,
)


class StepTimer(L.Callback):
    """Writes the wall times between consecutive training-step starts (and of fit) to ``path``."""

    def __init__(self, path: str) -> None:
        self.path, self.starts, self.t_fit = path, [], 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        self.t_fit = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_fit_end(self, trainer, pl_module) -> None:
        end = time.perf_counter()
        deltas = [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]
        Path(self.path).write_text(json.dumps({"deltas": deltas, "fit": end - self.t_fit}))


def run_template(epochs: int, *overrides: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timing.json"
        run_entrypoint(
            f"run.output_root={tmp}/outputs",
            f"trainer.max_epochs={epochs}",
            "+callbacks.step_timer._target_=benchmarks.step_time.StepTimer",
            f"+callbacks.step_timer.path={out}",
            *overrides,
        )
        return json.loads(out.read_text())


def plain_steps(steps: int, last_only: bool) -> list[float]:
    tokens, labels, _, _ = default_data()
    loop = PlainLoop(plain_model(), last_only=last_only)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        loop.step(tokens, labels)
        times.append(time.perf_counter() - t0)
    return times[1:]


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
    # the exact price of unused HookPoints: their module calls alone, timed over many repeats
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
            ("run_with_cache (all 15 hooks)", f"{t_cache * 1e3:.1f}", f"{t_cache / t_fwd:.3f}")
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


def callback_costs(t_step: float) -> list[tuple]:
    """Per-call cost of the progress measures and of a checkpoint write, amortised over the
    default cadences (the long-run overhead; a short run also pays the fixed start/end calls)."""
    import io

    from project.data.lit_data import ModularDataModule
    from project.interp.fourier import progress_measures
    from project.lit_causal_lm import LitCausalLM
    from project.train.preflight import compose_config

    cfg = compose_config([])
    every_measure = cfg.callbacks.progress_measures.every_n_epochs
    every_last = cfg.callbacks.checkpoints.last_every_n_epochs
    every_snap = cfg.callbacks.checkpoints.snapshot_every_n_epochs
    dm = ModularDataModule()
    tokens, labels = dm.split("all")
    model = plain_model()
    t_measure = median_time(
        lambda: progress_measures(model, 113, tokens, labels, dm.train_idx, dm.val_idx), 3, warmup=1
    )
    module = LitCausalLM(d_vocab=114, d_vocab_out=113)
    opt = torch.optim.AdamW(module.parameters())
    module.net(tokens[:8]).sum().backward()
    opt.step()  # optimiser state exists, as in a real checkpoint
    state = {"state_dict": module.state_dict(), "optimizer_states": [opt.state_dict()]}
    t_ckpt = median_time(lambda: torch.save(state, io.BytesIO()), 5, warmup=1)
    share = (
        t_measure / every_measure + t_ckpt / every_last + (t_ckpt / every_snap if every_snap else 0)
    ) / t_step
    return [
        ("progress measures, one call", f"{t_measure * 1e3:.0f}", f"every {every_measure} epochs"),
        ("checkpoint write, one call", f"{t_ckpt * 1e3:.1f}", f"last every {every_last}"),
        ("callbacks amortised over a long run", "", f"+{share * 100:.1f}%"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating plain/template rounds")
    parser.add_argument(
        "--run-epochs", type=int, default=200, help="epochs for the callback-cost run"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")

    plain, plain_fast, template = [], [], []
    for _ in range(args.rounds):  # interleave so background load hits both alike
        plain += plain_steps(args.steps, last_only=False)
        plain_fast += plain_steps(args.steps, last_only=True)
        template += run_template(args.steps + 2, "trainer.check_val_every_n_epoch=100000")[
            "deltas"
        ][1:]
    t_plain, t_fast, t_tpl = (statistics.median(x) for x in (plain, plain_fast, template))

    # the default callbacks (checkpoints, progress measures) at their default cadence, whole run
    n = args.run_epochs
    with_cb = run_template(n, "trainer.check_val_every_n_epoch=10")["fit"]
    without_cb = run_template(
        n,
        "trainer.check_val_every_n_epoch=10",
        "~callbacks.checkpoints",
        "~callbacks.progress_measures",
    )["fit"]

    rows = [
        ("plain loop, full forward", f"{t_plain * 1e3:.1f}", "1.00"),
        ("plain loop, last-position forward", f"{t_fast * 1e3:.1f}", f"{t_fast / t_plain:.3f}"),
        ("template (Lightning + Hydra + logging)", f"{t_tpl * 1e3:.1f}", f"{t_tpl / t_plain:.3f}"),
        ("template vs plain last-position loop", "", f"{t_tpl / t_fast:.3f}"),
    ]
    rows += hook_costs(repeats=max(10, args.steps // 2))
    rows += callback_costs(t_tpl)
    rows.append((f"{n}-epoch run without checkpoints/progress (s)", f"{without_cb:.1f}", "1.00"))
    rows.append(
        (f"{n}-epoch run, default callbacks (s)", f"{with_cb:.1f}", f"{with_cb / without_cb:.3f}")
    )
    print_table(
        f"median full-batch step (ms), default config p=113, {machine()}",
        rows,
        ("what", "ms", "ratio"),
    )


if __name__ == "__main__":
    main()
