"""Stored configs are data: which ``_target_`` a checkpoint or a run dir may make us build.

A checkpoint's ``hyper_parameters.net``, a run dir's ``resolved_config.yaml`` and the overrides a
resume replays from ``.hydra/overrides.yaml`` name classes by ``_target_``. Instantiating them
blindly runs whatever callable they name (``builtins.open`` with ``"w"`` truncates a file; Hydra's
own blocklist stops only ``os.system``, ``subprocess.*`` and ``shutil.rmtree``). The rule, checked
before anything named there is called:

1. **named**: the target is named by a config file (the template's ``configs/`` or a config dir on
   the run's ``hydra.searchpath``: your own configs) or lives in ``project``, ``torch`` or
   ``lightning``; nothing else is even imported;
2. **of its role's kind**: a net (``model.net``) is a ``torch.nn.Module`` subclass, the module
   (``model``) a ``LightningModule``, the task (``data``) a ``LightningDataModule``, the optimiser
   a ``torch.optim.Optimizer``, a scheduler an ``LRScheduler`` or a function taking ``optimizer``,
   a callback a Lightning ``Callback``, a logger a Lightning ``Logger``, the trainer a ``Trainer``;
   a target nested in another's arguments is an ``nn.Module`` subclass, a dataclass, or a class
   from ``project`` / ``torch`` / ``lightning``.

Anything else raises :class:`UntrustedTargetError` (one line naming the key and the target), and
nothing from the stored config has been called.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

# the template's configs, found through the package (an installed wheel carries them); the
# clone's ``configs/`` is a link to this folder
TEMPLATE_CONFIGS = Path(str(resources.files("project") / "configs")).resolve()
TRUSTED_PACKAGES = ("project", "torch", "lightning")
# role (config key) -> the class its target must subclass, as "module:Class"
ROLE_BASES = {
    "model": "lightning.pytorch:LightningModule",
    "model.net": "torch.nn:Module",
    "model.optimizer": "torch.optim:Optimizer",
    "model.scheduler": "torch.optim.lr_scheduler:LRScheduler",
    "data": "lightning.pytorch:LightningDataModule",
    "trainer": "lightning.pytorch:Trainer",
    "logger": "lightning.pytorch.loggers:Logger",
    "callbacks": "lightning.pytorch.callbacks:Callback",  # callbacks.<name>
}


class UntrustedTargetError(ValueError):
    """A stored config names a ``_target_`` that the rule does not allow; nothing was called."""


class NotImportableError(UntrustedTargetError):
    """A stored config names a class (allowed by the rule) whose package this process cannot
    import: the user's package is not on the path. A subclass of ``UntrustedTargetError`` so
    every reader reports it the same way (one line, exit 2)."""


def import_fix(target: str, config_dirs: Iterable[str | Path] = ()) -> str:
    """How to make ``target``'s package importable, with its directory when a config dir's
    parent holds it (``<pkg dir>/configs`` on ``hydra.searchpath``)."""
    top = str(target).split(".")[0]
    where = "<the directory that holds it>"
    for directory in config_dirs:
        for parent in (Path(directory).resolve().parent, Path(directory).resolve()):
            if (parent / top).is_dir() or (parent / f"{top}.py").is_file():
                where = str(parent)
                break
        else:
            continue
        break
    return (
        f"make the package {top!r} importable: PYTHONPATH={where} uv run python -m ..., or "
        f"from {where}: uv run --project <the template clone> python -m ..."
    )


def locate(target: str) -> Any:
    """``hydra.utils.get_object`` without its ``log.error`` (which, before Hydra sets up logging,
    prints three extra lines to stderr above our one-line error)."""
    import logging

    from hydra.utils import get_object

    hydra_log = logging.getLogger("hydra.utils")
    was_disabled, hydra_log.disabled = hydra_log.disabled, True
    try:
        return get_object(target)
    finally:
        hydra_log.disabled = was_disabled


def _targets_in(node: Any) -> Iterable[str]:
    if isinstance(node, Mapping):
        if isinstance(node.get("_target_"), str):
            yield node["_target_"]
        for value in node.values():
            yield from _targets_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets_in(value)


@functools.lru_cache(maxsize=32)
def _targets_in_dir(directory: str) -> frozenset[str]:
    found: set[str] = set()
    for path in sorted(Path(directory).rglob("*.yaml")):
        try:
            found.update(_targets_in(yaml.safe_load(path.read_text())))
        except (OSError, yaml.YAMLError):
            continue
    return frozenset(found)


def searchpath_dirs(run_dir: str | Path | None) -> list[Path]:
    """The ``file://`` config dirs on a run's ``hydra.searchpath`` (its ``.hydra/hydra.yaml``)."""
    hydra_file = Path(run_dir) / ".hydra" / "hydra.yaml" if run_dir is not None else None
    if hydra_file is None or not hydra_file.is_file():
        return []
    try:
        saved = yaml.safe_load(hydra_file.read_text()) or {}
        entries = saved["hydra"]["searchpath"] or []
    except (yaml.YAMLError, KeyError, TypeError):
        return []
    dirs = []
    for entry in entries if isinstance(entries, list) else []:
        text = str(entry).removeprefix("file://")
        if "://" not in text and Path(text).is_dir():
            dirs.append(Path(text).resolve())
    return dirs


