"""Stand-ins for ``train_ensemble`` that the pool tests send to spawned workers: a module with
no torch import, so a worker starts in about a second."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def fake_train(members: list[tuple[Any, Path]], resume_from: Any = None) -> list[dict[str, Any]]:
    """Raises for a group named ``bad``; else each member's name, torch threads (the launcher's
    process) or ``TORCH_NUM_THREADS`` (a worker, which never imports torch here) and pid."""
    if members[0][0] == "bad":
        raise ValueError("this group cannot train")
    torch = sys.modules.get("torch")
    threads = str(torch.get_num_threads()) if torch else os.environ.get("TORCH_NUM_THREADS")
    return [{"member": c, "threads": threads, "pid": os.getpid()} for c, _ in members]


def train_until_sigterm(members: list[tuple[Any, Path]], resume_from: Any = None) -> list[Any]:
    """``quick``: returns at once; else trains until SIGTERM as ``train_ensemble`` does (its
    handler, a SIGTERM noted before it counts, then exit 143), with files saying so."""
    if members[0][0] == "quick":
        return []
    got: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: got.append(1))
    if getattr(previous, "received", False):
        got.append(1)
    try:
        (members[0][1] / "started").touch()
        while not got:
            time.sleep(0.02)
        (members[0][1] / "saved").touch()
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise SystemExit(143)
