"""Reading checkpoints: ``read_checkpoint`` (safe, one clear error) and ``load_checkpoint`` (the net).

A checkpoint is data, never code:

* the file is read with ``torch.load(weights_only=True)``: a pickle payload that asks for anything
  but plain types is refused before any of it runs;
* its content hash (``integrity``: SHA-256 over every tensor's bytes and every other value, written
  by ``AtomicCheckpointIO`` at save time) is verified on every read: a flipped bit is "corrupt or
  tampered", never a silently different model;
* ``load_checkpoint(path)`` rebuilds the net the run's config named (``hyper_parameters.net``)
  through ``project.stored`` (a ``torch.nn.Module`` class you can import, plain values: no code).

Checkpoints written before the template contract (flat TinyTransformer hyperparameters) and before
the hash (no ``integrity`` entry) still load.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch

INTEGRITY_KEY = "integrity"
HASH_SCHEME = "sha256/v1"


# snapshot names: epoch_000400.ckpt (no "=": a path that Hydra's command line parses unquoted);
# runs written before that used epoch=000400.ckpt, which every reader still accepts
SNAPSHOT_RE = re.compile(r"^epoch[_=](\d+)\.ckpt$")


def snapshot_name(epoch: int) -> str:
    """The file name of the snapshot after ``epoch`` completed epochs."""
    return f"epoch_{epoch:06d}.ckpt"


def snapshot_paths(ckpt_dir: str | Path) -> list[tuple[int, Path]]:
    """``(completed epochs, path)`` of every snapshot in a checkpoint dir (old names too),
    ascending; one per epoch (the new name wins if both exist)."""
    found: dict[int, Path] = {}
    directory = Path(ckpt_dir)
    for path in sorted(directory.glob("epoch*.ckpt")) if directory.is_dir() else []:
        match = SNAPSHOT_RE.match(path.name)
        if match and (int(match.group(1)) not in found or "_" in path.name):
            found[int(match.group(1))] = path
    return sorted(found.items())


def completed_epochs(checkpoint: dict[str, Any]) -> int:
    """Epochs completed when the checkpoint was written (the one convention of every output).

    Lightning's ``epoch`` entry is the 0-based index of the epoch being run (``epoch=0`` is both
    the initial model and the model after one epoch); the fit loop's ``processed`` count is exact,
    and a weights-only file without loop state falls back to the step count."""
    progress = (((checkpoint.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress")
                or {}).get("current") or {}  # fmt: skip
    if isinstance(progress.get("processed"), int):
        return int(progress["processed"])
    if not checkpoint.get("global_step"):
        return 0
    return int(checkpoint.get("epoch", 0)) + 1


class CheckpointError(RuntimeError):
    """The file is missing, truncated, not a checkpoint, or carries a non-plain (unsafe) payload."""


def _feed(digest: Any, value: Any) -> None:
    """Feed one checkpoint value into ``digest`` in a canonical form (dicts in their order; lists
    and tuples alike, since a save/load round trip may turn one into the other)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            digest.update(f"K{key!r}".encode())
            _feed(digest, item)
    elif isinstance(value, list | tuple):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"V{type(value).__name__}:{value!r}".encode())


def content_hash(checkpoint: dict[str, Any]) -> str:
    """SHA-256 over everything in a checkpoint but its own ``integrity`` entry."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in checkpoint.items() if k != INTEGRITY_KEY})
    return digest.hexdigest()


def with_integrity(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint plus its ``integrity`` entry (a new top-level dict; values shared)."""
    return {
        **checkpoint,
        INTEGRITY_KEY: {"scheme": HASH_SCHEME, "sha256": content_hash(checkpoint)},
    }


def _load_failure(exc: BaseException) -> str:
    """One line for why ``torch.load(weights_only=True)`` refused or failed."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    unsafe = [ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln]
    if unsafe:  # a pickled object that is not a plain type (or a damaged byte): never executed
        return (
            "refused: corrupt or tampered: its pickle payload asks for more than plain data "
            f"({unsafe[0]})"
        )
    if not lines:
        return type(exc).__name__
    first = lines[0]
    if "central directory" in first or "zip archive" in first:
        return "truncated or corrupt (its zip archive is incomplete)"
    return f"corrupt or tampered ({first.split('. ')[0]})"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` on CPU, with one clear error for every way it can fail.

    Only plain types (tensors, numbers, strings, lists, tuples, dicts) are accepted, so a crafted
    file's pickle payload is refused before any of it runs.
    """
    path = Path(path)
    if not path.is_file():
        what = "does not exist"
        if path.is_dir():
            what = "is a directory, not a file"
        elif path.exists():
            what = "is not a regular file"
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
    stamp = ckpt.get(INTEGRITY_KEY)
    if stamp is not None:
        expected = stamp.get("sha256") if isinstance(stamp, dict) else None
        if expected != content_hash(ckpt):
            raise CheckpointError(
                f"checkpoint {str(path)!r} is corrupt or tampered: its content no longer matches "
                "the SHA-256 written with it"
            )
    return ckpt


def checkpoint_problem(path: str | Path, key: str = "run.ckpt_path") -> str | None:
    """Why ``path`` cannot resume a run (``key`` ``run.ckpt_path``) or start a new one from its
    weights (``run.init_from``), as what a config error line says is allowed; None if it can."""
    resume = key == "run.ckpt_path"
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as exc:
        what = "an existing, complete training checkpoint" if resume else "an existing checkpoint"
        return f"{what} ({exc})"
    if not resume:
        ok = isinstance(ckpt.get("state_dict"), dict)
        return None if ok else "a checkpoint with weights (no state_dict in it)"
    if "optimizer_states" in ckpt and "loops" in ckpt:
        return None
    run = "python -m project.train.run"
    last = Path(str(path)).absolute().parent / "last.ckpt"
    fix = f"; resume the run with: {run} run.ckpt_path={last}" if last.is_file() else ""
    return (
        "a complete training checkpoint (this is a weights-only snapshot: no optimiser or loop "
        f"state to resume from){fix}; or start a new run from its weights with: {run} "
        f"run.init_from={Path(str(path)).absolute()}"
    )
