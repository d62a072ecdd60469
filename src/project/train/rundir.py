"""Run directories: ``outputs/<YYYY-MM-DD>/<HH-MM-SS>[-<name>]``, unique even within one second.

``unique_run_dir`` is registered as an OmegaConf resolver and used for ``hydra.run.dir``. It
claims the directory atomically (``os.mkdir``), adding ``_1``, ``_2``, ... when another process
took the name first, and caches the answer so every later resolution in this process agrees.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

_CLAIMED: dict[tuple[str, str], str] = {}
_CREATED: set[str] = set()  # output-root folders this process created for its run dir


class RunDirError(ValueError):
    """``run.name`` / ``run.output_root`` cannot make a run dir: one line."""


def claim_run_dir(root: str, name: str | None = None, now: datetime | None = None) -> str:
    key = (str(root), str(name or ""))
    if key in _CLAIMED:
        return _CLAIMED[key]
    from project.train.checks import MAX_NAME_BYTES, invalid
    from project.utils.paths import unwritable

    text = str(name or "")
    if "/" in text or text in (".", "..") or len(text.encode()) > MAX_NAME_BYTES:
        shown = text if len(text) < 40 else f"{text[:20]}... ({len(text.encode())} bytes)"
        raise RunDirError(invalid("run.name", shown, f"a plain name without '/' of at most "
                                  f"{MAX_NAME_BYTES} bytes (the run dir's name), or null"))  # fmt: skip
    if not str(root).strip() or (problem := unwritable(Path(root))):
        raise RunDirError(invalid("run.output_root", root, f"a writable directory ({problem})"))
    now = now or datetime.now()
    day = Path(root) / now.strftime("%Y-%m-%d")
    missing = [p for p in (day, *day.parents) if not p.exists()]
    day.mkdir(parents=True, exist_ok=True)
    _CREATED.update(str(p.absolute()) for p in missing)  # removed again if the run is discarded
    base = now.strftime("%H-%M-%S") + (f"-{name}" if name else "")
    for i in range(10_000):
        candidate = day / (base if i == 0 else f"{base}_{i}")
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        _CLAIMED[key] = str(candidate)
        return str(candidate)
    raise RuntimeError(f"could not claim a run dir under {day}")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("unique_run_dir"):
        OmegaConf.register_new_resolver(
            "unique_run_dir", lambda root, name=None: claim_run_dir(root, name), use_cache=False
        )


def discard_run_dir(run_dir: Path, force: bool = False) -> None:
    """Remove a run dir that holds nothing but Hydra's own files (a run that never started; with
    ``force``, whatever it holds), then the date folder and output root if they are empty and
    this process created them."""
    if not run_dir.is_dir():
        return
    hydra_only = {".hydra", "run.log", "train.log"}
    if force or all(p.name in hydra_only for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
        for parent in run_dir.absolute().parents:
            if str(parent) not in _CREATED or not parent.is_dir() or any(parent.iterdir()):
                break
            parent.rmdir()
