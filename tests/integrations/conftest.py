"""Helpers for the integration tests: tiny training settings and a real rclone WebDAV server."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import SMALL

# a tiny model: a few seconds per run even on a loaded 2-core machine
TINY = [
    *SMALL,
    "model.net.d_model=32",
    "model.net.n_heads=2",
    "model.net.d_mlp=64",
    "trainer.max_epochs=3",
    "callbacks.snapshots.every_n_epochs=0",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rclone serve exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"rclone serve did not listen on {port}")


class WebDav:
    """``rclone serve webdav`` on loopback plus an rclone config file naming it as remotes."""

    def __init__(self, root: Path) -> None:
        self.served = root / "served"
        self.served.mkdir()
        self.port, self.ro_port, self.dead_port = free_port(), free_port(), free_port()
        self.config = root / "rclone.conf"
        self.config.write_text(
            "".join(
                f"[{name}]\ntype = webdav\nurl = http://127.0.0.1:{port}\nvendor = other\n\n"
                for name, port in (
                    ("dav", self.port),
                    ("davro", self.ro_port),
                    ("down", self.dead_port),
                )
            )
        )
        env = {**os.environ, "RCLONE_CONFIG": str(self.config)}
        self.procs = [
            subprocess.Popen(
                [
                    "rclone",
                    "serve",
                    "webdav",
                    str(self.served),
                    "--addr",
                    f"127.0.0.1:{port}",
                    *extra,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port, extra in ((self.port, []), (self.ro_port, ["--read-only"]))
        ]
        for proc, port in zip(self.procs, (self.port, self.ro_port), strict=True):
            wait_for_port(port, proc)

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def webdav(tmp_path_factory: pytest.TempPathFactory):
    server = WebDav(tmp_path_factory.mktemp("webdav"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RCLONE_CONFIG", str(server.config))
        yield server
    server.close()


def main_in_process(*argv: str) -> None:
    """``python -m project.train.run <argv>`` in this process (e.g. a resume into its run dir)."""
    import sys

    from project.train import run as run_module
    from project.train.rundir import _CLAIMED

    saved = sys.argv
    sys.argv = ["project.train.run", *argv]
    _CLAIMED.clear()
    try:
        run_module.main()
    finally:
        sys.argv = saved
        _CLAIMED.clear()
