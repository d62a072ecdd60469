"""File-system checks shared by the run's config checks and the sync."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def unwritable(root: Path) -> str | None:
    """Why ``root`` cannot hold new files and folders, or None (probes the nearest existing
    folder with a temp dir that is removed again)."""
    probe = root.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=probe))
    except OSError as exc:
        return f"cannot create files in {probe}: {exc.strerror or str(exc)}"
    return None
