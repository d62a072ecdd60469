"""The one reader of stored data (run dirs, checkpoints): resume, ``run.init_from``, eval,
report, generate, ``load_checkpoint`` and ``load_run`` read through it. Stored values are plain
data: YAML is read with ``yaml.safe_load`` and never resolved; a class is looked up by
``locate_class`` (of its role's kind, from a package you can import; never a function, a
``__main__``, private or standard-library module, or a file inside the run dir) and called with
plain keyword values, never through ``hydra.utils.instantiate``. The threat model is the README's
reliability section; the attacks are ``tests/reliability/test_stored_data.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from project.checkpoint import CheckpointError, read_checkpoint

# role (config key) -> the class its target must subclass, as "module:Class"
ROLE_BASES = {
    "model": "lightning.pytorch:LightningModule",
    "model.net": "torch.nn:Module",
    "model.optimizer": "torch.optim:Optimizer",
    "model.scheduler": "torch.optim.lr_scheduler:LRScheduler",
    "data": "lightning.pytorch:LightningDataModule",
    "trainer": "lightning.pytorch:Trainer",
    "logger": "lightning.pytorch.loggers:Logger",
    "callbacks": "lightning.pytorch.callbacks:Callback",
    "nested": "torch.nn:Module",  # a target inside a net's arguments
}
REFUSED_KEYS = ("_args_", "_partial_", "_convert_")
# tasks renamed since older runs were written: their run dirs still load
RENAMED_TASKS = {
    "project.data.lit_data.ModularDataModule": "project.data.modular.ModularDataModule"
}


class StoredDataError(ValueError):
    """Stored data that the tools refuse to use; its message is one line (nothing was run)."""


def role_of(key: str) -> str:
    """The role of the node at config key ``key`` (``callbacks.x`` -> ``callbacks``)."""
    if key in ROLE_BASES:
        return key
    parent = key.rpartition(".")[0]
    return parent if parent in ("callbacks", "logger") else "nested"


def _inside(path: str | Path, root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(root)


def _refuse_name(target: str, run_dir: Path | None) -> str | None:
    """Why the name ``target`` may not be imported at all, checked before any import."""
    parts = target.split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        return "not a dotted class path (package.module.Class)"
    if "__main__" in parts[:-1]:
        return "a __main__ module (importing it runs a program)"
    if any(p.startswith("_") for p in parts[:-1]):
        return "a private module"
    if parts[0] in sys.stdlib_module_names:
        return "a standard-library module (no net, task or callback lives there)"
    try:
        spec = importlib.util.find_spec(parts[0])  # finds the top package; runs none of it
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None  # reported as not importable below, with the fix
    origins = [spec.origin, *(spec.submodule_search_locations or [])]
    if run_dir is not None and any(o and _inside(o, run_dir) for o in origins):
        return f"its package {parts[0]!r} is a file inside the run dir being read"
    return None


def locate_class(target: Any, key: str, source: str, run_dir: Path | None = None) -> type:
    """The class ``target`` names at config key ``key``, once it passes the rules (module doc);
    else :class:`StoredDataError` in one line."""
    root = Path(os.path.realpath(run_dir)) if run_dir is not None else None
    shown = f"{source}: {key}._target_={target!r}"
    if not isinstance(target, str):
        raise StoredDataError(f"{shown} is refused: not a class path")
    if why := _refuse_name(target, root):
        raise StoredDataError(f"{shown} is refused: {why} (nothing was run)")
    module_name, _, name = target.rpartition(".")
    try:
        spec = importlib.util.find_spec(module_name)  # imports the (trusted) parent packages
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        top = target.split(".")[0]
        raise StoredDataError(
            f"{shown} cannot be imported (no module {module_name!r}): make the package {top!r} "
            f"importable (install it, or PYTHONPATH=<the directory that holds {top}>)"
        )
    if root is not None and spec.origin and _inside(spec.origin, root):
        raise StoredDataError(f"{shown} is refused: a module inside the run dir being read")
    obj = getattr(importlib.import_module(module_name), name, None)
    role = role_of(key)
    module, _, base_name = ROLE_BASES[role].partition(":")
    base = getattr(importlib.import_module(module), base_name)
    if not (inspect.isclass(obj) and issubclass(obj, base)):
        what = "no such name" if obj is None else f"not a {module}.{base_name} subclass"
        raise StoredDataError(f"{shown} is refused: {what} (only classes of the role's kind)")
    return obj


def plain(value: Any, where: str, source: str, allow: re.Pattern[str] | None = None) -> Any:
    """``value`` checked to be plain data: no ``${`` interpolation anywhere in it (but those
    ``allow`` matches)."""
    if isinstance(value, str) and "${" in (allow.sub("", value) if allow else value):
        raise StoredDataError(
            f"{source}: {where}={value!r} is refused: stored values are plain data, not "
            "interpolations (nothing was resolved)"
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            plain(v, f"{where}.{k}", source, allow)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            plain(v, f"{where}[{i}]", source, allow)
    elif not isinstance(value, str | int | float | bool | type(None)):
        raise StoredDataError(f"{source}: {where} is refused: a {type(value).__name__}")
    return value


def build(node: Any, key: str, source: str, run_dir: Path | None = None, **extra: Any) -> Any:
    """``cls(**values, **extra)`` for a stored ``{_target_: cls, ...}`` node at config key ``key``.

    A nested ``_target_`` node is built the same way when it sits in a net (role ``nested``: an
    ``nn.Module``); in a module it is left as data (``net`` is built as ``model.net``)."""
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise StoredDataError(f"{source}: {key} is not a config node with a _target_")
    plain(node, key, source)
    for name in node:  # instantiate's keywords: this node is built by a plain call, or refused
        if name in REFUSED_KEYS or (name == "_recursive_" and node[name] is not False):
            raise StoredDataError(f"{source}: {key}.{name} is refused: a class is built from "
                                  "plain keyword values only")  # fmt: skip
    cls = locate_class(node["_target_"], key, source, run_dir)
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {}
    for name, value in node.items():
        if str(name).startswith("_") and str(name).endswith("_"):
            continue
        child_key = "model.net" if (key == "model" and name == "net") else f"{key}.{name}"
        is_node = isinstance(value, Mapping) and "_target_" in value
        if is_node and (child_key == "model.net" or key.startswith("model.net")):
            value = build(value, child_key, source, run_dir)
        kwargs[str(name)] = value
    retired = [k for k in kwargs if not takes_any and k not in params]
    if retired:  # a run written by an older version: a setting that has since moved elsewhere
        print(
            f"note: {source}: {key}: ignoring {', '.join(retired)} (no longer taken by {node['_target_']})"
        )
    return cls(**{k: v for k, v in kwargs.items() if k not in retired}, **extra)


def read_config(path: str | Path) -> dict[str, Any]:
    """A stored YAML mapping (``resolved_config.yaml``), read as plain data."""
    path = Path(path)
    if not path.is_file():
        raise StoredDataError(f"{path} does not exist (is this a run dir?)")
    allowed = "a mapping of config keys (as project.train.run writes it)"
    data = _load_yaml(path, allowed)
    if not isinstance(data, dict):
        raise StoredDataError(f"{path} holds {_kind(data)}; allowed: {allowed}")
    return data


def _kind(value: Any) -> str:
    kinds = {list: "a list", dict: "a mapping", str: "a string", type(None): "nothing"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _load_yaml(path: Path, allowed: str) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise StoredDataError(f"{path} cannot be read ({exc}); allowed: {allowed}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise StoredDataError(
            f"{path} is not YAML ({problem}{where}); allowed: {allowed}"
        ) from None


def read_overrides(run_dir: Path) -> list[str]:
    """A run's ``.hydra/overrides.yaml``: the command line's overrides, a YAML list of strings."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    allowed = "a YAML list of override strings (key=value), as Hydra writes it"
    stored = _load_yaml(path, allowed) or []
    if not isinstance(stored, list) or not all(isinstance(o, str) for o in stored):
        raise StoredDataError(f"{path} holds {_kind(stored)}; allowed: {allowed}")
    return stored


def find_run_dir(ckpt_path: str | Path) -> Path | None:
    """The run dir a checkpoint belongs to (``<run_dir>/checkpoints/x.ckpt``), if it is one."""
    path = Path(ckpt_path).absolute()
    candidate = path.parent.parent
    if path.parent.name == "checkpoints" and (candidate / ".hydra").is_dir():
        return candidate
    return None


def check_no_escaping_links(run_dir: str | Path) -> None:
    """Refuse a run dir that holds a symlink leading out of it: every file the tools write into a
    run dir (report/, resolved_config.yaml, summary.json, run.log, checkpoints, tb_logs ...) then
    stays inside it."""
    root = Path(os.path.realpath(run_dir))
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root / "wandb":  # W&B's own tree: it links its logs to its cache
            dirs[:] = []
            continue
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink() and not _inside(path, root):
                raise StoredDataError(
                    f"{path} is refused: a symlink leaving the run dir (-> {os.readlink(path)}); "
                    "the tools write only inside the run dir"
                )


# a replayed override may keep what you typed as a reference to another key or an environment
# variable (``+run.api_key=${oc.env:WANDB_API_KEY}``): these build nothing. Any other resolver
# (``oc.create``, ``oc.decode``, ...) is refused.
_SAFE_INTERPOLATION = re.compile(r"\$\{(oc\.env:[A-Za-z_]\w*|[A-Za-z_][\w.]*)\}")


# keys that say where files are written: a stored value is never replayed (a relative one lands
# in the cwd, not the run dir); the same key on this command line replaces it
WRITE_KEYS = ("dirpath", "filename", "save_dir", "dir", "run_dir", "default_root_dir")


def replay_overrides(run_dir: Path, keep_name: bool, given: Iterable[str] = ()) -> list[str]:
    """The overrides a run was started with (``.hydra/overrides.yaml``), for a resume or a
    ``run.init_from``: only plain settings are replayed (module doc); a ``_target_`` must name a
    class of its role's kind. Keys in ``given`` (set on this command line, which wins) are
    skipped."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    source = str(run_dir / ".hydra" / "overrides.yaml")
    stored = read_overrides(run_dir)
    skip = (
        "run.ckpt_path",
        "run.init_from",
        "run.output_root",
        *(() if keep_name else ("run.name",)),
    )
    replayed = []
    for text in stored:
        try:
            (override,) = OverridesParser.create().parse_overrides([text])
        except Exception:
            raise StoredDataError(f"{source}: {text!r} is refused: not a valid override") from None
        key = override.key_or_group
        if key in skip or key in given:
            continue
        if key.split(".")[0].split("/")[0] == "hydra" or key.split("@")[0] == "hydra":
            raise StoredDataError(
                f"{source}: {text!r} is refused: a stored hydra.* override is never replayed "
                "(give hydra settings on this command line)"
            )
        if override.is_sweep_override() or any(k in key for k in (*REFUSED_KEYS, "_recursive_")):
            raise StoredDataError(f"{source}: {text!r} is refused: not a plain setting")
        if key.rpartition(".")[2] in WRITE_KEYS:
            raise StoredDataError(
                f"{source}: {text!r} is refused: a stored override never says where files are "
                f"written (give {key}=... on this command line if you meant it)"
            )
        value = override.value()
        plain(value, key, source, allow=_SAFE_INTERPOLATION)
        for item in value if isinstance(value, list) else [value]:
            if (
                isinstance(item, str)
                and not key.startswith("data.")
                and (item.startswith(("/", "~")) or ".." in Path(item).parts)
            ):
                raise StoredDataError(
                    f"{source}: {text!r} is refused: a stored path outside the run dir (give it "
                    "on this command line if you meant it)"
                )
        if key.endswith("._target_") or key == "_target_":
            locate_class(value, key.removesuffix("._target_"), source, run_dir)
        replayed.append(text)
    return replayed


def run_config(run_dir: str | Path) -> dict[str, Any]:
    """A run dir's ``resolved_config.yaml`` as plain data (the run dir checked for links that
    leave it: the tools may write into it)."""
    check_no_escaping_links(run_dir)
    return read_config(Path(run_dir) / "resolved_config.yaml")


def build_task(run_dir: str | Path, config: dict[str, Any] | None = None, **changes: Any) -> Any:
    """A run's task rebuilt from its stored ``data`` node (``changes`` replace stored values)."""
    config = run_config(run_dir) if config is None else config
    data = dict(config.get("data") or {})
    source = str(Path(run_dir) / "resolved_config.yaml")
    if "_target_" not in data:
        raise StoredDataError(f"{source} is invalid: it names no data._target_ (the task)")
    data["_target_"] = RENAMED_TASKS.get(data["_target_"], data["_target_"])
    if isinstance(data.get("shuffle_seed"), str):  # a ${seed} written before configs resolved
        data["shuffle_seed"] = 0
    return build({**data, **changes}, "data", source, Path(run_dir))


