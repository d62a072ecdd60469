"""Notebook helpers: ``load_checkpoint`` (from ``project.stored``), ``auto_device``, ``to_numpy``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from project.checkpoint import CheckpointError, read_checkpoint
from project.stored import load_checkpoint

__all__ = ["CheckpointError", "auto_device", "load_checkpoint", "read_checkpoint", "to_numpy"]


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
