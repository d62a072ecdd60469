"""GPU step time: template vs the plain and the strong hand-written loop, per precision and compile.

    uv run python benchmarks/gpu_step_time.py [--steps 200] [--no-compile]
    uv run python benchmarks/gpu_step_time.py --device cpu --quick    # smoke test of the code path

Skips cleanly (exit 0, one line) when no CUDA device is present and ``--device cpu`` is not given.
On CUDA every step is timed with CUDA events after a warm-up; each row is the median per-step time.
Template = the real entrypoint (``trainer=gpu_1``, ``model.compile=...``, validation off) with a
step-timing callback; plain = ``TinyTransformer`` (last-position forward) in a bare loop; strong =
``StrongNet`` (``benchmarks/_common.py``: ``F.embedding``, fused SDPA, last position only). The
loops use ``torch.autocast`` for the mixed precisions and ``torch.compile`` (same mode as the
template) for the compile rows. Tiny models are launch-bound on a GPU: compare the ``compile``
rows, and ``--compile-mode reduce-overhead`` (CUDA graphs) for the fixed-shape full-batch step.
Prints a table last.

Then the ensemble (``project.ensemble``): ``--members`` (default 1, 8, 32) nets of the default
config stacked under ``torch.func.vmap`` with ``StackedAdamW`` (fp32, not compiled), one full-batch
step for all of them, against the strong loop stepping the same number of nets one after the other
(same run): ms per member-step and the ratio. On a GPU a p=113 step is launch-bound, so this is
where packing a sweep's members should pay most. Not yet run on a GPU (none lent so far).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import (  # noqa: E402
    PlainLoop,
    StrongLoop,
    default_data,
    load_note,
    plain_model,
    print_table,
    run_entrypoint,
)

AMP = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


class Clock:
    """Step boundaries: CUDA events on a GPU, ``perf_counter`` on the CPU; ``ms()`` -> deltas."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def ms(self, skip: int = 0) -> list[float]:
        marks = self.marks[skip:]
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in zip(marks, marks[1:], strict=False)]
        return [(b - a) * 1e3 for a, b in zip(marks, marks[1:], strict=False)]


