"""Linear probes on cached activations (torch only): classification and regression.

    res = train_probe(cache["blocks.0.hook_resid_pre"][:, 0], a, n_classes=p)
    res.val_acc                                  # held-out accuracy
    table = probe_cache(cache, a, n_classes=p)   # every hook x position at once

- **classification**: softmax regression (multinomial logistic regression) with L2 penalty,
  fitted full-batch with L-BFGS on standardised features. ``n_classes`` comes from the task
  (e.g. ``p``), never from the largest label seen. Scores: ``train_acc`` / ``val_acc``.
- **regression**: ridge regression, solved in closed form. Scores: ``train_r2`` / ``val_r2``
  (coefficient of determination, 1 - SS_res / SS_tot, averaged over targets; can be < 0).

The held-out split is a seeded random permutation (``frac_train`` of the rows for fitting).

Speed: a fit is ~10^4 tiny tensor ops, which run slower spread over several intra-op threads, so
fits up to ``ONE_THREAD_SIZE`` multiply-adds per pass run on one thread (the caller's count is
restored); ``probe_cache`` shows a progress bar on a terminal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F

from project.interp.cache import pos_axis, progress_bar, resolve_names
from project.models.hooks import ActivationCache, NamesFilter

TASKS = ("classification", "regression")
# rows x features x outputs of a fit up to which it runs on one intra-op thread
ONE_THREAD_SIZE = 1 << 22


@contextlib.contextmanager
def _threads_for(size: int) -> Iterator[None]:
    """One intra-op thread for a fit of ``size`` multiply-adds per pass up to ``ONE_THREAD_SIZE``;
    the caller's thread count is restored."""
    before = torch.get_num_threads()
    one = size <= ONE_THREAD_SIZE and before > 1
    if one:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if one:
            torch.set_num_threads(before)


