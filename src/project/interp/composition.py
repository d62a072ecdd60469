"""Causal evidence for induction: which earlier-layer heads the induction heads depend on.

``induction_ablation_table(model, tokens, labels)`` mean-ablates, one at a time, every head of
layer 0 (and then all of them together), and reports for each ablation:

- the induction score of every later-layer head (``induction_L{l}H{h}``: TransformerLens
  ``detect_head`` normalisation by default, see ``project.interp.induction``) and its drop
  ``d_induction_L{l}H{h}`` = ablated - clean (negative = the head lost its induction attention:
  K-composition with the ablated head, whose output builds the keys it matches on);
- the loss and accuracy on the supervised (repeated) tokens and their changes ``d_loss``,
  ``d_acc``.

Then every later-layer head is mean-ablated on its own (rows ``L1H0`` ...) and each later layer's
heads all together (``L1 all``) for the effect on the loss and accuracy: induction heads whose
removal costs accuracy are used by the model, not just present (several redundant heads can each
cost little alone and everything together). Row ``clean`` is the unablated model. Mean ablation averages the head's ``hook_z``
output over the batch (per position), as ``project.interp.ablation`` does.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from project.interp.ablation import Ablation, ablation_hook, model_layers, reference_cache
from project.interp.induction import PATTERNS, pattern_hooks, score_pattern

IGNORE_INDEX = -100


def _measure(
    model: Any,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    ablations: list[Ablation],
    reference: dict[str, torch.Tensor],
    reduce: str,
) -> dict[str, float]:
    """Loss, accuracy (supervised positions) and induction scores of layers >= 1 under
    ``ablations``."""
    hooks = [(a.hook, ablation_hook(a, reference.get(a.hook))) for a in ablations]
    names = pattern_hooks(model)
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        logits, cache = model.run_with_cache(tokens, names_filter=names)
    mask = labels != IGNORE_INDEX
    flat, lab = logits[mask].double(), labels[mask].to(logits.device)
    out = {
        "loss": float(F.cross_entropy(flat, lab)),
        "acc": float((flat.argmax(-1) == lab).double().mean()),
    }
    detection = PATTERNS["induction"](tokens.to(logits.device))
    for layer, name in enumerate(names):
        if layer == 0:
            continue
        scores = score_pattern(cache[name], detection, reduce=reduce)
        for head, value in enumerate(scores.tolist()):
            out[f"induction_L{layer}H{head}"] = value
    return out


def induction_ablation_table(
    model: Any, tokens: torch.Tensor, labels: torch.Tensor, reduce: str = "tl"
) -> pd.DataFrame:
    """Rows ``clean``, ``L0H{h}`` (each layer-0 head mean-ablated), ``L0 all``, ``L{l}H{h}`` (each
    later head), ``L{l} all``; columns ``ablated, layer, head, loss, acc, induction_L{l}H{h}`` and their
    changes from ``clean`` (``d_*``). ``tokens [batch, pos]``, ``labels [batch, pos]`` with -100
    at unsupervised positions. Needs ``blocks.{i}.attn.hook_z`` and ``hook_pattern`` hooks."""
    n_layers = model_layers(model)
    if n_layers < 2:
        raise ValueError("induction needs >= 2 layers: nothing to compose with layer 0")
    n_heads = {
        i: int(model.get_parameter(f"blocks.{i}.attn.W_Q").shape[0]) for i in range(n_layers)
    }
    layer0 = [Ablation("blocks.0.attn.hook_z", kind="mean", head=h) for h in range(n_heads[0])]
    later = [
        Ablation(f"blocks.{i}.attn.hook_z", kind="mean", head=h)
        for i in range(1, n_layers)
        for h in range(n_heads[i])
    ]
    reference = reference_cache(model, layer0 + later, tokens)
    runs: list[tuple[str, int | None, int | None, list[Ablation]]] = [("clean", None, None, [])]
    runs += [(f"L0H{a.head}", 0, int(a.head), [a]) for a in layer0]  # type: ignore[arg-type]
    runs.append(("L0 all", 0, None, layer0))
    for layer in range(1, n_layers):
        mine = [a for a in later if a.hook == f"blocks.{layer}.attn.hook_z"]
        runs += [(f"L{layer}H{a.head}", layer, int(a.head), [a]) for a in mine]  # type: ignore[arg-type]
        runs.append((f"L{layer} all", layer, None, mine))
    rows = []
    for label, layer_i, head_i, items in runs:
        rows.append(
            {"ablated": label, "layer": layer_i, "head": head_i,
             **_measure(model, tokens, labels, items, reference, reduce)}
        )  # fmt: skip
    table = pd.DataFrame(rows)
    clean = table.iloc[0]
    for col in [c for c in table.columns if c in ("loss", "acc") or c.startswith("induction_")]:
        table[f"d_{col}"] = table[col] - clean[col]
    return table


__all__ = ["induction_ablation_table"]
