"""Reading checkpoints: ``read_checkpoint`` (safe, one clear error) and ``load_checkpoint`` (the net).

``load_checkpoint(path)`` rebuilds whichever net the run's config named (``hyper_parameters.net``,
a plain ``_target_`` dict saved by ``LitCausalLM``) and loads its weights. Checkpoints written
before the template contract (flat TinyTransformer hyperparameters) still load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """The file is missing, truncated, not a checkpoint, or carries a non-plain (unsafe) payload."""


def _load_failure(exc: BaseException) -> str:
    """One line for why ``torch.load(weights_only=True)`` refused or failed."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    unsafe = [ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln]
    if unsafe:  # a pickled object that is not a plain type: never executed, refused
        return f"refused: it carries a non-plain (possibly malicious) pickle payload: {unsafe[0]}"
    if not lines:
        return type(exc).__name__
    first = lines[0]
    if "central directory" in first or "zip archive" in first:
        return "truncated or corrupt (its zip archive is incomplete)"
    return first.split(". ")[0]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` on CPU, with one clear error for every way it can fail.

    Only plain types (tensors, numbers, strings, lists, tuples, dicts) are accepted, so a crafted
    file's pickle payload is refused before any of it runs.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {str(path)!r} {what}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive
        what = "is empty" if not magic else "is not a PyTorch checkpoint (no zip archive header)"
        raise CheckpointError(f"checkpoint {str(path)!r} {what}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError (truncated zip), EOFError...
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be loaded safely (weights_only=True): "
            f"{_load_failure(exc)}"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{str(path)!r} is not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def build_net(hparams: dict[str, Any]) -> nn.Module:
    """The net a checkpoint's ``hyper_parameters`` describe (not yet loaded with weights)."""
    spec = hparams.get("net")
    if isinstance(spec, dict) and "_target_" in spec:
        from hydra.utils import instantiate

        return instantiate(spec)
    from project.models.tiny_transformer import TinyTransformer, TinyTransformerConfig

    fields = TinyTransformerConfig.__dataclass_fields__
    return TinyTransformer(
        TinyTransformerConfig(**{k: v for k, v in hparams.items() if k in fields})
    )


def load_checkpoint(
    path: str | Path, device: torch.device | str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a training checkpoint as ``(net in eval mode, hyperparameters dict)``.

    Safe: ``torch.load(weights_only=True)``. A GPU checkpoint loads on CPU. The hyperparameters
    hold ``net`` / ``optimizer`` / ``scheduler`` configs plus ``epoch`` and ``global_step``.
    """
    ckpt = read_checkpoint(path)
    hparams = dict(ckpt.get("hyper_parameters", {}))
    model = build_net(hparams)
    state = {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }
    model.load_state_dict(state)
    model.to(device if device is not None else "cpu").eval()
    hparams["epoch"] = ckpt.get("epoch")
    hparams["global_step"] = ckpt.get("global_step")
    return model, hparams
