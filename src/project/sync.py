"""Copy run dirs to cloud storage with the real ``rclone`` binary.

``RCLONE_DEST`` (environment) names the destination: a configured remote plus a path
(``gdrive:runs``, ``s3:bucket/runs``; set up once with ``rclone config``) or a local path
(``/mnt/nas/runs``). After ``trainer.fit()`` the run dir is copied to
``$RCLONE_DEST/<remote_name(run_dir)>/`` on rank zero.

* ``check_rclone_dest()`` runs at start-up (preflight): a missing binary, an unknown remote or an
  unreachable destination is reported before training, as one line.
* ``copy_run_dir()`` never raises: a failed transfer returns a ``SyncResult`` that carries
  rclone's exit code and error text; the local run is never touched (rclone only reads it).
* ``start_copy()`` starts the same copy in the background (``subprocess.Popen``, low priority) for
  the periodic sync of ``callbacks/cloud_sync.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "RCLONE_DEST"
# fail fast on a dead server instead of retrying for minutes
_QUICK = ["--contimeout", "5s", "--timeout", "20s", "--retries", "1", "--low-level-retries", "1"]
_COPY = [
    "--exclude",
    ".*.tmp",  # atomic checkpoint writes in flight (callbacks/checkpoints.py)
    "--contimeout",
    "10s",
    "--timeout",
    "60s",
    "--retries",
    "3",
    "--low-level-retries",
    "3",
]
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class SyncResult:
    """Outcome of one copy: ``ok``; ``returncode`` (rclone's, or -1 when it could not start)."""

    ok: bool
    dest: str
    returncode: int
    error: str = ""

    def line(self) -> str:
        """One summary line: ``sync: ok -> dest`` or ``sync: FAILED (rclone exit N) ...``."""
        if self.ok:
            return f"sync: ok -> {self.dest}"
        return f"sync: FAILED (rclone exit {self.returncode}) -> {self.dest}: {self.error}"


def rclone_binary() -> str | None:
    return shutil.which("rclone")


def is_remote(dest: str) -> bool:
    """``name:path`` is an rclone remote; ``/abs``, ``./rel`` and ``C:\\x`` are local paths."""
    name, sep, _ = dest.partition(":")
    if not sep or "/" in name or "\\" in name:
        return False
    return not (len(name) == 1 and os.name == "nt")


def remote_name(run_dir: str | Path) -> str:
    """Unique flat name of a run dir at the destination.

    ``outputs/2025-01-02/10-11-12-foo`` -> ``2025-01-02_10-11-12-foo``;
    sweep job ``multirun/2025-01-02/10-11-12/3`` -> ``2025-01-02_10-11-12_3``.
    """
    run_dir = Path(run_dir).absolute()
    parts = [run_dir.name]
    if (run_dir.parent / "multirun.yaml").is_file() or _DATE.match(run_dir.parent.parent.name):
        parts = [run_dir.parent.parent.name, run_dir.parent.name, run_dir.name]
    elif _DATE.match(run_dir.parent.name):
        parts = [run_dir.parent.name, run_dir.name]
    return "_".join(parts)


def dest_for(run_dir: str | Path, dest: str) -> str:
    return f"{dest.rstrip('/')}/{remote_name(run_dir)}" if dest.rstrip("/") else dest


def _last_error(stderr: str) -> str:
    """rclone's most telling error line(s), without timestamps."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR" in ln or "Failed" in ln or "error" in ln.lower()]
    picked = (errors or lines or ["no output"])[-1]
    return re.sub(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} ", "", picked)


def _not_local_rank_zero() -> bool:
    return int(os.environ.get("LOCAL_RANK", 0)) != 0 or int(os.environ.get("NODE_RANK", 0)) != 0


def check_rclone_dest(dest: str | None = None, timeout: float = 30.0) -> str | None:
    """Problem with ``dest`` (default ``$RCLONE_DEST``) as one line, or None when it is usable.

    Checks: rclone is installed; ``remote:`` is in ``rclone listremotes``; the destination answers
    (``rclone lsf``; a path that does not exist yet is fine, rclone creates it). Unset -> None.
    Only the first process of a (multi-process) job checks.
    """
    dest = os.environ.get(ENV_VAR) if dest is None else dest
    if not dest or _not_local_rank_zero():
        return None
    prefix = f"{ENV_VAR}={dest!r} is invalid:"
    hint = f"(fix it, or unset {ENV_VAR} to train without sync)"
    if not dest.strip() or dest != dest.strip():
        return (
            f"{prefix} allowed a remote:path or a local directory without surrounding blanks {hint}"
        )
    if not is_remote(dest):
        from project.utils.paths import unwritable

        if problem := unwritable(Path(dest)):
            return f"{prefix} allowed a local directory rclone can create ({problem}) {hint}"
    binary = rclone_binary()
    if binary is None:
        return (
            f"{prefix} the rclone binary is not on PATH; install it (apt-get install rclone) {hint}"
        )
    if is_remote(dest):
        name = dest.partition(":")[0]
        try:
            out = subprocess.run(
                [binary, "listremotes"], capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return f"{prefix} 'rclone listremotes' did not answer in {timeout:.0f} s {hint}"
        remotes = [r.strip().rstrip(":") for r in out.stdout.splitlines() if r.strip()]
        if name not in remotes:
            known = ", ".join(remotes) or "none configured"
            return (
                f"{prefix} remote '{name}:' is not configured (rclone listremotes: {known}); "
                f"create it once with 'rclone config' {hint}"
            )
    try:
        probe = subprocess.run(
            [binary, "lsf", "--max-depth", "1", "--dirs-only", *_QUICK, "--", dest],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"{prefix} destination did not answer within {timeout:.0f} s {hint}"
    if probe.returncode != 0 and "directory not found" not in probe.stderr:
        return f"{prefix} not reachable: {_last_error(probe.stderr)} {hint}"
    return None


def copy_run_dir(run_dir: str | Path, dest: str, timeout: float | None = None) -> SyncResult:
    """``rclone copy <run_dir> <dest>/<remote_name>``; never raises, never modifies ``run_dir``."""
    target = dest_for(run_dir, dest)
    binary = rclone_binary()
    if binary is None:
        return SyncResult(False, target, -1, "the rclone binary is not on PATH")
    try:
        proc = subprocess.run(
            [binary, "copy", *_COPY, "--", str(run_dir), target],  # a dest is never a flag
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return SyncResult(False, target, -1, f"timed out after {timeout} s")
    except OSError as exc:
        return SyncResult(False, target, -1, str(exc))
    if proc.returncode != 0:
        return SyncResult(False, target, proc.returncode, _last_error(proc.stderr))
    return SyncResult(True, target, 0)


class BackgroundCopy:
    """One ``rclone copy`` running in the background at low CPU priority (never waited on)."""

    def __init__(self, run_dir: str | Path, dest: str) -> None:
        self.target = dest_for(run_dir, dest)
        # a file, not a pipe: a full pipe would block rclone
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in poll/stop)
        binary = rclone_binary()
        if binary is None:
            self.proc = None
            return
        self.proc = subprocess.Popen(
            [binary, "copy", *_COPY, "--", str(run_dir), self.target],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            preexec_fn=_lower_priority if os.name == "posix" else None,
        )

    def poll(self) -> SyncResult | None:
        """None while running; the result once finished."""
        if self.proc is None:
            return SyncResult(False, self.target, -1, "the rclone binary is not on PATH")
        code = self.proc.poll()
        if code is None:
            return None
        self._log.seek(0)
        err = "" if code == 0 else _last_error(self._log.read())
        self._log.close()
        return SyncResult(code == 0, self.target, code, err)

    def stop(self) -> None:
        """Terminate a copy still in flight (the final copy after fit supersedes it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()


def _lower_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(10)