class StepClock(L.Callback):
    """Time of every training step (start of step -> start of next step), written to ``path``."""

    def __init__(self, path: str, device: str = "cuda", warmup: int = 20) -> None:
        self.path, self.warmup, self.clock = path, warmup, Clock(device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.clock.mark()

    def on_fit_end(self, trainer, pl_module) -> None:
        Path(self.path).write_text(json.dumps(self.clock.ms(self.warmup)))


def template_ms(device: str, steps: int, warmup: int, precision: str, compile_: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ms.json"
        run_entrypoint(
            "trainer=gpu_1" if device == "cuda" else "trainer=cpu",
            f"trainer.precision={precision}", f"model.compile={compile_}",
            f"trainer.max_epochs={steps + warmup + 1}", "trainer.check_val_every_n_epoch=100000",
            f"run.output_root={tmp}/outputs", "callbacks.progress_bar=null",
            "+callbacks.step_clock._target_=benchmarks.gpu_step_time.StepClock",
            f"+callbacks.step_clock.path={out}", f"+callbacks.step_clock.device={device}",
            f"+callbacks.step_clock.warmup={warmup}",
        )  # fmt: skip
        return statistics.median(json.loads(out.read_text()))


def loop_ms(
    kind: str, device: str, steps: int, warmup: int, precision: str, compile_: str
) -> float:
    tokens, labels, _, _ = (t.to(device) for t in default_data())
    if kind == "strong":
        loop: PlainLoop = StrongLoop()
        loop.model.to(device)
        loop.opt = torch.optim.AdamW(
            loop.model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98)
        )
    else:
        loop = PlainLoop(plain_model().to(device), last_only=True)
    if compile_ != "false":
        loop.model = torch.compile(loop.model, mode=None if compile_ == "true" else compile_)
    dtype = AMP.get(precision)
    scaler = torch.amp.GradScaler(device, enabled=dtype is torch.float16)

    def step() -> None:
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(loop.logits(tokens).double(), labels)
        loop.opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(loop.opt)
        scaler.update()

    return median_ms(device, step, warmup, steps)


def median_ms(device: str, step: Any, warmup: int, steps: int) -> float:
    """Median wall time of ``step()`` in ms, after ``warmup`` untimed calls."""
    clock = Clock(device)
    for _ in range(warmup):
        step()
    for _ in range(steps):
        clock.mark()
        step()
    clock.mark()
    return statistics.median(clock.ms())


def ensemble_ms(device: str, members: int, steps: int, warmup: int) -> tuple[float, float]:
    """Median ms per member-step: ``members`` stacked nets in one vmapped step, and the strong
    loop stepping ``members`` nets one after the other."""
    from project.ensemble.stacked import StackedAdamW, StackedNets

    tokens, labels, _, _ = (t.to(device) for t in default_data())
    nets = StackedNets([plain_model(seed).to(device) for seed in range(members)])
    opt = StackedAdamW(nets.parameters(), [1.0] * members, betas=(0.9, 0.98))
    x, y = tokens.expand(members, -1, -1), labels.expand(members, -1)

    def stacked_step() -> None:
        logits = nets.logits(x, last_only=True)
        loss = F.cross_entropy(logits.double().flatten(0, 1), y.flatten(), reduction="none")
        opt.zero_grad()
        loss.view(members, -1).mean(1).sum().backward()
        opt.step([1e-3] * members)

    loops = []
    for seed in range(members):
        loop = StrongLoop(seed=seed)
        loop.model.to(device)
        loop.opt = torch.optim.AdamW(
            loop.model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98)
        )
        loops.append(loop)

    def serial_step() -> None:
        for loop in loops:
            loss = F.cross_entropy(loop.logits(tokens).double(), labels)
            loop.opt.zero_grad(set_to_none=True)
            loss.backward()
            loop.opt.step()

    out = [median_ms(device, step, warmup, steps) / members for step in (stacked_step, serial_step)]
    return out[0], out[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--compile-mode", default="true", help="true | reduce-overhead | ...")
    parser.add_argument("--quick", action="store_true", help="3 steps, fp32 only, no compile")
    parser.add_argument("--members", default="1,8,32", help="ensemble sizes (comma-separated)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_step_time: no CUDA device available; skipped.")
        return
    precisions = ("32", "16-mixed", "bf16-mixed") if args.device == "cuda" else ("32",)
    compiles = ("false",) if args.no_compile else ("false", args.compile_mode)
    if args.quick:
        args.steps, args.warmup, precisions, compiles = 3, 2, ("32",), ("false",)
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    rows = []
    for precision in precisions:
        for compile_ in compiles:
            cfg = (args.device, args.steps, args.warmup, precision, compile_)
            p, s, t = loop_ms("plain", *cfg), loop_ms("strong", *cfg), template_ms(*cfg)
            rows.append(
                (
                    precision,
                    compile_,
                    f"{s:.2f}",
                    f"{p:.2f}",
                    f"{t:.2f}",
                    f"{t / s:.3f}",
                    f"{t / p:.3f}",
                )
            )
    print_table(
        f"median full-batch step (ms), p=113 default config, {name}, torch {torch.__version__}"
        + ("" if args.device == "cuda" else f"; {load_note()}"),
        rows,
        ("precision", "compile", "strong", "plain", "template", "tpl/strong", "tpl/plain"),
    )
    sizes = [int(m) for m in args.members.split(",")] if not args.quick else [1, 2]
    rows = []
    for members in sizes:
        ens, serial = ensemble_ms(args.device, members, args.steps, args.warmup)
        rows.append((members, f"{serial:.2f}", f"{ens:.2f}", f"{ens / serial:.3f}"))
    print_table(
        f"ensemble: median ms per member-step, p=113 default config, fp32, {name}",
        rows,
        ("members", "strong, serial", "ensemble", "ensemble/strong"),
    )


if __name__ == "__main__":
    main()
