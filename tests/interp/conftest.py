"""Session fixture: a TinyTransformer grokked on (a + b) mod 23, trained in-process in seconds.

A plain PyTorch full-batch AdamW loop (no Lightning: its import alone costs seconds), on the
same data tables and split function as the training pipeline. The fixture asserts 100%
validation accuracy, so every science test below runs on a model that implements the algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from project.data.arithmetic import all_pairs, split_indices
from project.models.tiny_transformer import TinyTransformer

P = 23


@dataclass
class Grokked:
    model: TinyTransformer
    tokens: torch.Tensor  # [p*p, 3] all pairs, a-major
    labels: torch.Tensor  # [p*p]
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    p: int
    steps: int
    val_acc: float


def train_grokked(
    p: int = P, frac_train: float = 0.8, seed: int = 1, max_steps: int = 1500
) -> Grokked:
    """Full-batch AdamW (lr 2e-2, wd 1, betas (0.9, 0.98)) until val accuracy is 1.0 for two
    consecutive checks (every 25 steps), on a d_model 64 / 4 heads / d_mlp 256 model."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: one thread is faster, and CI cores are shared
    try:
        return _train(p, frac_train, seed, max_steps)
    finally:
        torch.set_num_threads(threads)


def _train(p: int, frac_train: float, seed: int, max_steps: int) -> Grokked:
    tokens, labels = all_pairs("add", p)
    train_idx, val_idx = split_indices(len(tokens), frac_train, 598)
    torch.manual_seed(seed)
    model = TinyTransformer(
        d_vocab=p + 1, d_vocab_out=p, d_model=64, n_heads=4, d_head=16, d_mlp=256
    )
    opt = torch.optim.AdamW(model.parameters(), lr=2e-2, weight_decay=1.0, betas=(0.9, 0.98))
    x_tr, y_tr, x_va, y_va = tokens[train_idx], labels[train_idx], tokens[val_idx], labels[val_idx]
    perfect, val_acc, step = 0, 0.0, 0
    for step in range(1, max_steps + 1):
        loss = F.cross_entropy(model(x_tr)[:, -1], y_tr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0:
            with torch.no_grad():
                val_acc = (model(x_va)[:, -1].argmax(-1) == y_va).float().mean().item()
            perfect = perfect + 1 if val_acc == 1.0 else 0
            if perfect == 2:
                break
    model.eval()
    return Grokked(model, tokens, labels, train_idx, val_idx, p, step, val_acc)


@pytest.fixture(scope="session")
def grokked() -> Grokked:
    result = train_grokked()
    assert result.val_acc == 1.0, (
        f"fixture did not grok: val acc {result.val_acc} after {result.steps}"
    )
    return result


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Interp tests run many tiny forward passes: a second intra-op thread only adds contention
    on shared CI cores. Restored after each module so other test folders are unaffected."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
