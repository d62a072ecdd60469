"""A run's error paths, kept out of what every run imports: Hydra's composition errors as one
line (unknown key with "did you mean", unknown config), a resume checkpoint of another net's
shape, and the one line of a run stopped by a diverged loss (exit 3) or a failed checkpoint write
(exit 4), naming what is left.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from project.train.checks import CONFIG_DIR, _parameters, invalid


def composition_error(exc: BaseException, overrides: list[str]) -> str:
    """Hydra's composition errors as one line: key, value, what is allowed."""
    from hydra.errors import MissingConfigException

    from project.train.rundir import RunDirError

    seen: BaseException | None = exc
    while seen is not None:  # the run dir's own check, raised inside Hydra's interpolation
        if isinstance(seen, RunDirError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        group, _, choice = exc.missing_cfg_file.rpartition("/")
        if group == "hydra/sweeper" and choice == "optuna":
            installed = f"; installed: {', '.join(exc.options)}" if exc.options else ""
            return ("hydra/sweeper=optuna is not installed: it comes with the `optuna` extra "
                    f"(uv sync --extra optuna){installed}")  # fmt: skip
        if group and not exc.options:  # experiment=../config: its defaults missed, not it
            for override in overrides:
                key, _, value = override.lstrip("+").partition("=")
                if group.startswith(f"{key}/") and (Path(CONFIG_DIR) / key).is_dir():
                    options = sorted(p.stem for p in (Path(CONFIG_DIR) / key).glob("*.yaml"))
                    return (f"{key}={value} is invalid: no such config in the {key} group; "
                            f"allowed: {', '.join(options)}")  # fmt: skip
        if group:
            allowed = ", ".join(exc.options or [])
            return f"{group}={choice} is invalid: no such config; allowed: {allowed}"
    cause = exc.__cause__ or exc.__context__
    full_key = getattr(cause, "full_key", None) or getattr(exc, "full_key", None)
    if full_key and "not in struct" in str(cause or exc):
        return _unknown_key(str(full_key), overrides)
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def _group_setting(group: str, overrides: list[str]) -> str | None:
    """``grokfast.alpha=1.5``: a setting typed under a config group's name (``grokfast=ema`` picks
    a config), where the group's config lives under another key (``# @package
    callbacks.grokfast``): the line names the key as typed and where it goes."""
    folder = Path(CONFIG_DIR) / group
    typed = next((o for o in overrides if o.lstrip("+~").startswith(f"{group}.")), None)
    if not folder.is_dir() or typed is None:
        return None
    package = None
    for config in sorted(folder.glob("*.yaml")):
        first = config.read_text().splitlines()[:1]
        if first and first[0].startswith("# @package "):
            package = first[0].removeprefix("# @package ").strip()
            break
    key, _, value = typed.lstrip("+~").partition("=")
    where = f"{package}.{key.partition('.')[2]}" if package and package != "_global_" else None
    fix = f"; allowed: {where}={value}" if where else ""
    return (f"{key}={value} is invalid: {group} is a config group ({group}=<name> picks a "
            f"config), not a key{fix}")  # fmt: skip


def _unknown_key(full_key: str, overrides: list[str]) -> str:
    """``model.optimizer.lrr=0.1 is invalid: unknown key; did you mean ...``: the allowed keys
    come from the config composed without the offending override (the error path only)."""
    from hydra import compose, initialize_config_dir

    group_setting = _group_setting(full_key, overrides)
    if group_setting:
        return group_setting
    parent, _, name = full_key.rpartition(".")
    value = next((o.partition("=")[2] for o in reversed(overrides)
                  if o.lstrip("+~").partition("=")[0] == full_key), None)  # fmt: skip
    shown = f"{full_key}={value}" if value is not None else full_key
    others = [o for o in overrides if not o.lstrip("+~").startswith(full_key)]
    keys: list[str] = []
    target = None
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            node = compose("config", overrides=others)
        node = OmegaConf.select(node, parent) if parent else node
        if isinstance(node, DictConfig):
            keys = sorted(str(k) for k in node if not str(k).startswith("_"))
            target = node.get("_target_")
    except Exception:
        pass
    if target and value is not None and name != "_target_":
        try:
            if name in _parameters(str(target))[0]:
                return (f"{shown} is invalid: {full_key} is not in the config; {target} takes "
                        f"it, so add it with +{shown}")  # fmt: skip
        except Exception:
            pass
    close = difflib.get_close_matches(name, keys, n=1)
    hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
    where = f"under {parent}" if parent else "at the top level"
    allowed = f"; {hint}allowed keys {where}: {', '.join(keys)}" if keys else ""
    return f"{shown} is invalid: unknown key{allowed}"


def checkpoint_mismatch(
    module: Any, ckpt: dict[str, Any], ckpt_path: str, cfg: DictConfig
) -> str | None:
    """One line when the checkpoint ``ckpt`` (read from ``run.ckpt_path``) holds weights of another
    shape than the net this config builds, naming the net keys that differ from its own."""
    mine = module.state_dict()
    theirs = ckpt.get("state_dict") or {}
    if all(k in mine and tuple(v.shape) == tuple(mine[k].shape) for k, v in theirs.items()):
        return None
    stored = (ckpt.get("hyper_parameters") or {}).get("net") or {}
    net = OmegaConf.to_container(cfg.model.net, resolve=True) if "net" in cfg.model else {}
    differ = [k for k, v in stored.items() if isinstance(net, dict) and net.get(k) not in (None, v)]
    if differ:
        k = differ[0]
        return invalid(f"model.net.{k}", net[k], f"{stored[k]!r}, the value the checkpoint "  # type: ignore[index]
                       f"run.ckpt_path={ckpt_path} was trained with")  # fmt: skip
    return invalid("run.ckpt_path", ckpt_path, "a checkpoint of the net this config builds")


def describe_checkpoint(path: Path) -> str:
    """``'<path> (after N epochs, step S)'`` for messages, or a note that none exists."""
    from project.checkpoint import CheckpointError, completed_epochs, read_checkpoint

    try:
        ckpt = read_checkpoint(path)
    except CheckpointError:
        return f"none ({path} does not exist or is unreadable)"
    return f"{path} (after {completed_epochs(ckpt)} epochs, step {ckpt.get('global_step')})"


DIVERGED_EXIT_CODE = 3
WRITE_FAILED_EXIT_CODE = 4


def write_failed_exit(exc: BaseException) -> int:
    """A checkpoint write failed (disk full): one line; returns the exit code (4). The run's
    ``summary.json`` (status ``failed: <reason>``) is ``RunSummary.on_exception``'s."""
    print(f"error: {exc}", file=sys.stderr)
    return WRITE_FAILED_EXIT_CODE


def diverged_exit(run_dir: Path, exc: BaseException) -> int:
    """Report a non-finite loss/weights stop on one line; returns the exit code (3)."""
    last_path = Path(run_dir) / "checkpoints" / "last.ckpt"
    if last_path.is_file():
        kept = f"last good checkpoint kept: {describe_checkpoint(last_path)}"
    else:  # diverged before the first last.ckpt: say plainly what is (not) there
        left = sorted(p.name for p in (Path(run_dir) / "checkpoints").glob("*.ckpt"))
        kept = ("nothing was saved to resume from (it diverged before the first last.ckpt); "
                f"left: run.log{''.join(', ' + n for n in left)}")  # fmt: skip
    print(f"error: {exc}; run stopped, {kept}", file=sys.stderr)
    return DIVERGED_EXIT_CODE