@dataclass
class ProbeResult:
    """A fitted probe: ``weight [d, n_out]``, ``bias [n_out]`` on features standardised with
    ``mean`` / ``std`` ``[d]``; ``train_score`` / ``val_score`` are accuracy
    (classification) or R^2 (regression)."""

    task: str
    train_score: float
    val_score: float
    n_classes: int | None
    weight: torch.Tensor = field(repr=False)
    bias: torch.Tensor = field(repr=False)
    mean: torch.Tensor = field(repr=False)
    std: torch.Tensor = field(repr=False)
    n_train: int
    n_val: int
    scalar_target: bool = True

    def _score(self, want: str, split: str) -> float:
        if self.task != want:
            name = "acc" if want == "classification" else "r2"
            other = "r2" if name == "acc" else "acc"
            raise AttributeError(f"a {self.task} probe has {split}_{other}, not {split}_{name}")
        return self.train_score if split == "train" else self.val_score

    @property
    def train_acc(self) -> float:
        return self._score("classification", "train")

    @property
    def val_acc(self) -> float:
        return self._score("classification", "val")

    @property
    def train_r2(self) -> float:
        return self._score("regression", "train")

    @property
    def val_r2(self) -> float:
        return self._score("regression", "val")

    def decision(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs ``[n, n_out]`` (logits or regression predictions) for ``x [n, d]``."""
        z = (x.double().to(self.mean.device) - self.mean) / self.std
        return z @ self.weight + self.bias

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices ``[n]`` (classification) or predictions ``[n(, k)]`` (regression)."""
        out = self.decision(x)
        if self.task == "classification":
            return out.argmax(-1)
        return out[:, 0] if self.scalar_target else out


def split(n: int, frac_train: float = 0.8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random train/val indices of ``range(n)``."""
    if not 0.0 < frac_train < 1.0:
        raise ValueError(f"frac_train={frac_train}: must be strictly between 0 and 1")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(round(frac_train * n))
    if cut == 0 or cut == n:
        raise ValueError(f"frac_train={frac_train} of {n} rows leaves an empty train or val split")
    return perm[:cut], perm[cut:]


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    ss_res = ((target - pred) ** 2).sum(0)
    ss_tot = ((target - target.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return float((1 - ss_res / ss_tot).mean())


def train_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int | None = None,
    task: str = "classification",
    frac_train: float = 0.8,
    seed: int = 0,
    weight_decay: float = 1e-3,
    max_iter: int = 100,
) -> ProbeResult:
    """Fit a linear probe on ``x [n, d]`` -> ``y``.

    classification: ``y [n]`` integer labels in ``[0, n_classes)`` (``n_classes`` required);
    regression: ``y [n]`` or ``[n, k]`` real targets. ``weight_decay`` is the L2 penalty
    (per example for classification, ridge lambda x n_train for regression).
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r}; allowed: {', '.join(TASKS)}")
    if x.ndim != 2:
        raise ValueError(f"x must be [n, d], got shape {tuple(x.shape)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    x = x.detach().double().cpu()
    y = y.detach().cpu()
    train, val = split(x.shape[0], frac_train, seed)
    mean = x[train].mean(0)
    std = x[train].std(0).clamp_min(1e-8)
    z = (x - mean) / std
    if task == "classification":
        if n_classes is None or n_classes < 2:
            raise ValueError(
                f"n_classes={n_classes!r}: a classification probe needs the task's number of "
                "classes (>= 2), e.g. n_classes=p"
            )
        if y.dtype.is_floating_point or y.ndim != 1:
            raise ValueError("classification labels must be an integer tensor [n]")
        if bool((y < 0).any() or (y >= n_classes).any()):
            raise ValueError(
                f"labels must lie in [0, {n_classes}) for n_classes={n_classes}; got "
                f"min {int(y.min())}, max {int(y.max())}"
            )
        with _threads_for(len(train) * z.shape[1] * n_classes):
            weight, bias = _fit_softmax(z[train], y[train], n_classes, weight_decay, max_iter)
        logits = z @ weight + bias
        correct = (logits.argmax(-1) == y).double()
        train_score, val_score = float(correct[train].mean()), float(correct[val].mean())
        scalar = True
    else:
        target = y.double()
        scalar = target.ndim == 1
        target = target[:, None] if scalar else target
        weight, bias = _fit_ridge(z[train], target[train], weight_decay)
        pred = z @ weight + bias
        train_score, val_score = _r2(pred[train], target[train]), _r2(pred[val], target[val])
        n_classes = None
    return ProbeResult(
        task,
        train_score,
        val_score,
        n_classes,
        weight,
        bias,
        mean,
        std,
        len(train),
        len(val),
        scalar,
    )


def _fit_softmax(
    z: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.zeros(z.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ weight + bias, y) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return weight.detach(), bias.detach()


def _fit_ridge(
    z: torch.Tensor, target: torch.Tensor, weight_decay: float
) -> tuple[torch.Tensor, torch.Tensor]:
    t_mean = target.mean(0)
    d = z.shape[1]
    gram = z.T @ z + weight_decay * z.shape[0] * torch.eye(d, dtype=z.dtype)
    weight = torch.linalg.solve(gram, z.T @ (target - t_mean))
    return weight, t_mean  # features are centred on the train split, so the bias is the mean


def probe_cache(
    cache: ActivationCache,
    y: torch.Tensor,
    n_classes: int | None = None,
    task: str = "classification",
    names: NamesFilter = None,
    positions: list[int] | None = None,
    frac_train: float = 0.8,
    seed: int = 0,
    weight_decay: float = 1e-3,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Probe every cached hook (``names`` filter; default: all ``[batch, pos, d]`` activations)
    at every position (or ``positions``) with the same split.

    Returns a table ``hook, pos, d, train_acc, val_acc`` (``train_r2, val_r2`` for regression),
    in forward order. Attention-pattern hooks are probed per query position on their
    flattened ``[head * k_pos]`` features; ``[batch, pos, head, d_head]`` hooks on ``head * d_head``.
    ``progress``: a progress bar on stderr (None: only when stderr is a terminal).
    """
    selected = resolve_names(list(cache), names, "cached activation")
    if not selected:
        raise ValueError(f"names={names!r} selects no cached activation")
    score = ("train_acc", "val_acc") if task == "classification" else ("train_r2", "val_r2")
    fits = [
        (name, pos)
        for name in selected
        if cache[name].ndim >= 3
        for pos in (
            positions if positions is not None else range(cache[name].shape[pos_axis(name)])
        )
    ]
    rows = []
    with progress_bar(len(fits), "probe_cache", progress) as advance:
        for name, pos in fits:
            act = cache[name]
            feats = act.select(pos_axis(name), pos).reshape(act.shape[0], -1)
            res = train_probe(feats, y, n_classes, task, frac_train, seed, weight_decay)
            rows.append(
                {
                    "hook": name,
                    "pos": pos,
                    "d": feats.shape[1],
                    score[0]: res.train_score,
                    score[1]: res.val_score,
                }
            )
            advance(f"probe_cache {name} pos {pos}")
    return pd.DataFrame(rows)
