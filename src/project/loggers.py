"""Experiment loggers from the ``logger`` config group (tensorboard | wandb | csv | none).

W&B (``logger=wandb``) never hangs and never prompts:

* no API key (``WANDB_API_KEY`` or a ``~/.netrc`` entry for the W&B host) or no route to the W&B
  server -> offline mode with a one-line notice; sync later with ``wandb sync <run_dir>/wandb/...``;
* ``wandb.init`` gets a short ``init_timeout``; if online start-up still fails it falls back to
  offline;
* its files go to ``<run_dir>/wandb/``; the run id is kept in ``<run_dir>/wandb_run_id`` so a
  resumed run (``run.ckpt_path=<run_dir>/checkpoints/last.ckpt``) continues the same W&B run;
* the full resolved config (secrets redacted, see ``redact_secrets``) and the run dir path are
  logged as the run's config.
"""

from __future__ import annotations

import netrc
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from project.utils.secrets import _SECRET_NAME, REDACTED, redact_secrets, secret_values

__all__ = ["build_wandb_logger", "finish_wandb", "redact_secrets", "redacted_container"]

ID_FILE = "wandb_run_id"


def redacted_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as a plain dict; secret-looking keys and secret values -> ``<redacted>``."""
    secrets = set(secret_values())

    def clean(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: clean(v, str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [clean(v) for v in node]
        if isinstance(node, str) and (node in secrets or (_SECRET_NAME.search(key) and node)):
            return REDACTED
        if isinstance(node, str):
            return redact_secrets(node)
        return node

    return clean(OmegaConf.to_container(cfg, resolve=True))


def wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or ""


def wandb_offline_reason(timeout: float = 3.0) -> str | None:
    """Why W&B must run offline here (one line), or None when online looks possible."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return None  # the user chose; nothing to announce
    host = wandb_host()
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        try:
            has_key = netrc.netrc().authenticators(host) is not None
        except (OSError, netrc.NetrcParseError):
            has_key = False
    if not has_key:
        return "no W&B API key (set WANDB_API_KEY or run 'wandb login')"
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return None  # cannot probe through a proxy; wandb.init's timeout guards instead
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as exc:
        return f"cannot reach {host} ({exc.strerror or exc})"
    return None


def _run_id(run_dir: Path, write: bool) -> str:
    """The W&B run id of this run dir: read back on resume, otherwise new (saved by rank zero)."""
    path = run_dir / ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))  # W&B's own id format
    if write:
        path.write_text(run_id + "\n")
    return run_id


def build_wandb_logger(cfg: DictConfig, run_dir: Path, rank_zero: bool = True) -> Any:
    """A ``WandbLogger`` that is offline whenever online is impossible; started on rank zero."""
    import wandb
    from hydra.utils import get_class

    logger_class = get_class(cfg.logger._target_)  # WandbLogger or a subclass
    if wandb.run is not None:  # left over from a crashed job of the same sweep process
        wandb.finish()
    kwargs: dict[str, Any] = dict(OmegaConf.to_container(cfg.logger, resolve=True))  # type: ignore[arg-type]
    kwargs.pop("_target_", None)
    settings = {"init_timeout": 30, **(kwargs.pop("settings", None) or {}), "silent": True}
    reason = None if kwargs.get("offline") else wandb_offline_reason()
    if reason:
        kwargs["offline"] = True
        if rank_zero:
            print(f"wandb: offline ({reason}); upload later with 'wandb sync'", file=sys.stderr)
    kwargs.update(
        save_dir=str(run_dir),
        id=_run_id(run_dir, write=rank_zero),
        resume="allow",
        config={"run_dir": str(run_dir), **redacted_container(cfg)},
        settings=wandb.Settings(**settings),
    )
    logger = logger_class(**kwargs)
    if rank_zero:
        try:
            _ = logger.experiment  # start now: failures show up before training, not mid-run
        except Exception as exc:  # network trouble that the probe did not catch
            print(f"wandb: offline (online start failed: {exc})".splitlines()[0], file=sys.stderr)
            wandb.finish()
            kwargs["offline"] = True
            logger = logger_class(**kwargs)
            _ = logger.experiment
    return logger


def finish_wandb(loggers: list[Any]) -> str | None:
    """Close the W&B run (flushes its files); returns a one-line summary, or None without W&B."""
    from lightning.pytorch.loggers import WandbLogger

    if not any(isinstance(lg, WandbLogger) for lg in loggers):
        return None
    import wandb

    run = wandb.run
    if run is None:
        return None
    offline = bool(getattr(run.settings, "_offline", False)) or run.settings.mode == "offline"
    run_path = Path(run.dir).parent
    url = run.url if not offline else None
    wandb.finish()
    if offline:
        return f"wandb: offline run {run_path}  (upload: wandb sync {run_path})"
    return f"wandb: {url}"