def named_targets(config_dirs: Iterable[str | Path] = ()) -> frozenset[str]:
    """Every ``_target_`` named in the template's configs and in ``config_dirs``."""
    names = set(_targets_in_dir(str(TEMPLATE_CONFIGS)))
    for directory in config_dirs:
        names |= _targets_in_dir(str(Path(directory).resolve()))
    return frozenset(names)


def role_of(key: str) -> str | None:
    """The role of the node at config key ``key`` (``callbacks.x`` -> ``callbacks``), if any."""
    if key in ROLE_BASES:
        return key
    parent, _, _ = key.rpartition(".")
    return parent if parent in ("callbacks", "logger") else None


def _base(role: str) -> type:
    module, _, name = ROLE_BASES[role].partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _in_trusted_package(target: str) -> bool:
    return target.split(".")[0] in TRUSTED_PACKAGES


def _kind_problem(key: str, target: str, obj: Any) -> str | None:
    """Why ``obj`` (the imported target) may not sit at ``key``; None when it may."""
    role = role_of(key)
    if role is None:  # nested in another target's arguments
        if inspect.isclass(obj):
            from torch import nn

            if (
                issubclass(obj, nn.Module)
                or dataclasses.is_dataclass(obj)
                or _in_trusted_package(obj.__module__)
            ):
                return None
        return "not an nn.Module subclass, a dataclass or a project/torch/lightning class"
    base = _base(role)
    if inspect.isclass(obj) and issubclass(obj, base):
        return None
    if role == "model.scheduler" and inspect.isfunction(obj):
        if "optimizer" in inspect.signature(obj).parameters:
            return None
        return "a function that takes no `optimizer` (not a scheduler factory)"
    return f"not a {base.__module__}.{base.__qualname__} subclass"


def check_stored(node: Any, key: str, source: str, config_dirs: Iterable[str | Path] = ()) -> None:
    """Raise :class:`UntrustedTargetError` unless every ``_target_`` in ``node`` (a plain dict
    from a checkpoint or a run's saved config, found at config key ``key``; ``""`` for a whole
    config) passes the rule in the module docstring. ``source`` names the file in the message;
    ``config_dirs``: the user's config dirs (:func:`searchpath_dirs` of the run)."""
    named = named_targets(config_dirs)

    def refuse(where: str, target: Any, why: str) -> UntrustedTargetError:
        return UntrustedTargetError(
            f"{source}: {where}._target_={target!r} is refused: {why}; a stored config may only "
            "build classes your configs name, of the kind their place needs (nothing was run)"
        )

    def visit(value: Any, where: str) -> None:
        if isinstance(value, Mapping):
            target = value.get("_target_")
            if target is not None:
                if not isinstance(target, str) or not (
                    target in named or _in_trusted_package(target)
                ):
                    raise refuse(where, target, "no config of the template's or yours names it")
                try:
                    obj = locate(target)
                except Exception as exc:
                    missing = _missing_module(exc)
                    if missing is not None:
                        raise NotImportableError(
                            f"{source}: {where}._target_={target!r} cannot be imported (No module "
                            f"named {missing!r}); {import_fix(target, config_dirs)}"
                        ) from None
                    raise refuse(where, target, f"it cannot be imported ({exc})") from None
                if problem := _kind_problem(where, target, obj):
                    raise refuse(where, target, problem)
            for child_key, child in value.items():
                if str(child_key) != "_target_":
                    visit(child, f"{where}.{child_key}" if where else str(child_key))
        elif isinstance(value, list):
            for i, child in enumerate(value):
                visit(child, f"{where}[{i}]")

    visit(node, key)


def replayed_untrusted(cfg: Any) -> str | None:
    """Resuming a run dir (``run.ckpt_path`` or ``run.init_from`` in it) replays its stored
    overrides (and ``hydra.searchpath``): that is data, so every ``_target_`` of the config
    ``cfg`` they composed must pass the rule. The refusal as one line, else None."""
    from omegaconf import OmegaConf

    from project.train.rundir import find_run_dir

    ckpt = OmegaConf.select(cfg, "run.ckpt_path") or OmegaConf.select(cfg, "run.init_from")
    run_dir = find_run_dir(ckpt) if ckpt else None
    if run_dir is None:
        return None
    source = f"run.ckpt_path's run dir {run_dir} (.hydra/overrides.yaml)"
    try:
        check_stored(
            OmegaConf.to_container(cfg, resolve=False), "", source, searchpath_dirs(run_dir)
        )
    except UntrustedTargetError as exc:
        return str(exc)
    return None


def _missing_module(exc: BaseException) -> str | None:
    """The module name of a ``ModuleNotFoundError`` anywhere in ``exc``'s chain (Hydra wraps it)."""
    import re

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            return seen.name
        if match := re.search(r"No module named '([^']+)'", str(seen)):
            return match.group(1)
        seen = seen.__cause__ or seen.__context__
    return None


def instantiate_stored(
    node: Mapping[Any, Any],
    key: str,
    source: str,
    config_dirs: Iterable[str | Path] = (),
    **kwargs: Any,
) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)`` once :func:`check_stored` has passed."""
    from hydra.utils import instantiate

    check_stored(node, key, source, config_dirs)
    return instantiate(node, **kwargs)
