"""Shared pieces of the benchmarks: the default setup and a plain-PyTorch reference loop."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from project.data.lit_data import ModularDataModule
from project.models.tiny_transformer import TinyTransformer, TinyTransformerConfig
from project.optim import LinearWarmup


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def default_data(
    modulus: int = 113,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-batch train and val tensors of the default (Nanda) setup."""
    dm = ModularDataModule(modulus=modulus)
    return (*dm.split("train"), *dm.split("val"))


def plain_model(seed: int = 0, modulus: int = 113) -> TinyTransformer:
    torch.manual_seed(seed)
    return TinyTransformer(TinyTransformerConfig(d_vocab=modulus + 1, d_vocab_out=modulus))


class PlainLoop:
    """What a researcher writes by hand: full-batch AdamW + warm-up, float64 loss at the last position."""

    def __init__(
        self,
        model: torch.nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 1.0,
        last_only: bool = False,
    ) -> None:
        self.model, self.last_only = model, last_only
        self.opt = torch.optim.AdamW(
            model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98)
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, LinearWarmup(10))

    def step(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.model(tokens, last_only=True) if self.last_only else self.model(tokens)
        loss = F.cross_entropy(logits[:, -1].double(), labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return loss.detach()


def run_entrypoint(*overrides: str) -> None:
    """Run the real ``project.train.run`` entrypoint in this process with these overrides."""
    import sys

    from project.train import run as run_module
    from project.train.rundir import _CLAIMED

    argv = sys.argv
    sys.argv = ["project.train.run", *overrides]
    _CLAIMED.clear()  # a fresh run dir per call, as in a fresh process
    try:
        run_module.main()
    finally:
        sys.argv = argv


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def print_table(title: str, rows: list[tuple], headers: tuple) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
