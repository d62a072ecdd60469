"""Config checks, inside the job, after Hydra's one composition: one line per problem naming the
key, the bad value and what is allowed (the job then exits 2 and removes its run dir).

* the template's own top-level keys (``seed``, ``run.*``) against a pydantic schema;
* every ``_target_`` node (``data``, ``model``, ``model.net``, ``model.optimizer``, callbacks ...):
  its keys against ``inspect.signature`` of the imported class ("did you mean"), its values
  against the argument's annotation (pydantic, strict);
* the machine (accelerator, devices, precision) and the files a run needs.

Ranges are the classes' own business: a constructor's ``ValueError`` becomes one line where the job
builds it (``project.build.building``). ``composition_error`` turns Hydra's composition errors
(unknown key, unknown config) into the same one line.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import os
import typing
from pathlib import Path
from typing import Annotated, Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from project.build import locate

MAX_NAME_BYTES = 200  # the run dir is <HH-MM-SS>-<name>[_N]: a file name is at most 255 bytes
PRECISIONS = ["32", "32-true", "64", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"]
ACCELERATORS = ["auto", "cpu", "gpu", "cuda", "mps"]
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def show(value: Any) -> str:
    """``repr`` of a config value (strings quoted), containers as plain lists."""
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    return repr(value)


def invalid(key: str, value: Any, allowed: str) -> str:
    return f"{key}={show(value)} is invalid: allowed {allowed}"


class RunSettings(BaseModel):
    """``run.*``: where a run goes and what it starts from."""

    model_config = ConfigDict(strict=True, extra="forbid")
    name: Annotated[str, Field(min_length=1)] | None = None
    ckpt_path: str | None = None
    init_from: str | None = None
    output_root: Annotated[str, Field(min_length=1)] = "outputs"


class TopLevel(BaseModel):
    """The template's own top-level keys (the rest are ``_target_`` nodes or Hydra's)."""

    model_config = ConfigDict(strict=True, extra="allow")
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's range, which seed_everything uses
    optimized_metric: str | None = None
    run: RunSettings


def _schema_errors(cfg: DictConfig) -> list[str]:
    values = {k: cfg.get(k) for k in ("seed", "optimized_metric") if k in cfg}
    values["run"] = OmegaConf.to_container(cfg.run, resolve=True) if "run" in cfg else {}
    errors = []
    try:
        TopLevel.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function"))
            what = err["msg"].removeprefix("Input should be ").removeprefix("Value error, ")
            errors.append(invalid(key, err.get("input"), what))
    name = OmegaConf.select(cfg, "run.name")
    if isinstance(name, str) and ("/" in name or name in (".", "..")):
        errors.append(invalid("run.name", name, "a plain name without '/' (the run dir's name)"))
    elif isinstance(name, str) and len(name.encode()) > MAX_NAME_BYTES:
        shown = f"{name[:20]}... ({len(name.encode())} bytes)"
        errors.append(f"run.name={shown} is invalid: allowed at most {MAX_NAME_BYTES} bytes")
    return errors


def _run_errors(cfg: DictConfig) -> list[str]:
    errors = []
    for key in ("run.ckpt_path", "run.init_from"):
        if (path := OmegaConf.select(cfg, key)) is not None:
            from project.checkpoint import checkpoint_problem

            if problem := checkpoint_problem(path, key):
                errors.append(invalid(key, path, problem))
    if OmegaConf.select(cfg, "run.init_from") and OmegaConf.select(cfg, "run.ckpt_path"):
        errors.append(invalid("run.init_from", cfg.run.init_from, "null with run.ckpt_path"))
    for key in ("logger.save_dir", "logger.dir"):  # a logger writing outside the run dir
        where = OmegaConf.select(cfg, key)
        if isinstance(where, str) and (problem := unwritable(Path(where))):
            errors.append(invalid(key, where, f"a writable directory ({problem})"))
    return errors


def unwritable(root: Path) -> str | None:
    """Why ``root`` cannot hold new files and folders, or None (probes the nearest existing
    folder with a temp dir that is removed again)."""
    import tempfile

    probe = root.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=probe))
    except OSError as exc:
        return f"cannot create files in {probe}: {exc.strerror or str(exc)}"
    return None


def _trainer_errors(cfg: DictConfig) -> list[str]:
    import torch

    trainer = cfg.get("trainer")
    if trainer is None:
        return []
    errors = []
    clip = trainer.get("gradient_clip_val")
    if clip is not None and not (
        isinstance(clip, int | float) and math.isfinite(clip) and clip >= 0
    ):
        errors.append(invalid("trainer.gradient_clip_val", clip, "a finite number >= 0 or null"))
    for key in ("max_epochs", "check_val_every_n_epoch", "log_every_n_steps"):
        value = trainer.get(key)
        if (value is not None or key == "max_epochs") and not (
            isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10**8
        ):
            errors.append(invalid(f"trainer.{key}", value, "an integer >= 1"
                                  + ("" if key == "max_epochs" else " or null")))  # fmt: skip
    name, devices = trainer.get("accelerator"), trainer.get("devices")
    if name not in ACCELERATORS:
        return [*errors, invalid("trainer.accelerator", name, "one of " + ", ".join(ACCELERATORS))]
    from project.utils.helpers import auto_device

    accel = auto_device().type if name == "auto" else ("cuda" if name == "gpu" else name)
    if accel == "cuda" and not torch.cuda.is_available():
        return [*errors, invalid("trainer.accelerator", name, "cpu or auto: no CUDA GPU here")]
    if accel == "mps" and not torch.backends.mps.is_available():
        return [*errors, invalid("trainer.accelerator", name, "cpu or auto: no Apple MPS here")]
    count = {"cuda": torch.cuda.device_count, "mps": lambda: 1, "cpu": os.cpu_count}[accel]()
    is_int = isinstance(devices, int) and not isinstance(devices, bool)
    if devices not in ("auto", -1) and not isinstance(devices, ListConfig):
        if not is_int or not 1 <= devices <= (count or 1):
            errors.append(invalid("trainer.devices", devices,
                                  f"an integer in [1, {count}] ({accel} devices here)"))  # fmt: skip
    precision = str(trainer.get("precision"))
    if precision not in PRECISIONS:
        errors.append(invalid("trainer.precision", trainer.get("precision"),
                              "one of 32, 16-mixed, bf16-mixed, 64, 16-true, bf16-true"))  # fmt: skip
    elif accel == "cpu" and precision in ("16-mixed", "16-true"):
        errors.append(invalid("trainer.precision", precision, "32 or bf16-mixed on cpu"))
    elif accel == "mps" and precision in ("64", "64-true"):
        errors.append(invalid("trainer.precision", precision, "32, 16-mixed or bf16-mixed on mps"))
    return errors


def target_nodes(node: Any, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every ``_target_`` node (unresolved, as a plain dict) by key, outermost first."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    found: dict[str, dict[str, Any]] = {}
    if isinstance(node, dict):
        if prefix and "_target_" in node:
            found[prefix] = node
        for key, child in node.items():
            if str(key) != "hydra" and isinstance(child, dict):
                found.update(target_nodes(child, f"{prefix}.{key}" if prefix else str(key)))
    return found


@functools.lru_cache(maxsize=256)
def _adapter(annotation: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(annotation, config=ConfigDict(strict=True, arbitrary_types_allowed=True))


def _has_any(annotation: Any) -> bool:
    return annotation is Any or any(_has_any(a) for a in typing.get_args(annotation))


def type_ok(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits ``annotation`` (pydantic, strict: no ``"3"`` or ``True`` for an
    int; a list for a tuple); True when it cannot tell (``Any``, a type pydantic does not know)."""
    if annotation is inspect.Parameter.empty or isinstance(annotation, str) or _has_any(annotation):
        return True
    try:
        adapter = _adapter(annotation)
    except Exception:
        return True
    for candidate in (value, tuple(value)) if isinstance(value, list) else (value,):
        try:
            adapter.validate_python(candidate)
            return True
        except ValidationError:
            continue
        except Exception:
            return True
    return False


