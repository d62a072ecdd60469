"""The ``hydra/launcher=ensemble`` launcher's work: pack a multirun's jobs into ensembles.

    uv run python -m project.train.run -m seed=0,1 model.optimizer.weight_decay=1,3 \\
        callbacks.progress_measures.every_n_epochs=0 hydra/launcher=ensemble

Jobs whose configs differ only in ensemble-able values (``members.ENSEMBLE_KEYS``: seed, split
and shuffle seeds, lr, weight decay, scheduler arguments) form a group and train together
(``train.train_ensemble``), at most ``hydra.launcher.max_members`` per group, and groups train
``hydra.launcher.n_jobs`` at a time (``parallel``: the largest first, in this process and spawned
workers; a group that raises marks its jobs failed). A job that cannot be a member
(``members.unsupported``: e.g. progress measures on, Grokfast, another optimiser) or a group
smaller than ``hydra.launcher.min_members`` runs through the normal path after the groups, one
after the other in this process, as the basic launcher runs it. Every job keeps its own numbered
dir with Hydra's ``.hydra/`` files, ``attempts.jsonl`` and the sweeper's objective; a job finished before is
skipped (``project.train.sweep_jobs``); an interrupted group resumes from its members' ``last.ckpt``
when all have one at the same epoch (``ensemble.resume``), else it starts again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from project.ensemble.members import group_key, unsupported


def _record(run_dir: Path, action: str) -> None:
    import torch

    entry = {"action": action, "from_epoch": None, "time": time.time(), "pid": os.getpid()}
    entry.update(torch_threads=torch.get_num_threads(), ensemble=True)
    with (run_dir / "attempts.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")


def plan_groups(
    configs: Sequence[DictConfig], max_members: int, min_members: int
) -> tuple[list[list[int]], dict[int, list[str]]]:
    """Job indices packed into groups (each within ``max_members``, at least ``min_members``),
    and the jobs that run alone with the reasons why."""
    by_key: dict[str, list[int]] = {}
    alone: dict[int, list[str]] = {}
    for i, cfg in enumerate(configs):
        if why := unsupported(cfg):
            alone[i] = why
        else:
            by_key.setdefault(group_key(cfg), []).append(i)
    groups = []
    for members in by_key.values():
        for start in range(0, len(members), max(1, max_members)):
            chunk = members[start : start + max(1, max_members)]
            if len(chunk) >= min_members:
                groups.append(chunk)
            else:
                alone.update({i: [f"a group of {len(chunk)} (min_members={min_members})"]
                              for i in chunk})  # fmt: skip
    return groups, alone


def _cost(configs: Sequence[DictConfig], group: Sequence[int]) -> float:
    """A group's training work, for ordering: members x epochs x the train share of the data
    (``data.frac_train`` when the data config has one)."""
    cfg = configs[group[0]]
    try:
        epochs = float(OmegaConf.select(cfg, "trainer.max_epochs", default=1) or 1)
        frac = float(OmegaConf.select(cfg, "data.frac_train", default=1.0) or 1.0)
    except Exception:  # noqa: BLE001  an unresolvable or odd value: count members only
        epochs, frac = 1.0, 1.0
    return len(group) * epochs * frac


def _fail(ret: Any, run_dir: Path, exc: BaseException) -> None:
    """Mark a member's ``JobReturn`` failed as Hydra's ``run_job`` does (the sweeper raises
    ``exc`` when it reads the result) and say so in the member's ``run.log``."""
    from hydra.core.utils import JobStatus

    ret.status, ret.return_value = JobStatus.FAILED, exc
    with (run_dir / "run.log").open("a") as f:
        f.write(f"error: the ensemble group failed: {exc!r}\n")


