"""Local learning coefficient (LLC; Lau et al. 2023) of any net under the template contract, with
the maintained ``devinterp`` package's SGLD estimator (``devinterp.slt.llc.llc``, v2 API).

``devinterp`` is an optional extra (``uv sync --extra llc``): it pulls in ``transformers``, which
torchmetrics then imports at every ``import lightning`` (+2.5 s a start), so nothing on the plain
training path imports it; this module imports it inside ``estimate_llc`` only.

The estimate: ``llc = n_beta * (mean SGLD loss - loss at the weights)``, per chain; SGLD runs from
the given weights on mini-batches of the train split, pulled back by ``localization``. Our
examples are ``(tokens, labels)`` with ``-100`` = unsupervised, while devinterp feeds one
``input_ids`` row per example and wants a loss per "next token": each row is packed as
``tokens ++ labels`` and the loss function returns the example's mean cross-entropy over its
supervised positions, repeated along devinterp's token axis (so its means are the example means).

Defaults (``LLCConfig``): ``n_beta`` = ``devinterp.utils.default_nbeta(batch_size)`` = ``b / ln b``;
``localization`` 100 (Lau et al.'s gamma); 4 chains x 200 draws, no burn-in; SGLD step size ``lr``
1e-4, more cautious than the 1e-3 of devinterp's README examples (language models). Check the loss
traces (``loss_trace``) when changing them: a trace that climbs without levelling off means a step
size too large.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100
INSTALL_HINT = "the LLC needs devinterp: uv sync --extra llc"
CACHE = "llc.json"  # in the run dir: {settings key: {epoch: result}}


@dataclass
class LLCConfig:
    """SGLD settings of the LLC estimate (names as devinterp's ``sample``)."""

    lr: float = 1e-4  # SGLD step size (epsilon)
    n_beta: float | None = None  # inverse temperature; None = b / ln b (devinterp's default_nbeta)
    localization: float = 100.0  # gamma: pull towards the weights being measured
    num_chains: int = 4
    num_draws: int = 200
    num_burnin_steps: int = 0
    num_steps_bw_draws: int = 1
    batch_size: int = 256
    max_examples: int = 4096  # train examples used (a seeded subset when the split is larger)
    seed: int = 100

    def __post_init__(self) -> None:
        for name in ("num_chains", "num_draws", "batch_size", "max_examples", "num_steps_bw_draws"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: allowed an integer >= 1")
        if self.num_chains < 2:
            raise ValueError(f"num_chains={self.num_chains!r} is invalid: allowed >= 2 (spread)")
        if not self.lr > 0 or self.localization < 0:
            raise ValueError(
                f"lr={self.lr!r}, localization={self.localization!r}: allowed > 0, >= 0"
            )

    def resolved_n_beta(self) -> float:
        """``n_beta``, or devinterp's default ``b / ln b`` for the batch size ``b``."""
        if self.n_beta is not None:
            return float(self.n_beta)
        b = self.batch_size
        return b / math.log(b) if b > 1 else 1.0

    def key(self) -> str:
        """A stable text of the settings, for caches."""
        return ",".join(f"{k}={v}" for k, v in sorted(asdict(self).items()))


def have_devinterp() -> bool:
    """Whether ``devinterp`` is importable (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("devinterp") is not None


def pack(tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``tokens [n, pos]`` and ``labels [n, pos]`` -> devinterp rows ``[n, 2 pos]``."""
    return torch.cat([tokens.long(), labels.long()], dim=1)


def packed_loss(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """devinterp ``loss_fn``: rows ``[b, 2 pos]`` -> ``[b, 2 pos - 1]``, each row the example's
    mean cross-entropy over its supervised positions (float32)."""
    pos = input_ids.shape[1] // 2
    tokens, labels = input_ids[:, :pos], input_ids[:, pos:]
    logits = model(tokens)
    if logits.shape[1] != pos:  # a net that returns the last position only
        labels = labels[:, -logits.shape[1] :]
    per_tok = F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(labels.shape)
    supervised = labels != IGNORE_INDEX
    row = (per_tok * supervised).sum(1) / supervised.sum(1).clamp(min=1)
    return row[:, None].expand(-1, input_ids.shape[1] - 1)


class _Wrapped(nn.Module):
    """The net under a plain module: devinterp treats any module with ``cfg.n_heads`` (as our
    TinyTransformer has) as a TransformerLens model and calls ``.to(..., print_details=...)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)


def subset(
    tokens: torch.Tensor, labels: torch.Tensor, config: LLCConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """At most ``config.max_examples`` examples, a seeded subset (the same for every snapshot)."""
    n = len(tokens)
    if n <= config.max_examples:
        return tokens, labels
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    idx = idx[: config.max_examples].sort().values
    return tokens[idx], labels[idx]


def estimate_llc(
    net: nn.Module,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    config: LLCConfig | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """LLC of ``net`` at its weights on ``(tokens [n, pos], labels [n, pos])`` (the train split).

    Returns ``llc_mean``, ``llc_std`` (over chains), ``llc_per_chain`` (list), ``init_loss``,
    ``loss_trace`` (per chain, per step), ``n_beta``, ``n_examples``, ``seconds``, ``settings``.
    ``net`` is copied by devinterp; its own weights are untouched.
    """
    try:
        from datasets import Dataset
        from devinterp.slt.llc import llc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(INSTALL_HINT) from exc
    config = config or LLCConfig()
    start = time.perf_counter()
    tokens, labels = subset(tokens.cpu(), labels.cpu(), config)
    if len(tokens) < config.batch_size:
        raise ValueError(
            f"batch_size={config.batch_size} is invalid: allowed <= the {len(tokens)} examples"
        )
    data = Dataset.from_dict({"input_ids": pack(tokens, labels).tolist()}).with_format("torch")
    device = str(device or next(net.parameters()).device)
    was_training, threads = net.training, torch.get_num_threads()
    net.eval()  # no dropout in the built-in nets; eval for any user net that has some
    if device == "cpu":
        # devinterp's zarr writer threads next to torch's intra-op threads: measured 1.2 SGLD
        # steps/s on a tiny net from the second chain on (2 cores), 92/s with one torch thread
        torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = llc(
                model=_Wrapped(net), dataset=data, observables={}, lr=config.lr,
                n_beta=config.resolved_n_beta(), localization=config.localization,
                num_chains=config.num_chains, num_draws=config.num_draws,
                num_burnin_steps=config.num_burnin_steps,
                num_steps_bw_draws=config.num_steps_bw_draws, batch_size=config.batch_size,
                num_init_loss_batches=max(1, min(32, len(tokens) // config.batch_size)),
                init_seed=config.seed, device=device, loss_fn=packed_loss,
                output_path=Path(tmp) / "samples.zarr",
            )  # fmt: skip
            per_chain = [float(v) for v in result["llc_per_chain"].values]
            trace = result["loss_trace"].values.tolist()
            init_loss = float(result["init_loss"])
    finally:
        net.train(was_training)
        torch.set_num_threads(threads)
    finite = [v for v in per_chain if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else float("nan")
    std = (
        math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
        if len(finite) > 1
        else float("nan")
    )
    return {
        "llc_mean": mean,
        "llc_std": std,
        "llc_per_chain": per_chain,
        "init_loss": init_loss,
        "loss_trace": trace,
        "n_beta": config.resolved_n_beta(),
        "n_examples": len(tokens),
        "seconds": time.perf_counter() - start,
        "settings": asdict(config),
    }


def read_cache(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The run's cached LLC results: ``{settings key: {epoch: result}}`` (empty if none)."""
    path = Path(run_dir) / CACHE
    return json.loads(path.read_text()) if path.exists() else {}


def write_result(run_dir: Path, config: LLCConfig, epoch: int, result: dict[str, Any]) -> None:
    """Add one epoch's result to the run's cache (atomic replace)."""
    cache = read_cache(run_dir)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in result.items()}  # fmt: skip
    cache.setdefault(config.key(), {})[str(int(epoch))] = clean
    path = Path(run_dir) / CACHE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cache))
    tmp.replace(path)


__all__ = [
    "CACHE",
    "INSTALL_HINT",
    "LLCConfig",
    "estimate_llc",
    "have_devinterp",
    "pack",
    "packed_loss",
    "read_cache",
    "write_result",
]
