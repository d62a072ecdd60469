"""Torch threads per sweep job, so parallel jobs do not oversubscribe the CPU cores.

With ``hydra/launcher=joblib hydra.launcher.n_jobs=N`` each job runs
``torch.set_num_threads(max(1, cores // N))`` (``cores`` = CPUs this process may use; ``N <= 0``
counts as joblib does: -1 = all cores, -2 = all but one, ...), so that jobs x threads <= cores.
An explicit ``TORCH_NUM_THREADS`` environment variable wins. Other launchers and single runs are
left alone.
"""

from __future__ import annotations

import os


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def effective_jobs(n_jobs: int | None, cores: int) -> int:
    """joblib's meaning of ``n_jobs`` (None = 1, -1 = all cores, -2 = all but one, ...)."""
    if n_jobs is None or n_jobs == 0:
        return 1
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


def threads_per_job(n_jobs: int | None, cores: int) -> int:
    return max(1, cores // effective_jobs(n_jobs, cores))


def limit_threads_per_job() -> int | None:
    """Set torch's intra-op threads for a joblib sweep job; returns the number set (or None)."""
    import torch
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if explicit := os.environ.get("TORCH_NUM_THREADS"):
        torch.set_num_threads(max(1, int(explicit)))
        return torch.get_num_threads()
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")):
        return None
    threads = threads_per_job(launcher.get("n_jobs"), cpu_cores())
    torch.set_num_threads(threads)
    return threads
