"""GPU step time: template vs plain PyTorch loop on CUDA, per precision, with and without compile.

    uv run python benchmarks/gpu_step_time.py [--steps 200] [--modulus 113]

Skips cleanly (exit 0, one line) when no CUDA device is present. Timing uses CUDA events after a
warm-up; each row is the median per-step time. Template = the real entrypoint (``trainer=gpu_1``)
with a CUDA-event callback; plain = same model, loss and optimiser in a bare loop with
``torch.autocast`` for the mixed precisions. Prints a table last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import (  # noqa: E402
    PlainLoop,
    default_data,
    plain_model,
    print_table,
    run_entrypoint,
)


class CudaStepTimer(L.Callback):
    """CUDA-event time of every training step (start of step -> start of next step)."""

    def __init__(self, path: str, warmup: int = 20) -> None:
        self.path, self.warmup, self.events = path, warmup, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        self.events.append(event)

    def on_fit_end(self, trainer, pl_module) -> None:
        torch.cuda.synchronize()
        ev = self.events[self.warmup :]
        ms = [a.elapsed_time(b) for a, b in zip(ev, ev[1:], strict=False)]
        Path(self.path).write_text(json.dumps(ms))


def template_ms(steps: int, precision: str, compile_: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ms.json"
        run_entrypoint(
            "trainer=gpu_1", f"trainer.precision={precision}",
            f"model.compile={str(compile_).lower()}", f"trainer.max_epochs={steps + 25}",
            "trainer.check_val_every_n_epoch=100000", f"run.output_root={tmp}/outputs",
            "+callbacks.cuda_timer._target_=benchmarks.gpu_step_time.CudaStepTimer",
            f"+callbacks.cuda_timer.path={out}",
        )  # fmt: skip
        return statistics.median(json.loads(out.read_text()))


def plain_ms(steps: int, precision: str, compile_: bool) -> float:
    tokens, labels, _, _ = (t.cuda() for t in default_data())
    model = plain_model().cuda()
    loop = PlainLoop(model)
    if compile_:
        loop.model = torch.compile(model)
    dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(loop.model(tokens)[:, -1].double(), labels)
        loop.opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(loop.opt)
        scaler.update()
        loop.sched.step()

    for _ in range(20):
        step()
    events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
    for i in range(steps):
        events[i].record()
        step()
    events[steps].record()
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in zip(events, events[1:], strict=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_step_time: no CUDA device available; skipped.")
        return
    name = torch.cuda.get_device_name(0)
    rows = []
    for precision in ("32", "16-mixed", "bf16-mixed"):
        for compile_ in (False,) if args.no_compile else (False, True):
            p = plain_ms(args.steps, precision, compile_)
            t = template_ms(args.steps, precision, compile_)
            rows.append((precision, compile_, f"{p:.2f}", f"{t:.2f}", f"{t / p:.3f}"))
    print_table(
        f"median full-batch step (ms, CUDA events), p=113 default config, {name}, torch {torch.__version__}",
        rows,
        ("precision", "compile", "plain ms", "template ms", "template/plain"),
    )


if __name__ == "__main__":
    main()