def _type_name(annotation: Any) -> str:
    import re

    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    text = str(annotation).replace("<class '", "").replace("'>", "").replace("NoneType", "None")
    return "a value of type " + re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", text)


def _parameters(target: str) -> tuple[dict[str, inspect.Parameter], bool]:
    """A class's constructor arguments, its bases' too where it passes ``**kwargs`` up (a
    ``TokenTask`` subclass takes ``batch_size``, ``split_seed`` ...); and whether it still takes
    any keyword at the end of that chain."""
    obj = locate(target)
    if inspect.isclass(obj):
        inits = [
            vars(c)["__init__"] for c in obj.__mro__ if c is not object and "__init__" in vars(c)
        ]
    else:
        inits = [obj]
    params: dict[str, inspect.Parameter] = {}
    for init in inits:
        own = inspect.signature(init).parameters
        for name, p in own.items():
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                params.setdefault(name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in own.values()):
            return params, False
    return params, True


def _target_errors(cfg: DictConfig) -> list[str]:
    errors: list[str] = []
    for node_key, node in target_nodes(cfg).items():
        target = str(node["_target_"])
        try:
            params, takes_any = _parameters(target)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            top = target.split(".")[0]
            fix = (
                f"; make the package {top!r} importable (PYTHONPATH)" if "module" in reason else ""
            )
            errors.append(invalid(f"{node_key}._target_", target, f"an importable class ({reason}{fix})"))  # fmt: skip
            continue
        type_hints = _hints(target)
        for key, value in node.items():
            key = str(key)
            if key.startswith("_") and key.endswith("_"):
                continue
            if key not in params:
                if takes_any:
                    continue
                close = difflib.get_close_matches(key, list(params), n=1)
                hint = f"did you mean {node_key}.{close[0]}? " if close else ""
                name = target.rpartition(".")[2]
                errors.append(invalid(f"{node_key}.{key}", value,
                                      f"a known key: {hint}{name} takes {', '.join(params)}"))  # fmt: skip
                continue
            if (isinstance(value, dict) and "_target_" in value) or (
                isinstance(value, str) and "${" in value
            ):
                continue  # a node of its own, or an interpolation
            annotation = type_hints.get(key, params[key].annotation)
            if not type_ok(value, annotation):
                errors.append(invalid(f"{node_key}.{key}", value, _type_name(annotation)))
    return errors