def _collector(pending: list[tuple[DictConfig, Path, Path | None]], done: list[Path]) -> Any:
    """A task function that prepares a member inside Hydra's ``run_job`` (run dir, ``.hydra/``,
    logging) and records it in ``pending`` (to train) and ``done`` (every job, in order)."""
    from hydra.core.hydra_config import HydraConfig

    from project.train.checks import config_errors
    from project.train.sweep_jobs import decide

    def collect(task_cfg: DictConfig) -> None:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        if errors := config_errors(task_cfg):
            raise ValueError("; ".join(errors))
        plan = decide(task_cfg, run_dir)
        _record(run_dir, plan.action)
        if not plan.skip:  # resolved now: ${hydra:runtime.output_dir} is this job's dir
            resolved = OmegaConf.create(OmegaConf.to_container(task_cfg, resolve=True))
            assert isinstance(resolved, DictConfig)
            ckpt = Path(plan.ckpt_path) if plan.action == "resume" and plan.ckpt_path else None
            pending.append((resolved, run_dir, ckpt))
        done.append(run_dir)

    return collect


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
    """``Launcher.launch``: returns one ``JobReturn`` per job, in the sweep's order."""
    from hydra.core.utils import JobStatus, configure_log, run_job, setup_globals

    from project.ensemble.parallel import GroupRunner
    from project.train.sweep_jobs import run_objective

    setup_globals()
    config, context = launcher.config, launcher.hydra_context
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    configs = []
    for k, overrides in enumerate(job_overrides):
        cfg = context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = cfg.hydra.job.num = initial_job_idx + k
        configs.append(cfg)
    groups, alone = plan_groups(configs, launcher.max_members, launcher.min_members)
    returns: dict[int, Any] = {}

    def run(i: int, task_function: Any) -> Any:
        ret = run_job(
            hydra_context=context, task_function=task_function, config=configs[i],
            job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir",
        )  # fmt: skip
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
        return ret

    prepared: list[tuple[list[int], dict[int, Path], set[Path]]] = []
    with GroupRunner(launcher.n_jobs, len(groups)) as runner:
        if runner.pool is not None:  # the largest first, so the longest group does not start last
            groups = sorted(groups, key=lambda group: -_cost(configs, group))
        for group in groups:
            nums = ", ".join(str(initial_job_idx + i) for i in group)
            print(f"ensemble: jobs {nums} train together ({len(group)} members)", flush=True)
            pending: list[tuple[DictConfig, Path, Path | None]] = []
            done: list[Path] = []
            dirs: dict[int, Path] = {}
            collect = _collector(pending, done)
            for i in group:
                returns[i] = run(i, collect)
                if len(done) > len(dirs):  # prepared (a job whose preparation raised is not)
                    dirs[i] = done[-1]
            prepared.append((group, dirs, {d for _, d, _ in pending}))
            if pending:  # in a worker when pooled (this process prepares the next group meanwhile)
                members, resume = [(c, d) for c, d, _ in pending], [p for *_, p in pending]
                runner.submit(len(prepared) - 1, members, resume)
        outcomes = runner.outcomes()
    for k, (group, dirs, trained) in enumerate(prepared):
        outcome = outcomes.get(k)
        if isinstance(outcome, BaseException):
            nums = ", ".join(str(initial_job_idx + i) for i in group)
            print(f"ensemble: jobs {nums} failed: {outcome!r}", file=sys.stderr, flush=True)
        for i in group:
            if returns[i].status != JobStatus.COMPLETED:
                continue
            if isinstance(outcome, BaseException) and dirs[i] in trained:
                _fail(returns[i], dirs[i], outcome)
                continue
            max_epochs = OmegaConf.select(configs[i], "trainer.max_epochs")
            metric = OmegaConf.select(configs[i], "optimized_metric")
            returns[i].return_value = run_objective(dirs[i], max_epochs, metric)
    for i, why in sorted(alone.items()):
        print(f"ensemble: job {initial_job_idx + i} runs alone ({'; '.join(why)})", flush=True)
        returns[i] = run(i, launcher.task_function)
    return [returns[i] for i in range(len(configs))]
