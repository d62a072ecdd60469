"""Local learning coefficient (LLC; Lau et al. 2023) of any net under the template contract, with
the maintained ``devinterp`` package's SGLD sampler (``devinterp.slt.llc.llc``, v2 API), and a
convergence diagnostic for every estimate.

``devinterp`` is an optional extra (``uv sync --extra llc``): it pulls in ``transformers``, which
torchmetrics then imports at every ``import lightning``, so it is imported inside ``sample_llc``.

The estimate, per chain: ``llc = n_beta * (mean chain loss over the draws - loss at the weights)``
(devinterp's definition), the mean taken over the draws of devinterp's per-step ``loss_trace``
only (devinterp's own ``llc_per_chain`` includes the burn-in steps).

The data reach devinterp as rows of example indices (``[i, i]``: devinterp wants ``input_ids``
rows of length >= 2); the loss function looks the examples up and returns each one's loss, so any
per-example loss can be sampled (``sample_llc``): ``estimate_llc`` is the template's token case
(each example's mean cross-entropy over its supervised positions, labels ``-100`` = unsupervised),
and the known-answer test a Gaussian linear regression, whose LLC is d/2.

Diagnostic (``diagnose``, stored with each estimate): an estimate is ``converged`` only if
- the chains have levelled off: the mean chain loss moves by at most ``MAX_DRIFT`` of its rise
  (mean chain loss - loss at the weights) over the second half of the draws (least-squares slope);
- it does not depend on the chain length: the estimate from the first half of the draws is within
  ``MAX_DOUBLING_CHANGE`` of the estimate from all of them (doubling the chain changes it little);
- the sampler stays near the model: the rise is at most ``MAX_CHANCE_FRACTION`` of the way from
  the loss at the weights to chance (ln classes; checked when the weights are well below chance);
- it is positive and finite (a negative rise means SGLD descends: the weights are not at a local
  minimum, and the LLC is not defined there).
Both tolerances allow two standard errors over chains where that is larger (noise, not drift).

Defaults (``LLCConfig``) are calibrated in docs/llc.md: ``n_beta`` null = n / ln n for the n
examples sampled; ``localization`` (gamma) 1000; step size ``lr`` 3e-5; 4 chains x 200 draws
after 100 burn-in steps.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100
INSTALL_HINT = "the LLC needs devinterp: uv sync --extra llc"
CACHE = "llc.json"  # in the run dir: {settings key: {epoch: result}}

MAX_DRIFT = 0.1  # second-half change of the mean chain loss, as a fraction of its rise
MAX_DOUBLING_CHANGE = 0.1  # |LLC(all draws) - LLC(first half)| / LLC(all draws)
MAX_CHANCE_FRACTION = 0.5  # rise / (chance loss - loss at the weights)

ExampleLoss = Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (net, example idx [b]) -> [b]


@dataclass
class LLCConfig:
    """SGLD settings of the LLC estimate (names as devinterp's ``sample``)."""

    lr: float = 3e-5  # SGLD step size (epsilon)
    n_beta: float | None = None  # inverse temperature; None = n / ln n, n = the examples used
    localization: float = 1000.0  # gamma: pull towards the weights being measured
    num_chains: int = 4
    num_draws: int = 200
    num_burnin_steps: int = 100
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
        if self.num_draws < 4:
            raise ValueError(f"num_draws={self.num_draws!r} is invalid: allowed >= 4 (halves)")
        burnin = self.num_burnin_steps
        if isinstance(burnin, bool) or not isinstance(burnin, int) or burnin < 0:
            raise ValueError(f"num_burnin_steps={burnin!r} is invalid: allowed an integer >= 0")
        if not self.lr > 0 or self.localization < 0:
            raise ValueError(
                f"lr={self.lr!r}, localization={self.localization!r}: allowed > 0, >= 0"
            )

    def resolved_n_beta(self, n_examples: int | None = None) -> float:
        """``n_beta``, or ``n / ln n`` (Watanabe's WBIC temperature, beta = 1 / ln n) for the
        ``n_examples`` sampled (at most ``max_examples``; ``max_examples`` when not given), not
        devinterp's ``b / ln b`` for the batch size ``b`` (too hot: docs/llc.md)."""
        if self.n_beta is not None:
            return float(self.n_beta)
        n = n_examples or self.max_examples
        return n / math.log(n) if n > 1 else 1.0

    def key(self) -> str:
        """A stable text of the settings, for caches."""
        return ",".join(f"{k}={v}" for k, v in sorted(asdict(self).items()))


def have_devinterp() -> bool:
    """Whether ``devinterp`` is importable (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("devinterp") is not None


def example_losses(net: nn.Module, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[n]``: each example's mean cross-entropy over its supervised positions (float32)."""
    logits = net(tokens)
    if logits.shape[1] != labels.shape[1]:  # a net that returns the last position only
        labels = labels[:, -logits.shape[1] :]
    per_tok = F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(labels.shape)
    supervised = labels != IGNORE_INDEX
    return (per_tok * supervised).sum(1) / supervised.sum(1).clamp(min=1)


class _Wrapped(nn.Module):
    """The net under a plain module: devinterp treats any module with ``cfg.n_heads`` (as our
    TinyTransformer has) as a TransformerLens model and calls ``.to(..., print_details=...)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net: nn.Module = net

    def forward(self, *args: Any) -> Any:
        return self.net(*args)


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


def _slope(y: np.ndarray) -> np.ndarray:
    """Least-squares slope along the last axis (per unit index)."""
    x = np.arange(y.shape[-1], dtype=float)
    x = x - x.mean()
    return ((y - y.mean(-1, keepdims=True)) * x).sum(-1) / (x**2).sum()


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def diagnose(
    draws: Any, init_loss: float, n_beta: float, chance_loss: float | None = None
) -> dict[str, Any]:
    """Convergence diagnostic of one estimate from its chain losses at the draws ``[chains,
    draws]`` (burn-in excluded). See the module docstring for the criteria."""
    trace = np.asarray(draws, dtype=float)
    chains, n = trace.shape
    half = n // 2
    full_c = n_beta * (trace.mean(1) - init_loss)
    half_c = n_beta * (trace[:, :half].mean(1) - init_loss)
    llc, llc_half = float(full_c.mean()), float(half_c.mean())
    rise = float(trace.mean() - init_loss)
    drift_c = _slope(trace[:, half:]) * (n - half - 1)  # change across the second half
    drift = float(drift_c.mean())
    change = llc - llc_half
    out: dict[str, Any] = {
        "rise": rise,
        "mean_chain_loss": float(trace.mean()),
        "drift": drift,
        "drift_rel": drift / rise if rise else float("inf"),
        "llc_half": llc_half,
        "doubling_change_rel": change / llc if llc else float("inf"),
        "chance_loss": chance_loss,
        "chance_fraction": None,
    }
    reasons = []
    if not np.isfinite(trace).all():
        reasons.append("non-finite chain loss (a chain diverged)")
    elif rise <= 0:
        reasons.append(
            f"negative: the chains descend {-rise:.3g} below the loss at the weights (not a local "
            "minimum; SGLD trains)"
        )
    else:
        if abs(drift) > max(MAX_DRIFT * rise, 2 * _se(drift_c)):
            reasons.append(
                f"not levelled off: the mean chain loss moves {drift:+.3g} over the second half "
                f"of the draws, {drift / rise:+.0%} of its rise {rise:.3g} (allowed {MAX_DRIFT:.0%})"
            )
        if abs(change) > max(MAX_DOUBLING_CHANGE * llc, 2 * _se(full_c - half_c)):
            reasons.append(
                f"depends on chain length: {llc_half:.3g} from the first half of the draws, "
                f"{llc:.3g} from all ({change / llc:+.0%}; allowed {MAX_DOUBLING_CHANGE:.0%})"
            )
        if chance_loss is not None and init_loss < 0.5 * chance_loss:
            frac = rise / (chance_loss - init_loss)
            out["chance_fraction"] = frac
            if frac > MAX_CHANCE_FRACTION:
                reasons.append(
                    f"near chance: the chains climb {frac:.0%} of the way from the loss at the "
                    f"weights ({init_loss:.3g}) to chance ({chance_loss:.3g}); allowed "
                    f"{MAX_CHANCE_FRACTION:.0%} (the sampler erases the model)"
                )
    out["converged"] = not reasons
    out["reason"] = "; ".join(reasons) if reasons else "ok"
    return out


def sample_llc(
    net: nn.Module,
    example_loss: ExampleLoss,
    n_examples: int,
    config: LLCConfig | None = None,
    device: str | torch.device | None = None,
    chance_loss: float | None = None,
) -> dict[str, Any]:
    """LLC of ``net`` at its weights for the per-example loss ``example_loss(net, idx)`` over
    examples ``0 .. n_examples - 1`` (devinterp SGLD; ``net`` is copied, its weights untouched).

    Returns ``llc_mean``, ``llc_std`` (over chains), ``llc_per_chain``, ``init_loss``,
    ``loss_trace`` (per chain, per SGLD step, burn-in first), ``trace_mean`` (mean over chains of
    the chain loss at each draw), ``diagnostic`` (``diagnose``), ``converged``, ``n_beta``,
    ``n_examples``, ``seconds``, ``settings``.
    """
    try:
        from datasets import Dataset
        from devinterp.slt.llc import llc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(INSTALL_HINT) from exc
    config = config or LLCConfig()
    if n_examples < config.batch_size:
        raise ValueError(
            f"batch_size={config.batch_size} is invalid: allowed <= the {n_examples} examples"
        )
    start = time.perf_counter()
    rows = torch.arange(n_examples)[:, None].expand(-1, 2)
    data = Dataset.from_dict({"input_ids": rows.tolist()}).with_format("torch")

    def loss_fn(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        inner = model.net if isinstance(model, _Wrapped) else model  # devinterp's copy
        return example_loss(inner, input_ids[:, 0].cpu())[:, None].float()

    device = str(device or next(net.parameters()).device)
    was_training, threads = net.training, torch.get_num_threads()
    net.eval()  # no dropout in the built-in nets; eval for any user net that has some
    if device == "cpu":
        # devinterp's zarr writer threads and torch's intra-op threads slow each other down
        torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = llc(
                model=_Wrapped(net), dataset=data, observables={}, lr=config.lr,
                n_beta=config.resolved_n_beta(n_examples), localization=config.localization,
                num_chains=config.num_chains, num_draws=config.num_draws,
                num_burnin_steps=config.num_burnin_steps,
                num_steps_bw_draws=config.num_steps_bw_draws, batch_size=config.batch_size,
                num_init_loss_batches=max(1, min(32, n_examples // config.batch_size)),
                init_seed=config.seed, device=device, loss_fn=loss_fn,
                output_path=Path(tmp) / "samples.zarr",
            )  # fmt: skip
            steps = np.asarray(result["loss_trace"].values, dtype=float)  # [chains, steps]
            init_loss = float(result["init_loss"])
    finally:
        net.train(was_training)
        torch.set_num_threads(threads)
    return from_trace(steps, init_loss, config, chance_loss, n_examples, start)


def from_trace(
    steps: Any,
    init_loss: float,
    config: LLCConfig,
    chance_loss: float | None = None,
    n_examples: int | None = None,
    start: float | None = None,
) -> dict[str, Any]:
    """The estimate and its diagnostic from the chain losses at every SGLD step ``[chains,
    burn-in + draws x steps between draws]``."""
    steps = np.asarray(steps, dtype=float)
    picks = config.num_burnin_steps + config.num_steps_bw_draws * np.arange(config.num_draws)
    draws = steps[:, picks]
    n_beta = config.resolved_n_beta(n_examples)
    per_chain = n_beta * (draws.mean(1) - init_loss)
    finite = per_chain[np.isfinite(per_chain)]
    diagnostic = diagnose(draws, init_loss, n_beta, chance_loss)
    return {
        "llc_mean": float(finite.mean()) if len(finite) else float("nan"),
        "llc_std": float(finite.std(ddof=1)) if len(finite) > 1 else float("nan"),
        "llc_per_chain": per_chain.tolist(),
        "init_loss": init_loss,
        "loss_trace": steps.tolist(),
        "trace_mean": draws.mean(0).tolist(),
        "diagnostic": diagnostic,
        "converged": diagnostic["converged"],
        "n_beta": n_beta,
        "n_examples": n_examples,
        "seconds": time.perf_counter() - start if start is not None else None,
        "settings": asdict(config),
    }


def estimate_llc(
    net: nn.Module,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    config: LLCConfig | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """LLC of a token net at its weights on ``(tokens [n, pos], labels [n, pos])`` (the train
    split; at most ``config.max_examples`` of it); chance = ln(output classes). See
    ``sample_llc`` for what it returns."""
    config = config or LLCConfig()
    tokens, labels = subset(tokens.cpu(), labels.cpu(), config)
    device = device or next(net.parameters()).device
    tokens_d, labels_d = tokens.to(device), labels.to(device)
    with torch.no_grad():
        classes = net(tokens_d[:1]).shape[-1]

    def loss(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to(tokens_d.device)
        return example_losses(model, tokens_d[idx], labels_d[idx])

    return sample_llc(net, loss, len(tokens), config, device, chance_loss=math.log(classes))


def diagnostic_of(result: dict[str, Any]) -> dict[str, Any]:
    """A cached result's diagnostic (recomputed from its trace for results cached before the
    diagnostic existed: no burn-in, one step between draws, unless its settings say otherwise)."""
    if result.get("diagnostic"):
        return dict(result["diagnostic"])
    settings = {k: v for k, v in (result.get("settings") or {}).items()
                if k in LLCConfig.__dataclass_fields__}  # fmt: skip
    config = LLCConfig(**settings)
    trace = result.get("loss_trace")
    if not trace or result.get("init_loss") is None:
        return {"converged": False, "reason": "no loss trace to check"}
    return from_trace(trace, float(result["init_loss"]), config)["diagnostic"]


def read_cache(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The run's cached LLC results: ``{settings key: {epoch: result}}`` (empty if none)."""
    path = Path(run_dir) / CACHE
    return json.loads(path.read_text()) if path.exists() else {}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_result(run_dir: Path, config: LLCConfig, epoch: int, result: dict[str, Any]) -> None:
    """Add one epoch's result to the run's cache (atomic replace)."""
    cache = read_cache(run_dir)
    cache.setdefault(config.key(), {})[str(int(epoch))] = _clean(result)
    path = Path(run_dir) / CACHE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cache))
    tmp.replace(path)


__all__ = [
    "CACHE",
    "INSTALL_HINT",
    "LLCConfig",
    "diagnose",
    "diagnostic_of",
    "estimate_llc",
    "example_losses",
    "from_trace",
    "have_devinterp",
    "read_cache",
    "sample_llc",
    "write_result",
]
