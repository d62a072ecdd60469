"""``hydra/launcher=ensemble``: a multirun's jobs that differ only in ensemble-able values train
together (``project.ensemble``; groups in parallel worker processes, ``n_jobs``); every other job
runs as the basic launcher runs it. The work is in ``project.ensemble.launch``; this module is
only what Hydra discovers (no ``from __future__ import annotations``: Hydra loads plugin modules
outside ``sys.modules``, where a dataclass cannot resolve string annotations).

The options are :class:`EnsembleLauncherConf`; they are checked by the launcher itself when the
sweeper sets it up, before any job runs or any dir is made (:func:`option_errors`): an unknown
option, a value of the wrong type or out of range is one line naming the key, the value and what
is allowed (``hydra.launcher.max_members=0 is invalid: allowed an integer >= 1 ...``), exit 2.
"""

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class EnsembleLauncherConf:
    _target_: str = "hydra_plugins.project_ensemble_launcher.ensemble_launcher.EnsembleLauncher"
    max_members: int = 64  # members per vectorised group (a larger group is split)
    min_members: int = 2  # a group smaller than this runs its jobs one by one, as usual
    # groups trained at once, each in a worker process with cores // n_jobs torch threads
    # (joblib's meaning: -1 = all cores, -2 = all but one; 1 = one after the other, in-process)
    n_jobs: int = -1


# what each option allows: (predicate on an int, the words of the error line)
ALLOWED = {
    "max_members": (lambda v: v >= 1, "an integer >= 1 (members per vectorised group)"),
    "min_members": (
        lambda v: v >= 1,
        "an integer >= 1 (a smaller group runs its jobs one by one)",
    ),
    "n_jobs": (
        lambda v: v != 0,
        "a non-zero integer (groups trained at once: 1, 2, ...; -1 = all cores, "
        "-2 = all but one, ...)",
    ),
}
OPTIONS = [f.name for f in dataclasses.fields(EnsembleLauncherConf) if f.name != "_target_"]


class LauncherOptionError(HydraException):
    """A ``hydra.launcher.*`` value the ensemble launcher cannot take (one line per problem)."""


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def option_errors(options: dict[str, Any]) -> list[str]:
    """One line per bad ``hydra.launcher.<key>``: unknown keys (with the launcher's options and a
    did-you-mean), values that are not integers or are out of range."""
    lines = []
    for key, value in options.items():
        shown = f"hydra.launcher.{key}={_show(value)}"
        if key not in ALLOWED:
            close = difflib.get_close_matches(key, OPTIONS, n=1)
            hint = f"did you mean hydra.launcher.{close[0]}? " if close else ""
            lines.append(
                f"{shown} is invalid: the ensemble launcher has no option {key!r}; {hint}"
                f"its options: {', '.join(OPTIONS)}"
            )
            continue
        check, allowed = ALLOWED[key]
        if isinstance(value, bool) or not isinstance(value, int) or not check(value):
            lines.append(f"{shown} is invalid: allowed {allowed}")
    return lines


def _node() -> DictConfig:
    """The registered config: the dataclass' defaults as a plain mapping, open to unknown keys (the
    launcher reports them itself, with its options, instead of Hydra's advice to add them with
    ``+``, which a launcher that has no such option cannot take)."""
    node = OmegaConf.create(dataclasses.asdict(EnsembleLauncherConf()))
    OmegaConf.set_struct(node, False)  # its own flag: not inherited from Hydra's struct root
    return node


ConfigStore.instance().store(group="hydra/launcher", name="ensemble", node=_node(),
                             provider="project")  # fmt: skip


class EnsembleLauncher(Launcher):
    def __init__(
        self, max_members: Any = 64, min_members: Any = 2, n_jobs: Any = -1, **unknown: Any
    ) -> None:
        given = {"max_members": max_members, "min_members": min_members, "n_jobs": n_jobs}
        self.errors = option_errors({**given, **unknown})  # raised by setup: one line each
        if not self.errors:
            self.max_members, self.min_members, self.n_jobs = max_members, min_members, n_jobs
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        if self.errors:  # before the sweeper makes the sweep dir or runs any job
            raise LauncherOptionError("; ".join(self.errors))
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        from project.ensemble.launch import launch

        return launch(self, job_overrides, initial_job_idx)
