"""Training entrypoint: Hydra composes -> check -> instantiate -> fit -> record.

    uv run python -m project.train.run [hydra overrides]

The job checks its config first (``project.train.checks``); a bad value is one line per problem,
exit 2, and the run dir Hydra made for it is removed. A sweep job checks itself when it starts.
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
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from project.build import (
    BuildError,
    build_callbacks,
    build_loggers,
    building,
    fill_net_sizes,
    instantiate_task,
    load_init_weights,
    redact_secrets,
)
from project.train.checks import CONFIG_DIR, config_errors, memory_problem
from project.train.rundir import discard_run_dir, register_resolvers

log = logging.getLogger("project.train")


def report_error(line: str) -> None:  # on stderr, and in run.log once Hydra has set up logging
    print(f"error: {line}", file=sys.stderr)
    log.error(line)


def is_global_zero() -> bool:
    """Rank from the launcher's environment, for what happens before the Trainer exists (once it
    does, ``trainer.is_global_zero`` is Lightning's answer)."""
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ and not (key == "SLURM_PROCID" and "LOCAL_RANK" in os.environ):
            return int(os.environ[key]) == 0
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
    return node == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def reject(lines: list[str], run_dir: Path | None, started: bool = False) -> NoReturn:
    """A bad config: one ``error:`` line per problem, exit 2, the run dir removed (``started``: also
    when training had begun, e.g. a monitored metric never logged)."""
    for line in lines:
        report_error(line)
    if run_dir is not None and is_global_zero():
        discard_run_dir(run_dir, force=started)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise JobRejected(lines[0])  # the sweep's other jobs still run; the command exits 2
    raise SystemExit(2)


class JobRejected(Exception):
    """A sweep job rejected its config (its lines are printed); the other jobs run."""


def train(cfg: DictConfig) -> dict[str, float]:
    """Train one run in Hydra's run dir; returns the final logged metrics."""
    import lightning as L

    from project.callbacks.checkpoints import AtomicCheckpointIO, CheckpointWriteError
    from project.callbacks.epoch_log import capture_warnings
    from project.callbacks.preemption import preempted_exit
    from project.callbacks.run_summary import MonitorNotLoggedError, RunSummary
    from project.checkpoint import completed_epochs, read_checkpoint
    from project.lit_module import ConfigValueError, NonFiniteLossError

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    capture_warnings()  # run.log gets every warning too
    if errors := config_errors(cfg):  # the task's own range checks too, unless its keys failed
        if not any(e.startswith(("data.", "seed=")) for e in errors):
            try:
                with building("data", cfg.data):
                    instantiate_task(cfg)
            except BuildError as exc:
                errors.append(str(exc))
        reject(errors, run_dir)
    plan = None
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        from project.train.sweep_jobs import plan_job
        from project.train.threads import limit_threads_per_job

        limit_threads_per_job()  # joblib sweeps: jobs x threads <= cores
        # skip a finished job, resume an interrupted one from its last.ckpt
        plan = plan_job(cfg, run_dir, record=is_global_zero())
        if plan.skip:
            return plan.metrics

    L.seed_everything(cfg.seed, workers=False, verbose=False)
    ckpt = (plan.ckpt_path if plan else None) or cfg.run.ckpt_path
    try:  # a class's own error (its range checks, the Trainer's): one line
        with building("data", cfg.data):
            datamodule = instantiate_task(cfg)
        with building("model.net", OmegaConf.select(cfg, "model.net")):
            fill_net_sizes(cfg, datamodule)  # model.net.{d_vocab,n_ctx,d_vocab_out} from the task
            if problem := memory_problem(OmegaConf.select(cfg, "model.net")):
                reject([problem], run_dir)
        with building("model", cfg.model):
            module = hydra.utils.instantiate(cfg.model)
        resumed = read_checkpoint(ckpt) if ckpt else None  # read once: its shapes, its epoch
        if resumed is not None and cfg.run.ckpt_path:
            from project.train.composition import checkpoint_mismatch

            if problem := checkpoint_mismatch(module, resumed, ckpt, cfg):
                reject([problem], run_dir)
        init_from = OmegaConf.select(cfg, "run.init_from")
        if init_from and not ckpt:  # a resume has its weights
            print(line := load_init_weights(module, str(init_from)), flush=True)
            log.info(line)
        with building("logger", cfg.get("logger")):
            loggers = build_loggers(cfg)
        callbacks = build_callbacks(cfg, run_dir, bool(loggers), datamodule)
        with building("trainer", cfg.trainer):
            trainer = hydra.utils.instantiate(
                cfg.trainer,
                logger=loggers or False,
                callbacks=list(callbacks.values()),
                plugins=[AtomicCheckpointIO()],
                default_root_dir=str(run_dir),
            )
    except BuildError as exc:
        reject([str(exc)], run_dir)
    if trainer.is_global_zero:  # Lightning's ranks, set when the Trainer was built
        resolved = redact_secrets(OmegaConf.to_yaml(cfg, resolve=True))  # no API keys on disk
        (run_dir / "resolved_config.yaml").write_text(resolved)

    if resumed is not None:  # readers keep the last row of each epoch; this marks the repeats
        done = completed_epochs(resumed)
        log.info("resumed from %s after epoch %d: epochs after it are run (and logged) again",
                 ckpt, done)  # fmt: skip
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    except NonFiniteLossError as exc:  # last.ckpt is never written from non-finite weights
        log.error(str(exc))
        from project.train.composition import diverged_exit

        raise SystemExit(diverged_exit(run_dir, exc)) from None
    except MonitorNotLoggedError as exc:  # found at the first validation: a config error
        name = next(n for n, cb in callbacks.items() if isinstance(cb, RunSummary))
        reject([f"callbacks.{name}.{exc}"], run_dir, started=not ckpt)
    except ConfigValueError as exc:  # the optimiser's own checks, the net's output shape
        reject([str(exc)], run_dir, started=not ckpt)
    except CheckpointWriteError as exc:  # disk full: the previous checkpoint is intact
        log.error(str(exc))
        from project.train.composition import write_failed_exit

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
def run_task(cfg: DictConfig) -> float:
    """The job: train, then the sweeper's objective (``optimized_metric``, else epochs to the
    threshold)."""
    _STATE["job_started"] = True
    with _users_full_error():  # the job's own errors are reported as the user asked
        train(cfg)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return 0.0  # nobody reads a single run's objective
        from project.train.sweep_jobs import run_objective

        run_dir = HydraConfig.get().runtime.output_dir
        return run_objective(run_dir, cfg.trainer.get("max_epochs"), cfg.get("optimized_metric"))


