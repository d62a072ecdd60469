"""``hydra/launcher=ensemble``: a multirun's jobs that differ only in ensemble-able values train
together (``project.ensemble``; groups in parallel worker processes, ``n_jobs``); every other job
runs as the basic launcher runs it. The work is in ``project.ensemble.launch``; this module is
only what Hydra discovers (no ``from __future__ import annotations``: Hydra loads plugin modules
outside ``sys.modules``, where a dataclass cannot resolve string annotations)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class EnsembleLauncherConf:
    _target_: str = "hydra_plugins.project_ensemble_launcher.ensemble_launcher.EnsembleLauncher"
    max_members: int = 64  # members per vectorised group (a larger group is split)
    min_members: int = 2  # a group smaller than this runs its jobs one by one, as usual
    # groups trained at once, each in a worker process with cores // n_jobs torch threads
    # (joblib's meaning: -1 = all cores, -2 = all but one; 1 = one after the other, in-process)
    n_jobs: int = -1


ConfigStore.instance().store(
    group="hydra/launcher", name="ensemble", node=EnsembleLauncherConf, provider="project"
)


class EnsembleLauncher(Launcher):
    def __init__(self, max_members: int = 64, min_members: int = 2, n_jobs: int = -1) -> None:
        self.max_members, self.min_members, self.n_jobs = int(max_members), int(min_members), n_jobs
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        from project.ensemble.launch import launch

        runs: Sequence[JobReturn] = launch(self, job_overrides, initial_job_idx)
        return runs
