"""Ensemble groups trained in parallel worker processes: ``hydra.launcher.n_jobs``.

The launcher prepares every member in its own process (Hydra's ``run_job``: run dir, ``.hydra/``,
``attempts.jsonl``) and only the ``train_ensemble`` calls run in parallel, on up to ``n_jobs``
workers (joblib's meaning: -1 = all cores, -2 = all but one, ...), the largest group first. The
launcher's process is one of them: it trains the first group itself (it has torch loaded already)
and takes any group no worker has started, so ``n_jobs`` groups train at once in ``n_jobs``
processes. Each runs torch on ``cores // n_jobs`` threads unless ``TORCH_NUM_THREADS`` is set: the
rule of joblib's sweep jobs (``project.train.threads``), so a member's thread count (hence its
float rounding) follows ``n_jobs``, not how many groups the sweep happened to form. One worker or
one group: no pool, every group trains in this process as before.

Workers are spawned (``multiprocessing.get_context("spawn")``), not forked: forking a process
whose torch has started its thread pools can deadlock the child. A spawned worker imports torch
and Lightning itself (seconds, once per worker, started while the launcher prepares the groups);
``concurrent.futures`` rather than loky/joblib: the standard library, and a group is one long task
where loky's worker reuse and memmapping buy nothing.

A group whose training raises is an outcome like any other: the launcher marks its jobs FAILED
(Hydra's ``JobReturn``, as the basic launcher does), the other groups go on, and the sweeper raises
after the batch. SIGTERM to the launcher reaches every worker (a shared event; each worker sends
itself SIGTERM): a training group finishes its epoch and saves as in-process (``train_ensemble``),
a group not yet started does not start, and the launcher exits 143 once all have stopped. While
the launcher's process trains a group itself, that group's handler holds the signal: the workers
hear it when that group has saved, at its epoch's end.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from project.train.threads import cpu_cores, effective_jobs, threads_per_job

Members = Sequence[tuple[Any, Path]]  # (composed config, run dir) per member
Target = Callable[..., list[dict[str, Any]]]  # train_ensemble(members, resume_from=...)
Outcome = list[dict[str, Any]] | BaseException  # the members' summaries, or what the group raised


class GroupRunner:
    """Train groups in this process only (one worker) or here and in ``workers - 1`` spawned ones.

    ``submit(key, members, resume_from)`` hands a group over (in-process alone: trains it now);
    ``outcomes()`` trains this process's share, waits for the rest and returns
    ``{key: Outcome}``; after a SIGTERM it raises ``SystemExit(143)`` once every worker has
    stopped. Use as a context manager (the pool closes on exit)."""

    def __init__(self, n_jobs: int | None, n_groups: int, target: Target | None = None) -> None:
        cores = cpu_cores()
        self.workers = min(effective_jobs(n_jobs, cores), n_groups)  # this process counts as one
        self.threads = threads_per_job(n_jobs, cores)
        self.target = target
        self.pool: ProcessPoolExecutor | None = None
        self.first: tuple[Any, Members, Sequence[Path | None]] | None = None
        self.futures: dict[Any, tuple[Future[list[dict[str, Any]]], Members, Any]] = {}
        self.done: dict[Any, Outcome] = {}
        self.terminated = False
        self._previous: Any = None

    def __enter__(self) -> GroupRunner:
        if self.workers > 1:
            ctx = multiprocessing.get_context("spawn")
            self._stop = ctx.Event()
            self.pool = ProcessPoolExecutor(
                self.workers - 1, mp_context=ctx, initializer=_init_worker, initargs=(self._stop,)
            )
            for _ in range(self.workers - 1):  # started now: torch loads while groups are prepared
                self.pool.submit(_warm, self.target)
            if threading.current_thread() is threading.main_thread():
                self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if not self.terminated:  # set first, so a second signal never re-enters the event's lock
            self.terminated = True
            self._stop.set()

    def submit(self, key: Any, members: Members, resume_from: Sequence[Path | None]) -> None:
        if self.terminated:  # SIGTERM while preparing: nothing new starts
            return
        if self.pool is None:
            self._train_here(key, members, resume_from)
        elif self.first is None:  # this process's: it starts while the workers still load torch
            self.first = (key, members, resume_from)
        else:
            args = (self.threads, self.target, list(members), list(resume_from))
            future = self.pool.submit(_train_in_worker, *args)
            self.futures[key] = (future, members, resume_from)

    def outcomes(self) -> dict[Any, Outcome]:
        if self.first is not None and not self.terminated:
            self._train_here(*self.first)
        for key, (future, members, resume_from) in self.futures.items():  # the largest first
            if not self.terminated and future.cancel():  # not started yet: this process takes it
                self._train_here(key, members, resume_from)
        for key, (future, _, _) in self.futures.items():
            if key not in self.done:
                try:
                    self.done[key] = future.result()
                except BaseException as exc:  # noqa: BLE001  SystemExit too: the others finish
                    self.done[key] = exc
        stopped = any(isinstance(e, SystemExit) and e.code == 143 for e in self.done.values())
        if self.terminated or stopped:
            raise SystemExit(143)
        return self.done

    def _train_here(self, key: Any, members: Members, resume_from: Sequence[Path | None]) -> None:
        """Train a group in this process: with the workers' thread count when there is a pool."""
        threads = None
        if self.pool is not None and "TORCH_NUM_THREADS" not in os.environ:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        try:
            self.done[key] = _target(self.target)(members, resume_from=resume_from)
        except Exception as exc:  # noqa: BLE001  the group fails; the next ones still train
            self.done[key] = exc
        except SystemExit as exc:
            if self.pool is None:
                raise  # in-process alone: as before (SIGTERM: 143 at once)
            self.done[key] = exc
            if exc.code == 143 and not self.terminated:  # SIGTERM, caught by train_ensemble here
                self.terminated = True  # now the workers hear it
                self._stop.set()
        finally:
            if threads is not None:
                import torch

                torch.set_num_threads(threads)


def _target(target: Target | None) -> Target:
    if target is None:
        from project.ensemble.train import train_ensemble

        return train_ensemble
    return target


class _Received:
    """A worker's SIGTERM handler between groups: notes the signal (``received``), which
    ``train_ensemble``'s handler reads when it takes over, so a SIGTERM during start-up counts."""

    received = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.received = True


_HANDLER = _Received()
_STOP: Any = None


def _warm(target: Target | None) -> None:
    """Load the target's modules (``train_ensemble``: torch and Lightning) before the first group
    comes (a given target's module was imported to unpickle it)."""
    _target(target)


def _init_worker(stop: Any) -> None:
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGTERM, _HANDLER)

    def relay() -> None:  # the launcher's SIGTERM, as a signal to this worker's main thread
        stop.wait()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=relay, daemon=True).start()


def _train_in_worker(
    threads: int, target: Target | None, members: Members, resume_from: Sequence[Path | None]
) -> list[dict[str, Any]]:
    if _HANDLER.received or (_STOP is not None and _STOP.is_set()):
        raise SystemExit(143)  # stopped before this group started: it does not start
    # read by train_ensemble (limit_threads_per_job), as an explicit TORCH_NUM_THREADS would be
    os.environ.setdefault("TORCH_NUM_THREADS", str(threads))
    return _target(target)(members, resume_from=resume_from)
