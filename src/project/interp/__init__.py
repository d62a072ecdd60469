"""Mechanistic-interpretability toolkit for any ``HookedRootModule`` with TransformerLens hook names.

Submodules (imported lazily: ``import project.interp`` loads none of them, nor matplotlib,
pandas or TransformerLens):

- ``cache``: :class:`Site` (hook + head / pos / neuron slice), ``stack_activation``,
  ``accumulated_resid``, ``decompose_resid``, ``stack_head_results``, ``logit_attribution``
- ``metrics``: ``loss``, ``accuracy``, ``logit_diff``, ``answer_prob`` at the answer position
- ``ablation``: :class:`Ablation` (zero / mean / resample, optional direction),
  ``run_with_ablation``, ``ablation_sweep`` and component lists (``head_ablations`` ...)
- ``patching``: ``activation_patching``, ``path_patching``, corrupted-input helpers
- ``probes``: ``train_probe``, ``probe_cache`` (linear classification / regression)
- ``viz``: matplotlib figures (headless), each can save a PNG
- ``tl_export``: ``to_hooked_transformer`` (TransformerLens interop, optional extra ``tl``)

The names below are re-exported on first access: ``from project.interp import path_patching``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "cache": [
        "Site",
        "head_axis",
        "pos_axis",
        "resolve_names",
        "stack_activation",
        "accumulated_resid",
        "decompose_resid",
        "stack_head_results",
        "logit_attribution",
    ],
    "metrics": ["loss", "accuracy", "logit_diff", "answer_prob", "answer_logits"],
    "ablation": [
        "Ablation",
        "ablation_hook",
        "run_with_ablation",
        "ablation_sweep",
        "head_ablations",
        "neuron_ablations",
        "layer_ablations",
    ],
    "patching": [
        "activation_patching",
        "path_patching",
        "path_patching_sweep",
        "PatchingResult",
        "PathPatchingResult",
        "corrupt_operand",
        "resample_positions",
        "modular_labels",
        "patch_hook",
    ],
    "probes": ["train_probe", "probe_cache", "ProbeResult"],
    "viz": [
        "plot_attention_patterns",
        "plot_patching",
        "plot_ablation_effects",
        "plot_probe_accuracy",
        "plot_neuron_grid",
        "plot_embedding",
        "save_figure",
    ],
    "tl_export": ["to_hooked_transformer"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
