"""Training entrypoint: compose -> validate -> instantiate -> fit -> artifacts.

    uv run python -m project.train.run [hydra overrides]

Validation (``preflight``) runs before Hydra creates the run dir; a bad value exits 2 with one
line per problem and leaves nothing behind.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.utils import create_config_search_path
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, read_write

from project.build import (
    BuildError,
    build_callbacks,
    building,
    fill_net_sizes,
    instantiate_task,
    load_init_weights,
)
from project.loggers import build_loggers, redact_secrets
from project.summary import run_objective
from project.train.preflight import CONFIG_DIR, VALIDATED, Sweep, config_key, prepare, sweep_key
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
    """Rank from the launcher's environment, for what happens before the Trainer exists (once it
    does, ``trainer.is_global_zero`` is Lightning's answer)."""
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
    checked = config_key(cfg) in VALIDATED  # else a job the preflight did not see (joblib, API)
    if not checked and (errors := validate_config(cfg)):
        reject([str(err) for err in errors], run_dir)
    limit_threads_per_job()  # joblib sweeps: jobs x threads <= cores
    # sweeps: skip a finished job, resume an interrupted one from its last.ckpt
    plan = plan_job(cfg, run_dir, record=is_global_zero())
    if plan.skip:
        return plan.metrics

    L.seed_everything(cfg.seed, workers=False, verbose=False)
    try:  # a class's own error (checks the preflight cannot run, e.g. the Trainer's): one line
        with building("data", cfg.data):
            datamodule = instantiate_task(cfg)
        with building("model.net", OmegaConf.select(cfg, "model.net")):
            fill_net_sizes(cfg, datamodule)  # model.net.{d_vocab,n_ctx,d_vocab_out} from the task
        with building("model", cfg.model):
            module = hydra.utils.instantiate(cfg.model)
        init_from = OmegaConf.select(cfg, "run.init_from")
        if init_from and not (plan.ckpt_path or cfg.run.ckpt_path):  # a resume has its weights
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


def run_task(cfg: DictConfig) -> float:
    """The job: train, then the sweeper's objective (``optimized_metric``, else epochs to the
    threshold)."""
    train(cfg)
    run_dir = HydraConfig.get().runtime.output_dir
    return run_objective(run_dir, cfg.trainer.get("max_epochs"), cfg.get("optimized_metric"))


_hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")(run_task)


def run_composed(cfg: DictConfig) -> None:
    """What Hydra's ``Hydra.run`` does for a single run, on the config the preflight composed and
    checked (so the command line is composed once): run dir, ``.hydra/``, logging, callbacks."""
    from hydra import initialize_config_dir
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.utils import run_and_report
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import configure_log, run_job
    from hydra.types import HydraContext, RunMode

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="run"):
        configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
        with read_write(cfg.hydra):  # as Hydra's main records a single run
            cfg.hydra.mode = RunMode.RUN
            cfg.hydra.overrides.hydra.append("hydra.mode=RUN")
        callbacks = Callbacks(cfg)
        context = HydraContext(GlobalHydra.instance().config_loader(), callbacks)

        def run() -> None:
            callbacks.on_run_start(config=cfg, config_name=cfg.hydra.job.config_name)
            ret = run_job(run_task, cfg, "hydra.run.dir", None, hydra_context=context)
            callbacks.on_run_end(config=cfg, config_name=cfg.hydra.job.config_name, job_return=ret)
            _ = ret.return_value  # the job's exception, raised

        run_and_report(run)


class ComposedOnceLoader(ConfigLoaderImpl):
    """Hydra's config loader, handing a sweep job the config the preflight composed and checked
    for the same overrides (so a job is composed once), recorded as Hydra's own loader records
    it; a job the preflight did not compose (an Optuna trial, past the first 256) is composed."""

    def __init__(self, sweep: Sweep) -> None:
        super().__init__(create_config_search_path(CONFIG_DIR))
        self.sweep = sweep

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        hydra_overrides = list(master_config.hydra.overrides.hydra)
        key = sweep_key(self.sweep.config_name, [*hydra_overrides, *sweep_overrides])
        if key not in self.sweep.composed:
            return super().load_sweep_config(master_config, sweep_overrides)
        cfg = copy.deepcopy(self.sweep.composed[key])
        parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
        names = cfg.hydra.job.config.override_dirname
        with read_write(cfg.hydra):  # as the sweeper writes them (lr=1e-2 is lr=0.01 there)
            cfg.hydra.overrides.hydra = hydra_overrides
            cfg.hydra.overrides.task = list(sweep_overrides)
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                parsed, names.exclude_keys, names.item_sep, names.kv_sep
            )
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)  # as Hydra's loader does
        return cfg


def run_sweep(sweep: Sweep) -> None:
    """What Hydra's main does for a multirun (sweeper, launcher, callbacks), each job handed the
    config the preflight composed and checked (``ComposedOnceLoader``)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import run_and_report
    from hydra.core.global_hydra import GlobalHydra

    app = Hydra(task_name="run", config_loader=ComposedOnceLoader(sweep))
    GlobalHydra.instance().initialize(app)
    try:
        run_and_report(lambda: app.multirun(sweep.config_name, run_task, sweep.overrides))
    finally:
        GlobalHydra.instance().clear()


def main() -> None:
    register_resolvers()
    argv, composed = prepare(sys.argv[1:])
    sys.argv = [sys.argv[0], *argv]  # Lightning's DDP launcher starts each rank with sys.argv
    if isinstance(composed, Sweep):
        run_sweep(composed)
    elif composed is not None:
        run_composed(composed)
    else:  # --cfg, --help, ...: Hydra composes
        _hydra_main()


if __name__ == "__main__":
    main()