def _hints(target: str) -> dict[str, Any]:
    obj = locate(target)
    hints: dict[str, Any] = {}
    for cls in reversed(obj.__mro__) if inspect.isclass(obj) else [obj]:
        try:
            hints.update(typing.get_type_hints(vars(cls).get("__init__", cls)))
        except Exception:
            continue
    return hints


def config_errors(cfg: DictConfig) -> list[str]:
    """Every problem of a composed config, one line each (empty: valid)."""
    return [*_schema_errors(cfg), *_trainer_errors(cfg), *_run_errors(cfg), *_target_errors(cfg)]


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
            return ("hydra/sweeper=optuna is not installed: it comes with the `optuna` extra "
                    "(uv sync --extra optuna)")  # fmt: skip
        if group:
            options = ", ".join(exc.options or [])
            return f"{group}={choice} is invalid: no such config; allowed: {options}"
    cause = exc.__cause__ or exc.__context__
    full_key = getattr(cause, "full_key", None) or getattr(exc, "full_key", None)
    if full_key and "not in struct" in str(cause or exc):
        return _unknown_key(str(full_key), overrides)
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def _unknown_key(full_key: str, overrides: list[str]) -> str:
    """``model.optimizer.lrr=0.1 is invalid: unknown key; did you mean ...``: the allowed keys
    come from the config composed without the offending override (the error path only)."""
    from hydra import compose, initialize_config_dir

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


BYTES_PER_PARAM = 16  # float32 weight + gradient + two AdamW moments


def available_memory() -> int:
    """Bytes this process can still allocate: ``MemAvailable`` (Linux), else physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_problem(net: Any, available: int | None = None) -> str | None:
    """One line when a net's parameters (with gradients and AdamW state) would not fit in memory,
    for a net class with an ``estimate_params(**kwargs)`` (a million layers would take minutes
    to build before failing)."""
    if not isinstance(net, DictConfig) or "_target_" not in net:
        return None
    estimate = getattr(locate(str(net._target_)), "estimate_params", None)
    if not callable(estimate):
        return None
    kwargs = {str(k): v for k, v in OmegaConf.to_container(net, resolve=True).items()}  # type: ignore[union-attr]
    need = int(estimate(**{k: v for k, v in kwargs.items() if k[0] != "_"})) * BYTES_PER_PARAM
    available = available_memory() if available is None else available
    if need <= available:
        return None
    sizes = ", ".join(f"{k}={v}" for k, v in kwargs.items() if isinstance(v, int))
    return (
        f"model.net is invalid: allowed a net that fits in memory: {need / BYTES_PER_PARAM:.3g} "
        f"parameters need ~{need / 2**30:.1f} GiB (weights, gradients, AdamW state), "
        f"{available / 2**30:.1f} GiB are available ({sizes})"
    )


def checkpoint_mismatch(module: Any, ckpt_path: str, cfg: DictConfig) -> str | None:
    """One line when ``run.ckpt_path`` holds weights of another shape than the net this config
    builds, naming the net keys that differ from the checkpoint's own."""
    from project.checkpoint import read_checkpoint

    ckpt = read_checkpoint(ckpt_path)
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
