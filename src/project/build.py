"""Build a run's parts from its composed config: the task, the net's sizes, the loggers and
callbacks; a constructor's error becomes one line naming the key (``building``). Stored configs
(run dirs, checkpoints) are ``project.stored``'s.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from project.utils.secrets import redact_secrets  # noqa: F401  (the run writes its config with it)

# net constructor argument <- task attribute
SIZE_ARGS = {"d_vocab": "vocab_size", "n_ctx": "seq_len", "d_vocab_out": "d_vocab_out"}


def locate(target: str) -> Any:
    """The object a ``_target_`` names (Hydra's lookup, without its ``log.error``)."""
    import logging

    from hydra.utils import get_object

    hydra_log = logging.getLogger("hydra.utils")
    was_disabled, hydra_log.disabled = hydra_log.disabled, True
    try:
        return get_object(target)
    finally:
        hydra_log.disabled = was_disabled


def task_sizes(datamodule: Any) -> dict[str, int]:
    """``{"d_vocab", "n_ctx", "d_vocab_out"}`` from a task; ``ValueError`` if it declares none."""
    sizes: dict[str, int] = {}
    for arg, attr in SIZE_ARGS.items():
        value = getattr(datamodule, attr, None)
        if value is None and attr == "d_vocab_out":
            value = getattr(datamodule, "vocab_size", None)
        if value is None:
            raise ValueError(
                f"{type(datamodule).__name__} declares no {attr}: a task must declare vocab_size "
                "and seq_len (the sizes the net is built with)"
            )
        sizes[arg] = int(value)
    return sizes


class NetSizeError(ValueError):
    """A net size set in the config that cannot hold the task (``d_vocab=5`` for 25 tokens)."""


def fill_net_sizes(cfg: DictConfig, datamodule: Any) -> None:
    """Fill null or missing ``model.net.{d_vocab,n_ctx,d_vocab_out}`` from the task where the net
    takes them; a size below the task's raises ``NetSizeError``."""
    net = OmegaConf.select(cfg, "model.net")
    if not isinstance(net, DictConfig) or "_target_" not in net:
        return
    params = inspect.signature(locate(str(net._target_))).parameters
    sizes = task_sizes(datamodule)
    with open_dict(net):
        for arg, value in sizes.items():
            if arg not in params:
                continue
            if net.get(arg) is None:
                net[arg] = value
            elif isinstance(net[arg], int) and net[arg] < value:
                raise NetSizeError(
                    f"{arg}={net[arg]} is invalid: allowed >= {value} (the task's "
                    f"{SIZE_ARGS[arg]}), or null to take it from the task"
                )


def cause(exc: BaseException) -> BaseException:
    """The user's own exception behind Hydra's ``InstantiationException`` wrapper."""
    from hydra.errors import InstantiationException

    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def error_line(node_key: str, exc: BaseException, node: Any = None) -> str:
    """``data.k=0 is invalid: ...`` when the message starts with a key of the node, else
    ``data: <message>``."""
    exc = cause(exc)
    message = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    message = message or type(exc).__name__
    if not isinstance(exc, ValueError):
        message = f"{type(exc).__name__}: {message}"
    name = message.partition("=")[0]
    keys = set(node.keys()) if isinstance(node, dict | DictConfig) else set()
    if name in keys:
        return f"{node_key}.{message}"
    return f"{node_key}: {message}"


class BuildError(Exception):
    """A class's own error while building a config node, as its one line (``building``)."""


@contextmanager
def building(key: str, node: Any = None) -> Iterator[None]:
    """An error while building node ``key`` as a one-line ``BuildError``, unless
    ``HYDRA_FULL_ERROR=1``."""
    try:
        yield
    except BuildError:
        raise
    except Exception as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        raise BuildError(error_line(key, exc, node)) from exc


def instantiate_task(cfg: DictConfig) -> Any:
    from hydra.utils import instantiate

    return instantiate(cfg.data)


def load_init_weights(module: Any, path: str) -> str:
    """``run.init_from``: load a checkpoint's weights into ``module``; returns a line saying so."""
    from project.checkpoint import completed_epochs, read_checkpoint

    weights = read_checkpoint(path)
    with building("run.init_from"):
        module.load_state_dict(weights["state_dict"])
    done = completed_epochs(weights)
    return (
        f"a new run from the weights of {path} (after {done} epoch{'' if done == 1 else 's'}); "
        "the optimiser, schedule and epoch count start fresh"
    )


def build_loggers(cfg: DictConfig, run_dir: Path | None = None) -> list[Any]:
    """``cfg.logger`` built (``[]`` for ``logger=none``); W&B through ``project.loggers``."""
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return []
    from hydra.utils import instantiate
    from lightning.pytorch.loggers import WandbLogger

    target = locate(str(cfg.logger._target_))
    if isinstance(target, type) and issubclass(target, WandbLogger):
        from project.loggers import build_wandb_logger

        if run_dir is None:
            from hydra.core.hydra_config import HydraConfig

            run_dir = Path(HydraConfig.get().runtime.output_dir)
        from lightning.pytorch.utilities.rank_zero import rank_zero_only

        return [build_wandb_logger(cfg, run_dir, getattr(rank_zero_only, "rank", 0) == 0)]
    return [instantiate(cfg.logger)]


def build_callbacks(
    cfg: DictConfig, run_dir: Path, with_loggers: bool = True, datamodule: Any = None
) -> dict[str, Any]:
    """The ``callbacks`` group by config name (no ``LearningRateMonitor`` without loggers); a
    callback's ``check_task(datamodule)`` runs here. A ``RunSummary`` (and with ``RCLONE_DEST`` a
    ``CloudSync``) is added if missing; both go last, ``CloudSync`` after it, so its final copy
    carries ``summary.json`` and the summary prints after the progress bar's last frame."""
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import LearningRateMonitor

    from project.callbacks.run_summary import RunSummary

    built = {}
    for name, node in (cfg.get("callbacks") or {}).items():
        if node and "_target_" in node:
            with building(f"callbacks.{name}", node):
                callback = instantiate(node)
                if datamodule is not None and callable(getattr(callback, "check_task", None)):
                    callback.check_task(datamodule)
            if with_loggers or not isinstance(callback, LearningRateMonitor):
                built[str(name)] = callback
    if not any(isinstance(cb, RunSummary) for cb in built.values()):
        built["_run_summary"] = RunSummary.untracked()
    if os.environ.get("RCLONE_DEST"):
        from project.callbacks.cloud_sync import CloudSync

        if not any(isinstance(cb, CloudSync) for cb in built.values()):
            built["_cloud_sync"] = CloudSync(str(run_dir))
    order = {name: getattr(cb, "end_of_fit_order", 0) for name, cb in built.items()}
    return {name: built[name] for name in sorted(built, key=order.__getitem__)}  # stable
