"""Training entrypoint: compose -> validate -> instantiate -> fit -> artifacts.

    uv run python -m project.train.run [hydra overrides]

Validation (``preflight``) runs before Hydra creates the run dir; a bad value exits 2 with one
line per problem and leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from project.build import error_line, fill_net_sizes, instantiate_task
from project.summary import run_objective
from project.train.loggers import build_loggers, redact_secrets
from project.train.preflight import CONFIG_DIR, run_preflight
from project.train.resume import plan_job
from project.train.rundir import discard_run_dir, register_resolvers
from project.train.threads import limit_threads_per_job
from project.train.validate import validate_config

log = logging.getLogger("project.train")


def report_error(line: str) -> None:
    """``error: <line>`` on stderr and in ``run.log`` (once Hydra has set up logging)."""
    print(f"error: {line}", file=sys.stderr)
    log.error(line)


def is_global_zero() -> bool:
    """Rank from the launcher's environment (valid before the Trainer sets up its strategy)."""
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ and not (key == "SLURM_PROCID" and "LOCAL_RANK" in os.environ):
            return int(os.environ[key]) == 0
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
    return node == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def reject(lines: list[str], run_dir: Path | None, started: bool = False) -> NoReturn:
    """A bad config found inside the run: one ``error:`` line per problem, exit 2, and the run dir
    removed (``started``: a new run that found the problem only once training began, e.g. a
    monitored metric that is never logged; otherwise it holds only Hydra's files)."""
    for line in lines:
        report_error(line)
    if run_dir is not None and is_global_zero():
        discard_run_dir(run_dir, force=started)
    raise SystemExit(2)


@contextmanager
def building(key: str, node: Any, run_dir: Path | None) -> Iterator[None]:
    """A class's own error while building config node ``key`` (checks the preflight cannot run,
    e.g. the Trainer's cross-argument ones) is rejected as one line. ``HYDRA_FULL_ERROR=1``
    re-raises with the traceback."""
    try:
        yield
    except Exception as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        reject([error_line(key, exc, node)], run_dir)


def start_from_weights(module: Any, path: str, run_dir: Path) -> None:
    """``run.init_from``: a new run whose module starts from a checkpoint's weights (a snapshot
    or ``last.ckpt``); the optimiser, schedule and epoch count start fresh. Said on one line."""
    from project.checkpoint import completed_epochs, read_checkpoint

    weights = read_checkpoint(path)
    with building("run.init_from", None, run_dir):
        module.load_state_dict(weights["state_dict"])
    done = completed_epochs(weights)
    line = (
        f"a new run from the weights of {path} (after {done} epoch{'' if done == 1 else 's'}); "
        "the optimiser, schedule and epoch count start fresh"
    )
    print(line, flush=True)
    log.info(line)