# main() sets HYDRA_FULL_ERROR=1 so that Hydra raises a composition error to it (one line, exit
# 2) instead of printing its advice; inside a job the user's own setting is back
_STATE: dict[str, Any] = {"job_started": False}


def _set_full_error(value: str | None) -> None:
    if value is None:
        os.environ.pop("HYDRA_FULL_ERROR", None)
    else:
        os.environ["HYDRA_FULL_ERROR"] = value


@contextmanager
def _users_full_error() -> Iterator[None]:
    outside = os.environ.get("HYDRA_FULL_ERROR")
    _set_full_error(_STATE.get("user_full_error", outside))
    try:
        yield
    finally:
        _set_full_error(outside)


def main() -> None:
    """``python -m project.train.run``: a resume's stored overrides first (``resume_argv``), then
    Hydra's own main. A composition error (unknown key, no such config) is one line, exit 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    argv = sys.argv[1:]
    multirun = [a for a in argv if a in ("-m", "--multirun")]  # anywhere, as Hydra's argparse
    argv = [*multirun, *(a for a in argv if a not in multirun)]  # would not take it mid-line
    resuming = any(a.lstrip("+").startswith(("run.ckpt_path=", "run.init_from=")) for a in argv)
    if resuming:
        from project.train.resume import ResumeError, resume_argv

        try:
            argv = resume_argv(argv)
        except ResumeError as exc:
            out = sys.stderr if exc.code else sys.stdout
            print(f"{'error: ' if exc.code else ''}{exc}", file=out)
            raise SystemExit(exc.code) from None
    sys.argv = [sys.argv[0], *argv]  # Lightning's DDP launcher starts each rank with sys.argv
    user = _STATE["user_full_error"] = os.environ.get("HYDRA_FULL_ERROR")
    _STATE["job_started"] = False
    _set_full_error("1")
    try:
        run_task()
    except JobRejected:
        raise SystemExit(2) from None  # its lines were printed by the job
    except (HydraException, OmegaConfBaseException) as exc:
        if _STATE["job_started"] or user == "1":
            raise  # raised by a job, or the user asked for tracebacks
        from project.train.composition import composition_error

        line = composition_error(exc, [a for a in argv if not a.startswith("-")])
        if resuming and "no such config" in line:  # config dirs come from this command line
            line += ("; a resume takes no config dir from the run dir: name yours again, "
                     "hydra.searchpath=[file://<your config dir>]")  # fmt: skip
        print(f"error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception:  # a job's crash (a sweep's failed jobs): its traceback, exit 1, as Hydra
        if user == "1":
            raise
        import traceback

        traceback.print_exc()
        raise SystemExit(1) from None
    finally:
        _set_full_error(user)


if __name__ == "__main__":
    main()
