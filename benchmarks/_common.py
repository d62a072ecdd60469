"""Shared pieces of the benchmarks: the default setup and two hand-written reference loops.

* ``PlainLoop``: the template's own model (``TinyTransformer``) in a bare AdamW loop.
* ``StrongLoop``: what a strong engineer writes from scratch for the same model: ``F.embedding``,
  fused ``scaled_dot_product_attention``, keys/values for all positions but query, MLP and unembed
  for the last position only, float64 loss, AdamW + the same 10-step linear warm-up. Same sizes and
  initialisation as the default ``TinyTransformer`` (p = 113: 1 layer, d_model 128, 4 heads x 32,
  d_mlp 512, ReLU, no LayerNorm, no attention biases, MLP biases, untied unembed without bias).

Both loops do the template's per-epoch work: one full-batch step, train loss and accuracy kept on
the device (no host sync), and a validation pass (loss + accuracy, read on the host) every
``val_every`` epochs, so an epoch-time ratio compares the same work.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from project.data.modular import ModularDataModule
from project.models.tiny_transformer import TinyTransformer, TinyTransformerConfig
from project.optim import LinearWarmup

ADAMW = {"lr": 1e-3, "weight_decay": 1.0, "betas": (0.9, 0.98)}  # configs/model/causal_lm.yaml


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def load_note() -> str:
    """1-minute load average against the core count: a contended machine says so."""
    try:
        import os

        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        flag = "CONTENDED" if load > 0.5 * cores else "quiet"
        return f"load average {load:.1f} on {cores} cores ({flag})"
    except OSError:
        return "load average unknown"


def default_data(
    modulus: int = 113, frac_train: float = 0.3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-batch ``train_tokens [n, 3], train_answers [n], val_tokens, val_answers`` of the
    default (Nanda) setup: the same split the template trains on (answers = last-position labels)."""
    dm = ModularDataModule(modulus=modulus, frac_train=frac_train)
    tokens, answers = dm.tokens, dm.answers
    return tokens[dm.train_idx], answers[dm.train_idx], tokens[dm.val_idx], answers[dm.val_idx]


def plain_model(seed: int = 0, modulus: int = 113) -> TinyTransformer:
    torch.manual_seed(seed)
    return TinyTransformer(TinyTransformerConfig(d_vocab=modulus + 1, d_vocab_out=modulus))


class PlainLoop:
    """The template's model in a bare loop: AdamW + warm-up, float64 loss at the last position."""

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 1.0,
        last_only: bool = False,
        **adamw: object,
    ) -> None:
        self.model, self.last_only = model, last_only
        self.opt = torch.optim.AdamW(
            model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98), **adamw
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, LinearWarmup(10))

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of the last position, ``[n, d_vocab_out]``."""
        out = self.model(tokens, last_only=True) if self.last_only else self.model(tokens)
        return out[:, -1]

    def step(self, tokens: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step; returns (loss, accuracy) as device tensors (no host sync)."""
        logits = self.logits(tokens)
        loss = F.cross_entropy(logits.double(), labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return loss.detach(), (logits.detach().argmax(-1) == labels).float().mean()

    @torch.no_grad()
    def validate(self, tokens: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        self.model.eval()
        logits = self.logits(tokens)
        loss = F.cross_entropy(logits.double(), labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        self.model.train()
        return float(loss), float(acc)  # the host reads them, as a logger would


class StrongNet(nn.Module):
    """The default TinyTransformer written from scratch for speed; ``forward`` -> last logits.

    Weights in ``F.linear`` layout (``[out, in]``) so biases fuse into ``addmm``; one fused K/V
    projection over all positions, the query for the last position only, fused SDPA (the last
    query may see every position: no mask needed). Initialisation as the official code:
    ``N(0, 1/d_model)`` everywhere except ``W_U`` (``N(0, 1/d_vocab)``), zero biases.
    """

    def __init__(
        self,
        d_vocab: int = 114,
        d_vocab_out: int = 113,
        n_ctx: int = 3,
        d_model: int = 128,
        n_heads: int = 4,
        d_mlp: int = 512,
    ) -> None:
        super().__init__()
        s = 1 / math.sqrt(d_model)
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.W_E = nn.Parameter(torch.randn(d_vocab, d_model) * s)
        self.W_pos = nn.Parameter(torch.randn(n_ctx, d_model) * s)
        self.W_q = nn.Parameter(torch.randn(d_model, d_model) * s)
        self.W_kv = nn.Parameter(torch.randn(2 * d_model, d_model) * s)
        self.W_o = nn.Parameter(torch.randn(d_model, d_model) * s)
        self.W_in = nn.Parameter(torch.randn(d_mlp, d_model) * s)
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.randn(d_model, d_mlp) * s)
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.W_U = nn.Parameter(torch.randn(d_vocab_out, d_model) / math.sqrt(d_vocab))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n = tokens.shape
        h, dh = self.n_heads, self.d_head
        x = F.embedding(tokens, self.W_E) + self.W_pos[:n]  # [b, n, d]
        last = x[:, -1]  # [b, d]
        q = F.linear(last, self.W_q).view(b, h, 1, dh)
        k, v = F.linear(x, self.W_kv).view(b, n, 2, h, dh).permute(2, 0, 3, 1, 4)
        z = F.scaled_dot_product_attention(q, k, v).reshape(b, h * dh)
        resid = last + F.linear(z, self.W_o)
        resid = resid + F.linear(
            F.relu(F.linear(resid, self.W_in, self.b_in)), self.W_out, self.b_out
        )
        return F.linear(resid, self.W_U)  # [b, d_vocab_out]


class StrongLoop(PlainLoop):
    """``PlainLoop`` around ``StrongNet`` (same optimiser, warm-up, loss, accuracy, validation)."""

    def __init__(self, seed: int = 0, modulus: int = 113, **adamw: object) -> None:
        torch.manual_seed(seed)
        super().__init__(StrongNet(modulus + 1, modulus), **adamw)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)


def run_epochs(
    loop: PlainLoop,
    data: tuple[torch.Tensor, ...],
    epochs: int,
    val_every: int = 10,
    batch_size: int | None = None,
    first_epoch: int = 0,
) -> float:
    """Wall seconds of ``epochs`` epochs with validation every ``val_every`` epochs.

    Full batch by default; with ``batch_size`` each epoch is a fresh permutation in slices of that
    size, as the template's ``DeviceBatches`` makes them (``randperm`` seeded by the epoch).
    """
    x_tr, y_tr, x_va, y_va = data
    n = len(y_tr)
    t0 = time.perf_counter()
    history = []
    for epoch in range(first_epoch + 1, first_epoch + epochs + 1):
        if batch_size is None or batch_size >= n:
            history.append(loop.step(x_tr, y_tr))
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                history.append(loop.step(x_tr[idx], y_tr[idx]))
        if epoch % val_every == 0:
            loop.validate(x_va, y_va)
    torch.stack([loss for loss, _ in history]).sum().item()  # the per-step values reach the host
    return time.perf_counter() - t0


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