def build_callbacks(
    cfg: DictConfig,
    with_loggers: bool = True,
    run_dir: Path | None = None,
    datamodule: Any = None,
) -> dict[str, Any]:
    """The ``callbacks`` group by config name; without loggers, ``LearningRateMonitor`` (which
    needs one) is left out. A callback with a ``check_task(datamodule)`` method checks its
    arguments against the task here, before training (a ``ValueError`` is one line, exit 2).

    Every run has its record: a ``RunSummary`` is added when the config has none (and a
    ``CloudSync`` when ``RCLONE_DEST`` is set). Both come last, ``CloudSync`` after ``RunSummary``:
    its final copy at fit end carries the ``summary.json`` that ``RunSummary`` wrote, and the
    summary is printed after the other callbacks' teardown (a progress bar's last frame)."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    from project.callbacks.cloud_sync import CloudSync
    from project.callbacks.run_summary import RunSummary
    from project.sync import ENV_VAR

    built = {}
    for name, node in (cfg.get("callbacks") or {}).items():
        if node and "_target_" in node:
            with building(f"callbacks.{name}", node, run_dir):
                callback = hydra.utils.instantiate(node)
                if datamodule is not None and callable(getattr(callback, "check_task", None)):
                    callback.check_task(datamodule)
            if with_loggers or not isinstance(callback, LearningRateMonitor):
                built[str(name)] = callback
    if not any(isinstance(cb, RunSummary) for cb in built.values()):
        built["_run_summary"] = RunSummary.untracked()
    if os.environ.get(ENV_VAR) and not any(isinstance(cb, CloudSync) for cb in built.values()):
        built["_cloud_sync"] = CloudSync(str(run_dir or Path.cwd()))

    def last(name: str) -> tuple[bool, bool]:  # a stable sort: only these two move
        return isinstance(built[name], RunSummary | CloudSync), isinstance(built[name], CloudSync)

    order = sorted(built, key=last)
    return {name: built[name] for name in order}


def train(cfg: DictConfig) -> dict[str, float]:
    """Train one run in Hydra's run dir; returns the final logged metrics."""
    import lightning as L

    from project.callbacks.checkpoints import (
        AtomicCheckpointIO,
        CheckpointWriteError,
        diverged_exit,
        write_failed_exit,
    )
    from project.callbacks.epoch_log import capture_warnings
    from project.callbacks.preemption import preempted_exit
    from project.callbacks.run_summary import MonitorNotLoggedError, RunSummary
    from project.lit_module import NonFiniteLossError

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    capture_warnings()  # run.log gets every warning too
    errors = validate_config(cfg)  # again: multirun jobs past the preflight sample, API callers
    if errors:
        reject([str(err) for err in errors], run_dir)
    limit_threads_per_job()  # joblib sweeps: jobs x threads <= cores
    # sweeps: skip a finished job, resume an interrupted one from its last.ckpt
    plan = plan_job(cfg, run_dir, record=is_global_zero())
    if plan.skip:
        return plan.metrics

    L.seed_everything(cfg.seed, workers=False, verbose=False)
    with building("data", cfg.data, run_dir):
        datamodule = instantiate_task(cfg)
    with building("model.net", OmegaConf.select(cfg, "model.net"), run_dir):
        fill_net_sizes(cfg, datamodule)  # model.net.{d_vocab,n_ctx,d_vocab_out} from the task
    with building("model", cfg.model, run_dir):
        module = hydra.utils.instantiate(cfg.model)
    init_from = OmegaConf.select(cfg, "run.init_from")
    if init_from and not (plan.ckpt_path or cfg.run.ckpt_path):  # a resume has its own weights
        start_from_weights(module, str(init_from), run_dir)
    with building("logger", cfg.get("logger"), run_dir):
        loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, bool(loggers), run_dir, datamodule)
    with building("trainer", cfg.trainer, run_dir):
        trainer = hydra.utils.instantiate(
            cfg.trainer,
            logger=loggers or False,
            callbacks=list(callbacks.values()),
            plugins=[AtomicCheckpointIO()],
            default_root_dir=str(run_dir),
        )
    if is_global_zero():
        resolved = redact_secrets(OmegaConf.to_yaml(cfg, resolve=True))  # no API keys on disk
        (run_dir / "resolved_config.yaml").write_text(resolved)

    ckpt = plan.ckpt_path or cfg.run.ckpt_path
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    except NonFiniteLossError as exc:  # last.ckpt is never written from non-finite weights
        log.error(str(exc))
        raise SystemExit(diverged_exit(run_dir, exc)) from None
    except MonitorNotLoggedError as exc:  # found at the first validation: a config error
        name = next(n for n, cb in callbacks.items() if isinstance(cb, RunSummary))
        reject([f"callbacks.{name}.{exc}"], run_dir, started=not ckpt)
    except CheckpointWriteError as exc:  # disk full: the previous checkpoint is intact
        log.error(str(exc))
        raise SystemExit(write_failed_exit(exc)) from None
    except Exception as exc:  # anything else: its line in run.log, the traceback on stderr
        log.error("%s: %s", type(exc).__name__, exc)
        raise

    # summary.json, the final sync and the printed summary: RunSummary and CloudSync at fit end
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if (code := preempted_exit(trainer)) is not None:  # SIGTERM: last.ckpt saved, exit 143
        raise SystemExit(code)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    train(cfg)  # the sweeper's objective: `optimized_metric`, else epochs to the threshold
    run_dir = HydraConfig.get().runtime.output_dir
    return run_objective(run_dir, cfg.trainer.get("max_epochs"), cfg.get("optimized_metric"))


def main() -> None:
    register_resolvers()
    sys.argv = [sys.argv[0], *run_preflight(sys.argv[1:])]
    _hydra_main()


if __name__ == "__main__":
    main()
