"""TransformerLens interop: ``to_hooked_transformer(model)`` -> a TransformerLens model with the
same weights, so TL-only tools (circuitsvis, TL's patching utilities ...) work on our checkpoints.

Needs the optional extra ``tl`` (``uv sync --extra tl``; also in the ``dev`` group). Imported
lazily: ``import project.interp`` never imports TransformerLens.

- TransformerLens 2.x / 3.x: returns a ``transformer_lens.HookedTransformer`` built from a
  ``HookedTransformerConfig`` (``normalization_type=None`` or ``"LN"``, our ``act_fn``,
  ``d_vocab``, ``d_vocab_out``, ``n_ctx`` ...). Biases our model lacks (attention ``b_Q/b_K/b_V/b_O``
  without ``attn_bias``, ``b_U`` without ``unembed_bias``, MLP biases without ``mlp_bias``) are
  set to zero, so the function is identical.
- TransformerLens >= 4.0 removed ``HookedTransformer``; its documented replacement is a
  ``TransformerBridge``. We build one with ``TransformerBridge.boot_native`` (no Hub access),
  load our weights through TL's ``convert_tl_checkpoint`` (the converter TL itself uses for
  legacy HookedTransformer-format checkpoints such as the grokking demo) and switch on
  ``enable_compatibility_mode(no_processing=True)``: HookedTransformer hook names, our weights
  unprocessed (no LayerNorm folding or weight centring, so activations stay comparable).

Conventions checked by ``tests/interp/test_tl_export.py``: logits equal ours (atol 1e-5) and
every hook name both models have caches the same activation, with attention scores scaled by
``1/sqrt(d_head)`` and causally masked with ``-inf`` in both (TL 2.x ``IGNORE = -inf``). One
documented TL 4 difference: the native bridge fires ``hook_attn_scores`` with the post-softmax
weights (its attention module never exposes the pre-softmax scores), so on TL >= 4 that hook
equals our ``hook_pattern``, not our ``hook_attn_scores``. And one TL 2.x difference: its unfolded
``LayerNorm`` fires ``hook_normalized`` after ``w`` and ``b``; ours (like TL 4) fires it on
``x / scale``, before them.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import nn

_FIELDS = ("n_layers", "d_model", "n_ctx", "d_head", "n_heads", "d_mlp", "d_vocab", "d_vocab_out")


def _require_tl() -> None:
    if importlib.util.find_spec("transformer_lens") is None:
        raise ImportError(
            "to_hooked_transformer needs TransformerLens: install the 'tl' extra "
            "(uv sync --extra tl, or pip install 'training-template[tl]')"
        )


def tl_major_version() -> int:
    """Major version of the installed TransformerLens (ImportError when it is missing)."""
    _require_tl()
    from importlib.metadata import version

    return int(version("transformer-lens").split(".")[0])


def tl_config_kwargs(model: nn.Module) -> dict[str, Any]:
    """Keyword arguments describing ``model`` in TransformerLens config terms."""
    cfg: Any = getattr(model, "cfg", None)
    missing = [f for f in _FIELDS + ("act", "layernorm") if not hasattr(cfg, f)]
    if missing:
        raise TypeError(
            f"to_hooked_transformer needs a TinyTransformer-like model with cfg fields "
            f"{', '.join(_FIELDS)}, act, layernorm; {type(model).__name__} lacks {', '.join(missing)}"
        )
    kwargs: dict[str, Any] = {f: int(getattr(cfg, f)) for f in _FIELDS}
    kwargs["act_fn"] = str(cfg.act)  # "relu" | "gelu" (exact erf GELU in TL too)
    kwargs["normalization_type"] = "LN" if cfg.layernorm else None
    if kwargs.get("d_mlp") == 0:  # attention-only: TL must build no MLP (else it adds one)
        kwargs["attn_only"] = True
    return kwargs


def _filled_state_dict(ours: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict:
    """Target-keyed state dict: our tensors where the key exists, zeros for absent biases."""
    unknown = sorted(set(ours) - set(target))
    if unknown:
        raise ValueError(f"TransformerLens model has no parameter(s) {', '.join(unknown)}")
    out = {}
    for key, value in target.items():
        if key in ours:
            out[key] = ours[key].detach().to(value.device, value.dtype)
        elif key.rsplit(".", 1)[-1].startswith("b"):  # b_Q/b_K/b_V/b_O/b_U/b_in/b_out, *.bias
            out[key] = torch.zeros_like(value)
        else:  # buffers (causal mask, IGNORE) keep TransformerLens' own values
            out[key] = value
    return out


def _to_hooked_transformer_v2(model: nn.Module, kwargs: dict[str, Any]) -> nn.Module:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tl_cfg = HookedTransformerConfig(
        **kwargs,
        positional_embedding_type="standard",
        default_prepend_bos=False,
        eps=1e-5,
        device="cpu",
        seed=None,
    )
    ht = HookedTransformer(tl_cfg)
    ht.load_state_dict(_filled_state_dict(model.state_dict(), ht.state_dict()), strict=True)
    return ht


def _to_bridge_v4(model: nn.Module, kwargs: dict[str, Any]) -> nn.Module:
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge.sources.native import boot
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    tl_cfg = TransformerBridgeConfig(
        **kwargs,
        positional_embedding_type="standard",
        architecture="TransformerLensNative",
        eps=1e-5,
        default_prepend_bos=False,
    )
    bridge = boot(tl_cfg)
    converted = convert_tl_checkpoint(
        {k: v.detach().cpu() for k, v in model.state_dict().items()}, bridge.cfg
    )
    bridge.load_state_dict(_filled_state_dict(converted, bridge.state_dict()), strict=True)
    bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    return bridge


def to_hooked_transformer(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """TransformerLens copy of ``model`` (a ``TinyTransformer``) in eval mode, same weights.

    Returns a ``HookedTransformer`` on TransformerLens 2.x/3.x and a ``TransformerBridge`` in
    HookedTransformer-compatibility mode on 4.x (see the module docstring). Both offer
    ``run_with_cache`` / ``run_with_hooks`` with the TransformerLens hook names.
    """
    kwargs = tl_config_kwargs(model)
    if tl_major_version() >= 4:
        tl_model = _to_bridge_v4(model, kwargs)
    else:
        tl_model = _to_hooked_transformer_v2(model, kwargs)
    if device is None:
        device = next(model.parameters()).device
    return tl_model.to(device).eval()
