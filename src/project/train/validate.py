"""Static config checks, run right after composition and before anything is created.

``validate_config(cfg)`` returns a list of ``ConfigError``; each renders as ONE line naming the
key, the bad value and what is allowed. What is checked here is generic, for any task and net:

* every ``_target_`` node (``data``, ``model``, ``model.net``, ``model.optimizer``, callbacks,
  ...): each key must be an argument of the class (else "did you mean"), and each value must fit
  the argument's type annotation (``int``, ``float``, ``bool``, ``str``, ``list``, ``X | None``);
* the machine (accelerator present, enough devices, precision supported there), the resume
  checkpoint, the output root, ``seed`` and ``run.name``.

Range checks belong to the classes' own constructors; ``project.train.preflight`` builds the task
and the net (on the meta device) before any run dir exists and reports their ``ValueError``s as
one line too.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from project.signatures import signature as constructor_signature
from project.train.rundir import unwritable


@dataclass
class ConfigError:
    key: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        return f"{self.key}={_show(self.value)} is invalid: allowed {self.allowed}"


def _show(value: Any) -> str:
    """``repr`` of the value (strings quoted: ``data.operation='pow'``), containers as lists."""
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    return repr(value)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _Checker:
    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.errors: list[ConfigError] = []

    def get(self, key: str) -> Any:
        return OmegaConf.select(self.cfg, key, default=None, throw_on_missing=False)

    def raw(self, key: str) -> Any:
        """The value as written: an interpolation stays its ``${...}`` string (not resolved)."""
        parent, _, name = key.rpartition(".")
        node = OmegaConf.select(self.cfg, parent) if parent else self.cfg
        if not isinstance(node, DictConfig) or name not in node:
            return None
        raw = OmegaConf.to_container(node, resolve=False)
        return raw.get(name) if isinstance(raw, dict) else None

    def fail(self, key: str, allowed: str, value: Any = None) -> None:
        self.errors.append(ConfigError(key, self.get(key) if value is None else value, allowed))

    def int_range(self, key: str, lo: int, hi: int | None = None, optional: bool = False) -> bool:
        v = self.get(key)
        if v is None and optional:
            return True
        ok = _is_int(v) and v >= lo and (hi is None or v <= hi)
        if not ok:
            hi_s = f" and <= {hi}" if hi is not None else ""
            self.fail(key, f"an integer >= {lo}{hi_s}" + (" or null" if optional else ""), v)
        return ok

    def choice(self, key: str, options: list[Any]) -> bool:
        v = self.get(key)
        ok = v in options
        if not ok:
            self.fail(key, "one of " + ", ".join(str(o) for o in options), v)
        return ok


_PRECISIONS = ["32", "32-true", "64", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"]
_ACCELERATORS = ["auto", "cpu", "gpu", "cuda", "mps"]


def _check_trainer(c: _Checker) -> None:
    if c.get("trainer") is None:
        return
    clip = c.get("trainer.gradient_clip_val")
    if clip is not None and not (_is_num(clip) and math.isfinite(clip) and clip >= 0):
        c.fail("trainer.gradient_clip_val", "a finite number >= 0, or null (no clipping)", clip)
    c.int_range("trainer.max_epochs", 1, 10**8)
    c.int_range("trainer.check_val_every_n_epoch", 1, 10**8, optional=True)
    c.int_range("trainer.log_every_n_steps", 1, 10**8, optional=True)
    c.int_range("trainer.num_nodes", 1, 100_000)
    if not c.choice("trainer.accelerator", _ACCELERATORS):
        return
    name, devices = c.get("trainer.accelerator"), c.get("trainer.devices")
    precision = str(c.get("trainer.precision"))
    if name in ("auto", "cpu") and devices == 1 and precision in ("32", "32-true", "64", "64-true"):
        return  # nothing left depends on this machine's accelerators: no torch import needed
    import torch

    from project.utils.helpers import auto_device

    accel = auto_device().type if name == "auto" else ("cuda" if name == "gpu" else name)
    if accel == "cuda" and not torch.cuda.is_available():
        c.fail("trainer.accelerator", "cpu or auto here: no CUDA GPU is available on this machine")
        return
    if accel == "mps" and not torch.backends.mps.is_available():
        c.fail(
            "trainer.accelerator", "cpu or auto here: Apple MPS is not available on this machine"
        )
        return
    available = {
        "cuda": torch.cuda.device_count() if accel == "cuda" else 0,
        "mps": 1,
        "cpu": os.cpu_count() or 1,
    }[accel]
    if devices == "auto" or devices == -1:
        pass
    elif isinstance(devices, list | ListConfig):
        if accel == "cpu" or not all(_is_int(d) and 0 <= d < available for d in devices):
            c.fail(
                "trainer.devices", f"device indices in [0, {available}) on {accel}", list(devices)
            )
    elif not (_is_int(devices) and 1 <= devices <= available):
        c.fail(
            "trainer.devices",
            f"an integer in [1, {available}] ({accel} devices available here)",
            devices,
        )
    precision = str(c.get("trainer.precision"))
    if precision not in _PRECISIONS:
        c.fail("trainer.precision", "one of 32, 16-mixed, bf16-mixed, 64, 16-true, bf16-true")
    elif accel == "cpu" and precision in ("16-mixed", "16-true"):
        c.fail("trainer.precision", f"32 or bf16-mixed on cpu ({precision} needs a GPU)")
    elif accel == "mps" and precision in ("64", "64-true"):
        c.fail("trainer.precision", "32, 16-mixed or bf16-mixed on mps (no float64 on Apple GPUs)")
    elif accel == "cuda" and precision.startswith("bf16") and not torch.cuda.is_bf16_supported():
        c.fail("trainer.precision", "32 or 16-mixed: this GPU does not support bfloat16")


MAX_SEED = 2**32 - 1  # numpy's seed range, which seed_everything uses
MAX_NAME_BYTES = 200  # the run dir is <HH-MM-SS>-<name>[_N]: a file name is at most 255 bytes


def _check_run(c: _Checker) -> None:
    c.int_range("seed", 0, MAX_SEED)
    name = c.get("run.name")
    if name is not None and (
        not isinstance(name, str | int) or "/" in str(name) or str(name) in ("", ".", "..")
    ):
        c.fail("run.name", "a plain name without '/' (used in the run dir name) or null", name)
    elif name is not None and len(str(name).encode()) > MAX_NAME_BYTES:
        shown = f"{str(name)[:20]}... ({len(str(name).encode())} bytes)"
        c.fail("run.name", f"a name of at most {MAX_NAME_BYTES} bytes (a file name)", shown)
    for key in ("run.ckpt_path", "run.init_from"):
        if c.get(key) is not None:
            from project.checkpoint import checkpoint_problem  # torch: only for a checkpoint

            if problem := checkpoint_problem(c.get(key), key):
                c.fail(key, problem)
    if c.get("run.init_from") is not None and c.get("run.ckpt_path") is not None:
        c.fail("run.init_from", "null when run.ckpt_path is set (a resume has its weights)")
    root = c.get("run.output_root")
    if root is not None and not str(root).strip():
        c.fail("run.output_root", "a directory path (empty would write runs into the cwd)", root)
    elif root is not None:
        problem = unwritable(Path(str(root)))
        if problem:
            c.fail("run.output_root", f"a writable directory ({problem})", root)
    for key in ("logger.save_dir", "logger.dir"):  # a logger writing outside the run dir
        where = c.raw(key)
        if isinstance(where, str) and "${" not in where:
            if not where.strip():
                c.fail(key, "a directory path", where)
            elif problem := unwritable(Path(where)):
                c.fail(key, f"a writable directory ({problem})", where)


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


def _has_any(annotation: Any) -> bool:
    return annotation is Any or any(_has_any(a) for a in typing.get_args(annotation))


@functools.lru_cache(maxsize=256)
def _adapter(annotation: Any) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    return TypeAdapter(annotation, config=ConfigDict(strict=True, arbitrary_types_allowed=True))


def _type_ok(value: Any, annotation: Any) -> bool | None:
    """Whether ``value`` fits ``annotation``, by pydantic in strict mode (no ``"3"`` or ``True``
    for an int; a list for a fixed-length tuple); None when it cannot tell (``Any`` in it, a type
    pydantic does not check)."""
    from pydantic import ValidationError

    if annotation is inspect.Parameter.empty or _has_any(annotation):
        return None
    try:
        adapter = _adapter(annotation)
    except Exception:  # unhashable or not a type pydantic knows
        return None
    for candidate in (value, tuple(value)) if isinstance(value, list) else (value,):
        try:
            adapter.validate_python(candidate)
            return True
        except ValidationError:
            continue
        except Exception:
            return None
    return False


def _type_name(annotation: Any) -> str:
    """``Union[float, Tensor]``, ``one of add, sub``: module prefixes dropped."""
    import re

    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    text = str(annotation).replace("<class '", "").replace("'>", "").replace("NoneType", "None")
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", text)  # typing.Union -> Union


def _check_target_keys(c: _Checker, reference: DictConfig | None) -> None:
    """Every key of a ``_target_`` node must be an argument of that class, of the annotated type.

    Nodes identical to the same node in ``reference`` (the default config, already known to be
    valid) are skipped, so the common case imports nothing.
    """
    known = target_nodes(reference) if reference is not None else {}
    for node_key, node in target_nodes(c.cfg).items():
        if known.get(node_key) == node:
            continue
        keys = [str(k) for k in node if not (str(k).startswith("_") and str(k).endswith("_"))]
        target = node.get("_target_")
        signature = constructor_signature(str(target))
        if isinstance(signature, Exception):
            detail = [ln for ln in str(signature).splitlines() if "No module named" in ln]
            reason = detail[0].strip() if detail else type(signature).__name__
            if detail:
                from project.trust import import_fix

                reason += f"; {import_fix(str(target))}"
            c.fail(f"{node_key}._target_", f"an importable class ({reason})", target)
            continue
        names, hints, takes_any = (
            signature.names,
            signature.annotations,
            signature.takes_any_keyword,
        )
        for key in keys:
            value = node[key]
            if key not in names:
                if takes_any:
                    continue
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {node_key}.{close[0]}? " if close else ""
                c.fail(
                    f"{node_key}.{key}",
                    f"a known key: {hint}{str(target).rpartition('.')[2]} takes "
                    + ", ".join(names),
                    value,
                )
                continue
            default = (known.get(node_key) or {}).get(key)
            if (
                isinstance(default, dict)
                and "_target_" in default
                and not isinstance(value, dict | type(None))
            ):
                c.fail(
                    f"{node_key}.{key}",
                    f"a config node with _target_ (the default is {default['_target_']}) or null",
                    value,
                )
                continue
            if (isinstance(value, dict) and "_target_" in value) or (
                isinstance(value, str) and "${" in value
            ):
                continue  # a nested object (checked as a node of its own) or an interpolation
            if any(e.key == f"{node_key}.{key}" for e in c.errors):
                continue  # already reported with a more specific range
            annotation = hints.get(key, Any)
            if isinstance(annotation, str) or _type_ok(value, annotation) is not False:
                continue
            c.fail(f"{node_key}.{key}", f"a value of type {_type_name(annotation)}", value)


def validate_config(cfg: DictConfig, reference: DictConfig | None = None) -> list[ConfigError]:
    """All problems of a composed config (empty list = valid).

    ``reference``: the default composed config; ``_target_`` nodes whose keys it already has are
    not imported to check their keys (keeps a bad command line's error fast).
    """
    c = _Checker(cfg)
    _check_trainer(c)
    _check_run(c)
    _check_target_keys(c, reference)
    return c.errors
