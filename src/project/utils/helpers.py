"""Notebook helpers: ``load_checkpoint``, ``auto_device``, ``to_numpy``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from project.models.examples import TinyTransformer, TinyTransformerConfig


class CheckpointError(RuntimeError):
    """The file is missing, truncated, not a checkpoint, or carries a non-plain (unsafe) payload."""


def auto_device() -> torch.device:
    """CUDA if available, else Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def to_numpy(x: Any) -> np.ndarray:
    """Tensor (any device, with grad or not) / list / scalar -> numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` on CPU, with one clear error for every way it can fail."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError (truncated zip), EOFError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be loaded safely (weights_only=True): {first}"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{str(path)!r} is not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def load_checkpoint(
    path: str | Path, device: torch.device | str | None = None
) -> tuple[TinyTransformer, dict[str, Any]]:
    """Load a training checkpoint as ``(TinyTransformer in eval mode, hyperparameters dict)``.

    Safe: uses ``torch.load(weights_only=True)``. A GPU checkpoint loads on CPU.
    """
    ckpt = read_checkpoint(path)
    hparams = dict(ckpt.get("hyper_parameters", {}))
    fields = TinyTransformerConfig.__dataclass_fields__
    model = TinyTransformer(
        TinyTransformerConfig(**{k: v for k, v in hparams.items() if k in fields})
    )
    state = {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }
    model.load_state_dict(state)
    model.to(device if device is not None else "cpu").eval()
    hparams["epoch"] = ckpt.get("epoch")
    hparams["global_step"] = ckpt.get("global_step")
    return model, hparams
