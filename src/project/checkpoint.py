"""Reading checkpoints safely: a checkpoint is data, never code.

``read_checkpoint`` uses ``torch.load(weights_only=True)`` (a pickle payload asking for more than
plain types is refused before it runs) and verifies the SHA-256 content hash written at save time
(``integrity``; files without one still load): a flipped bit is an error, not a different model.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch

INTEGRITY_KEY = "integrity"
HASH_SCHEME = "sha256/v1"


# epoch_000400.ckpt (no "=": Hydra's command line takes the path unquoted); old runs: epoch=000400
SNAPSHOT_RE = re.compile(r"^epoch[_=](\d+)\.ckpt$")


def snapshot_name(epoch: int) -> str:
    """The file name of the snapshot after ``epoch`` completed epochs."""
    return f"epoch_{epoch:06d}.ckpt"


def snapshot_paths(ckpt_dir: str | Path) -> list[tuple[int, Path]]:
    """``(completed epochs, path)`` of a checkpoint dir's snapshots, ascending (new names win)."""
    found: dict[int, Path] = {}
    directory = Path(ckpt_dir)
    for path in sorted(directory.glob("epoch*.ckpt")) if directory.is_dir() else []:
        match = SNAPSHOT_RE.match(path.name)
        if match and (int(match.group(1)) not in found or "_" in path.name):
            found[int(match.group(1))] = path
    return sorted(found.items())


def completed_epochs(checkpoint: dict[str, Any]) -> int:
    """Epochs completed when the checkpoint was written. Lightning's ``epoch`` is ambiguous
    (``0`` is both the initial model and after one epoch): the fit loop's count is exact."""
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
    """Hash ``value`` canonically (lists and tuples alike: a save/load may swap them)."""
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
    if "central directory" in first or "zip archive" in first or "Invalid argument" in first:
        return "truncated or corrupt (its zip archive is incomplete)"
    return f"corrupt or tampered ({first.split('. ')[0]})"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` on CPU, hash checked; ``CheckpointError`` (one line)."""
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
    """What ``path`` should be to resume (``run.ckpt_path``) or start from (``run.init_from``);
    None if it is fine."""
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
