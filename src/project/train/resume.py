"""Resuming a run: ``run.ckpt_path=<run dir>/checkpoints/last.ckpt`` continues that run in its
own dir with its own overrides (``resume_argv``); ``run.init_from`` starts a new run from a run's
weights, built the same. The stored overrides are replayed as plain data only
(``project.stored.replay_overrides``). Sweep jobs resume by themselves: ``sweep_jobs``.
"""

from __future__ import annotations

import os
from pathlib import Path

from project.summary import read_summary, summary_problem


class ResumeError(Exception):
    """A resume that cannot go on, as one line (``code``: the exit code)."""

    def __init__(self, line: str, code: int = 2) -> None:
        super().__init__(line)
        self.code = code


def _last_value(overrides: list[str], key: str) -> str | None:
    value = None
    for override in overrides:
        k, sep, v = override.lstrip("+~").partition("=")
        if sep and k == key:
            value = v
    if value and len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]  # a quoted path: run.ckpt_path='.../epoch=000400.ckpt'
    return None if value in (None, "null") else value


def resume_argv(argv: list[str]) -> list[str]:
    """The command line with a run's stored overrides in front when ``run.ckpt_path`` (resume it
    in its own dir) or ``run.init_from`` (a new run from its weights, built the same) names a
    checkpoint inside a run dir; this command line's overrides still win. What is replayed is
    plain data only (``project.stored.replay_overrides``); a refused override, a run dir with a
    symlink leaving it, or a finished run is a ``ResumeError``."""
    ckpt = _last_value(argv, "run.ckpt_path")
    new_run = ckpt is None
    path = _last_value(argv, "run.init_from") if new_run else ckpt
    if path is None or _last_value(argv, "hydra.run.dir") is not None:
        return argv
    from project.stored import (
        StoredDataError,
        check_no_escaping_links,
        find_run_dir,
        replay_overrides,
    )

    run_dir = find_run_dir(path)
    if run_dir is None:
        return argv
    try:
        if not new_run:
            check_no_escaping_links(run_dir)
        given = {a.lstrip("+~").partition("=")[0] for a in argv if "=" in a}
        replayed = replay_overrides(run_dir, keep_name=not new_run, given=given)
    except StoredDataError as exc:
        raise ResumeError(str(exc)) from None
    if not new_run:  # a damaged checkpoint is reported as such, even for a finished run
        from project.checkpoint import checkpoint_problem

        if problem := checkpoint_problem(path):
            raise ResumeError(f"run.ckpt_path={path!r} is invalid: allowed {problem}")
    if not new_run and (done := _finished(run_dir, argv)):
        raise ResumeError(done, code=0)
    if not new_run:
        _claim(run_dir)
    flags = [a for a in argv if a.startswith("-")]
    rest = [a for a in argv if not a.startswith("-")]
    tail = [] if new_run else [f"hydra.run.dir={run_dir}"]
    return [*flags, *replayed, *rest, *tail]


_HELD: list[object] = []  # the open lock file of the run this process resumes


def _claim(run_dir: Path) -> None:
    """Refuse a resume into a run dir it cannot write, or one another process is training.

    The lock is ``fcntl.flock`` on ``.hydra/train.lock``, held until this process exits: the
    kernel drops it with the process, so a ``kill -9`` cannot leave it stale."""
    import fcntl

    from project.utils.paths import unwritable

    targets = [run_dir, run_dir / ".hydra", run_dir / "checkpoints"]
    targets += [p for p in (run_dir / "run.log", run_dir / "summary.json") if p.exists()]
    for target in targets:
        if target.exists() and (
            unwritable(target) if target.is_dir() else not os.access(target, os.W_OK)
        ):
            raise ResumeError(
                f"run.ckpt_path: run dir {run_dir} is invalid: allowed a run dir this user can "
                f"write ({target} is read-only); a resume writes into it (copy it first: "
                f"cp -r {run_dir} <new dir>)"
            )
    lock = (run_dir / ".hydra" / "train.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise ResumeError(
            f"run.ckpt_path: run dir {run_dir} is being trained by another process (pid "
            f"{holder}); allowed: one resume at a time (wait for it, or stop it first)"
        ) from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    _HELD.append(lock)


def _finished(run_dir: Path, argv: list[str]) -> str | None:
    """The line for rerunning a finished run's resume command with the same ``max_epochs``."""
    if problem := summary_problem(run_dir):  # unreadable: whether it finished is unknown
        raise ResumeError(f"run.ckpt_path: {problem} (fix or remove it to resume the run)")
    record = read_summary(run_dir)
    if record is None or record.status != "finished":
        return None
    asked = _last_value(argv, "trainer.max_epochs")
    if asked is not None and asked != str(record.epochs):
        return None
    return (
        f"run {run_dir} is finished ({record.epochs} epochs; summary.json): nothing to do, the "
        "run is left as it is (raise trainer.max_epochs to train on)"
    )
