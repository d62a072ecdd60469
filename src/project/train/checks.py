"""Config checks before training, one line per problem: ``key=value is invalid: allowed ...``.

Checked: ``seed`` and ``run.*`` (pydantic), every ``_target_`` node's keys against its class's
signature ("did you mean") and values against the annotations, the trainer against the machine,
and the files a run needs. Ranges are the classes' own (``project.build.building``).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from project.build import locate
from project.utils.paths import unwritable

MAX_NAME_BYTES = 200  # the run dir is <HH-MM-SS>-<name>[_N]: a file name is at most 255 bytes
PRECISIONS = ["32", "32-true", "64", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"]
ACCELERATORS = ["auto", "cpu", "gpu", "cuda", "mps"]
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def show(value: Any) -> str:
    if isinstance(value, DictConfig | ListConfig):  # containers as plain lists
        value = OmegaConf.to_container(value)
    return repr(value)


def invalid(key: str, value: Any, allowed: str) -> str:
    return f"{key}={show(value)} is invalid: allowed {allowed}"


class RunSettings(BaseModel):  # run.*: where a run goes and what it starts from
    model_config = ConfigDict(strict=True, extra="allow")  # +run.x: added on purpose
    name: Annotated[str, Field(min_length=1)] | None = None
    ckpt_path: str | None = None
    init_from: str | None = None
    output_root: Annotated[str, Field(min_length=1)] = "outputs"


class TopLevel(BaseModel):  # the template's own top-level keys (the rest: _target_ nodes, hydra)
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
    if name is not None and not isinstance(name, str | int) or isinstance(name, bool):
        errors = [e for e in errors if not e.startswith("run.name=")]
        errors.append(invalid("run.name", name, f"a plain name; it was read as a "
                              f"{type(name).__name__}: quote it, run.name='{name}'"))  # fmt: skip
    return errors  # a name with '/' or too long: the run dir's resolver (rundir) refuses it


def _run_errors(cfg: DictConfig) -> list[str]:
    errors = []
    for key in ("run.ckpt_path", "run.init_from"):
        if (path := OmegaConf.select(cfg, key)) is not None:
            from project.checkpoint import checkpoint_problem

            if problem := checkpoint_problem(path, key):
                errors.append(invalid(key, path, problem))
    if OmegaConf.select(cfg, "run.init_from") and OmegaConf.select(cfg, "run.ckpt_path"):
        errors.append(invalid("run.init_from", cfg.run.init_from, "null with run.ckpt_path"))
    if os.environ.get("RCLONE_DEST"):  # a RCLONE_DEST typo: found before training
        from project.sync import check_rclone_dest

        if problem := check_rclone_dest():
            errors.append(problem)
    for key in ("logger.save_dir", "logger.dir"):  # a logger writing outside the run dir
        # (unresolvable outside a job: ${hydra:runtime.output_dir}, the run dir Hydra makes)
        where = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        if isinstance(where, str) and (problem := unwritable(Path(where))):
            errors.append(invalid(key, where, f"a writable directory ({problem})"))
    return errors


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
    mps = torch.backends.mps.is_available()
    auto = "cuda" if torch.cuda.is_available() else ("mps" if mps else "cpu")  # Lightning's order
    accel = auto if name == "auto" else ("cuda" if name == "gpu" else name)
    missing = {"cuda": not torch.cuda.is_available(), "mps": not mps}.get(accel)
    if missing:
        what = "no CUDA GPU is" if accel == "cuda" else "Apple MPS is not"
        return [
            *errors,
            invalid("trainer.accelerator", name, f"cpu or auto: {what} available here"),
        ]
    count = {"cuda": torch.cuda.device_count, "mps": lambda: 1, "cpu": os.cpu_count}[accel]()
    is_int = isinstance(devices, int) and not isinstance(devices, bool)
    fixed = devices not in ("auto", -1) and not isinstance(devices, ListConfig)
    if fixed and (not is_int or not 1 <= devices <= (count or 1)):
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
    """``Any``, or a union with ``Any`` as a member (``Mapping[str, Any]`` is not)."""
    if annotation is Any:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_has_any(a) for a in typing.get_args(annotation))
    return False


def type_ok(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits ``annotation`` (pydantic, strict; a list may be a tuple); True when
    it cannot tell."""
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


def _parameters(target: str) -> tuple[dict[str, Any], bool]:
    """A class's constructor arguments with their annotations (its bases' too through
    ``**kwargs``: a ``TokenTask`` subclass takes ``batch_size``), and whether it takes any
    keyword."""
    obj = locate(target)
    mro = obj.__mro__ if inspect.isclass(obj) else ()
    inits = [vars(c)["__init__"] for c in mro if c is not object and "__init__" in vars(c)]
    params: dict[str, Any] = {}
    for init in inits or [obj]:
        own = inspect.signature(init).parameters
        try:  # string annotations (from __future__ import annotations) resolved
            hints = typing.get_type_hints(init)
        except Exception:
            hints = {}
        for name, p in own.items():
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                params.setdefault(name, hints.get(name, p.annotation))
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
            why = exc.__cause__ or exc  # Hydra's "Error loading 'x':" wraps the ImportError
            reason = str(why).splitlines()[0] if str(why) else type(why).__name__
            top = target.split(".")[0]
            fix = (
                f"; make the package {top!r} importable (PYTHONPATH)" if "module" in reason else ""
            )
            errors.append(invalid(f"{node_key}._target_", target, f"an importable class ({reason}{fix})"))  # fmt: skip
            continue
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
            annotation = params[key]
            if not type_ok(value, annotation):
                errors.append(invalid(f"{node_key}.{key}", value, _type_name(annotation)))
    return errors


def config_errors(cfg: DictConfig) -> list[str]:
    """Every problem of a composed config, one line each (empty: valid)."""
    errors = [*_schema_errors(cfg), *_trainer_errors(cfg), *_run_errors(cfg)]
    seen = {line.partition("=")[0] for line in errors}
    targets = [e for e in _target_errors(cfg) if e.partition("=")[0] not in seen]
    return [*errors, *_stale_keys(targets, _command_line())]


def _command_line() -> list[str]:
    """The job's overrides as typed (none outside a Hydra job)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def _stale_keys(errors: list[str], overrides: list[str]) -> list[str]:
    """One line, not one per key, for a node whose ``_target_`` the command line replaced and
    whose old keys the new class does not take."""
    replaced = {}
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key.endswith("._target_"):
            replaced[key.removesuffix("._target_")] = value
    stale: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in errors:
        full_key = line.partition("=")[0]
        node, _, key = full_key.rpartition(".")
        if node in replaced and " is invalid: allowed a known key" in line:
            if node not in stale:
                lines.append(node)  # placeholder, filled below
            stale.setdefault(node, []).append(key)
        else:
            lines.append(line)
    for node, keys in stale.items():
        target = replaced[node]
        takes = ", ".join(_parameters(target)[0])
        drop = " ".join(f"~{node}.{k}" for k in keys)
        lines[lines.index(node)] = (
            f"{node}._target_={target} is invalid: allowed a class that takes the node's keys; "
            f"{target.rpartition('.')[2]} does not take {', '.join(keys)} (left from the config "
            f"it replaced: drop them with {drop}, or write a config for it); it takes {takes}"
        )
    return lines


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
    """One line when a net with ``estimate_params(**kwargs)`` would not fit in memory (found
    before minutes of building it)."""
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