def build_module(run_dir: str | Path, config: dict[str, Any] | None = None) -> Any:
    """A run's LightningModule (its net built) from its stored ``model`` node."""
    config = run_config(run_dir) if config is None else config
    source = str(Path(run_dir) / "resolved_config.yaml")
    return build(config.get("model"), "model", source, Path(run_dir))


def build_net(
    hparams: dict[str, Any], source: str = "checkpoint", run_dir: Path | None = None
) -> nn.Module:
    """The net a checkpoint's ``hyper_parameters`` describe (not yet loaded with weights), built
    by ``project.stored`` (a ``torch.nn.Module`` class you can import; else ``CheckpointError``
    and nothing was called)."""
    spec = hparams.get("net")
    if isinstance(spec, dict) and "_target_" in spec:
        try:
            return build(spec, "model.net", source, run_dir)  # type: ignore[no-any-return]
        except StoredDataError as exc:
            raise CheckpointError(str(exc)) from None
    from project.models.tiny_transformer import TinyTransformer, TinyTransformerConfig

    fields = TinyTransformerConfig.__dataclass_fields__
    return TinyTransformer(
        TinyTransformerConfig(**{k: v for k, v in hparams.items() if k in fields})
    )


def load_checkpoint(
    path: str | Path, device: torch.device | str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a training checkpoint as ``(net in eval mode, hyperparameters dict)``.

    Safe: ``torch.load(weights_only=True)``. A GPU checkpoint loads on CPU. The hyperparameters
    hold ``net`` / ``optimizer`` / ``scheduler`` configs plus ``epoch`` and ``global_step``.
    """
    ckpt = read_checkpoint(path)
    hparams = dict(ckpt.get("hyper_parameters", {}))
    run_dir = Path(path).absolute().parent.parent  # <run dir>/checkpoints/x.ckpt
    model = build_net(hparams, f"checkpoint {str(path)!r}", run_dir)
    state = {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }
    model.load_state_dict(state)
    model.to(device if device is not None else "cpu").eval()
    hparams["epoch"] = ckpt.get("epoch")
    hparams["global_step"] = ckpt.get("global_step")
    return model, hparams
