"""Config validation, run right after composition and before anything is created.

``validate_config(cfg)`` returns a list of ``ConfigError``; each renders as ONE line naming the
key, the bad value and what is allowed. Checks that depend on the machine (accelerator present,
enough devices, precision supported there) and on files (checkpoint to resume, writable output
root) run here too, so a typo costs seconds, not hours.
"""

from __future__ import annotations

import difflib
import inspect
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from project.data.modular import OPERATIONS, is_prime


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

    def num_range(
        self, key: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False
    ) -> bool:
        v = self.get(key)
        ok = _is_num(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            lb, rb = ("(" if lo_open else "["), (")" if hi_open else "]")
            self.fail(key, f"a number in {lb}{lo}, {hi}{rb}", v)
        return ok

    def choice(self, key: str, options: list[Any]) -> bool:
        v = self.get(key)
        ok = v in options
        if not ok:
            self.fail(key, "one of " + ", ".join(str(o) for o in options), v)
        return ok

    def boolean(self, key: str) -> bool:
        v = self.get(key)
        ok = isinstance(v, bool)
        if not ok:
            self.fail(key, "true or false", v)
        return ok


def _check_data(c: _Checker) -> None:
    if c.get("data") is None:
        return
    op_ok = c.choice("data.operation", list(OPERATIONS))
    if c.int_range("data.modulus", 2, 4099):
        p = c.get("data.modulus")
        if op_ok and c.get("data.operation") == "div" and not is_prime(p):
            c.fail("data.modulus", "a prime when data.operation=div (x/y needs inverses mod p)", p)
    c.num_range("data.frac_train", 0.0, 1.0, lo_open=True, hi_open=True)
    c.int_range("data.split_seed", 0)
    bs = c.get("data.batch_size")
    if not (bs is None or bs == -1 or (_is_int(bs) and bs >= 1)):
        c.fail("data.batch_size", "a positive integer, or null / -1 for full batch", bs)
    if c.get("data.shuffle") is not None:
        c.boolean("data.shuffle")


def _check_model(c: _Checker) -> None:
    if c.get("model") is None:
        return
    c.int_range("model.n_layers", 1, 64)
    d_ok = c.int_range("model.d_model", 1, 16384)
    h_ok = c.int_range("model.n_heads", 1, 1024)
    if d_ok and h_ok:
        d, h = c.get("model.d_model"), c.get("model.n_heads")
        if d % h:
            c.fail("model.d_model", f"a multiple of model.n_heads={h} (d_model / n_heads heads)", d)
    c.int_range("model.d_head", 1, 16384, optional=True)
    c.int_range("model.d_mlp", 1, 1 << 17)
    c.choice("model.act", ["relu", "gelu"])
    for key in ("layernorm", "attn_bias", "mlp_bias", "unembed_bias", "compile"):
        c.boolean(f"model.{key}")
    c.num_range("model.lr", 0.0, 10.0, lo_open=True)
    c.num_range("model.weight_decay", 0.0, 100.0)
    betas = c.get("model.betas")
    if not (
        isinstance(betas, list | tuple | ListConfig)
        and len(betas) == 2
        and all(_is_num(b) and 0 <= b < 1 for b in betas)
    ):
        c.fail("model.betas", "two numbers in [0, 1), e.g. [0.9,0.98]", betas)
    c.int_range("model.warmup_steps", 0, 10**7)
    c.choice("model.loss_dtype", ["float32", "float64"])
    if c.choice("model.grokfast", ["none", "ema", "ma", None]):
        c.num_range("model.grokfast_alpha", 0.0, 1.0, hi_open=True)
        c.num_range("model.grokfast_lamb", 0.0, 1000.0)
        c.int_range("model.grokfast_window", 1, 100_000)


_PRECISIONS = ["32", "32-true", "64", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"]
_ACCELERATORS = ["auto", "cpu", "gpu", "cuda", "mps"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_accelerator(name: str) -> str:
    """``auto`` -> the accelerator Lightning will pick here: cuda, mps or cpu."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else ("mps" if _mps_available() else "cpu")
    return "cuda" if name == "gpu" else name


def _check_trainer(c: _Checker) -> None:
    if c.get("trainer") is None:
        return
    c.int_range("trainer.max_epochs", 1, 10**8)
    c.int_range("trainer.check_val_every_n_epoch", 1, 10**8, optional=True)
    c.int_range("trainer.log_every_n_steps", 1, 10**8, optional=True)
    c.int_range("trainer.num_nodes", 1, 100_000)
    if not c.choice("trainer.accelerator", _ACCELERATORS):
        return
    accel = resolve_accelerator(c.get("trainer.accelerator"))
    if accel == "cuda" and not torch.cuda.is_available():
        c.fail("trainer.accelerator", "cpu or auto here: no CUDA GPU is available on this machine")
        return
    if accel == "mps" and not _mps_available():
        c.fail(
            "trainer.accelerator", "cpu or auto here: Apple MPS is not available on this machine"
        )
        return
    available = {
        "cuda": torch.cuda.device_count() if accel == "cuda" else 0,
        "mps": 1,
        "cpu": os.cpu_count() or 1,
    }[accel]
    devices = c.get("trainer.devices")
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


def _check_run(c: _Checker) -> None:
    if not _is_int(c.get("seed")):
        c.fail("seed", "an integer")
    name = c.get("run.name")
    if name is not None and (
        not isinstance(name, str | int) or "/" in str(name) or str(name) in ("", ".", "..")
    ):
        c.fail("run.name", "a plain name without '/' (used in the run dir name) or null", name)
    ckpt = c.get("run.ckpt_path")
    if ckpt is not None:
        from project.utils.helpers import CheckpointError, read_checkpoint

        try:
            hparams = read_checkpoint(ckpt).get("hyper_parameters") or {}
        except CheckpointError as exc:
            c.fail("run.ckpt_path", f"an existing, complete training checkpoint ({exc})", ckpt)
        else:
            _check_resume_architecture(c, hparams)
    root = c.get("run.output_root")
    if root is not None:
        problem = _unwritable(Path(str(root)))
        if problem:
            c.fail("run.output_root", f"a writable directory ({problem})", root)


_ARCHITECTURE = (
    "n_layers", "d_model", "n_heads", "d_head", "d_mlp", "act", "layernorm", "attn_bias",
    "mlp_bias", "unembed_bias",
)  # fmt: skip


def _check_resume_architecture(c: _Checker, hparams: dict[str, Any]) -> None:
    """A resumed run must build the checkpoint's architecture (and data size) again."""
    for key in _ARCHITECTURE:
        value = c.get(f"model.{key}")
        if value is not None and key in hparams and value != hparams[key]:
            c.fail(f"model.{key}", f"{hparams[key]!r}, the value in run.ckpt_path's checkpoint")
    p, classes = c.get("data.modulus"), hparams.get("d_vocab_out")
    if _is_int(p) and _is_int(classes) and p != classes:
        c.fail("data.modulus", f"{classes}, the value in run.ckpt_path's checkpoint")


def _unwritable(root: Path) -> str | None:
    """Why ``root`` cannot hold run dirs, or None. Probes with a temp dir that is removed again."""
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


def _target_nodes(cfg: DictConfig) -> list[str]:
    nodes = ["model", "data", "trainer"]
    callbacks = OmegaConf.select(cfg, "callbacks")
    if isinstance(callbacks, DictConfig):
        nodes += [f"callbacks.{name!s}" for name in callbacks]
    return nodes


def _check_target_keys(c: _Checker, reference: DictConfig | None) -> None:
    """Every key of a ``_target_`` node must be an argument of that class (``+model.typo=1``).

    Nodes whose keys are a subset of the same node in ``reference`` (the default config, already
    known to be valid) are skipped, so the common case imports nothing.
    """
    for node_key in _target_nodes(c.cfg):
        node = OmegaConf.select(c.cfg, node_key)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        keys = [str(k) for k in node if not (str(k).startswith("_") and str(k).endswith("_"))]
        ref = OmegaConf.select(reference, node_key) if reference is not None else None
        if (
            isinstance(ref, DictConfig)
            and ref.get("_target_") == node.get("_target_")
            and set(keys) <= {str(k) for k in ref}
        ):
            continue
        target = node.get("_target_")
        try:
            from hydra.utils import get_object

            params = inspect.signature(get_object(str(target))).parameters
        except Exception as exc:
            c.fail(f"{node_key}._target_", f"an importable class ({type(exc).__name__})", target)
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        for key in keys:
            if key not in params:
                names = [p for p in params if p not in ("self", "args", "kwargs")]
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                value = OmegaConf.select(node, key, default=None, throw_on_missing=False)
                c.fail(
                    f"{node_key}.{key}",
                    f"a known key: {hint}{str(target).rpartition('.')[2]} takes "
                    + ", ".join(names),
                    value,
                )


def validate_config(cfg: DictConfig, reference: DictConfig | None = None) -> list[ConfigError]:
    """All problems of a composed config (empty list = valid).

    ``reference``: the default composed config; ``_target_`` nodes whose keys it already has are
    not imported to check their keys (keeps a bad command line's error fast).
    """
    c = _Checker(cfg)
    _check_data(c)
    _check_model(c)
    _check_trainer(c)
    _check_run(c)
    _check_target_keys(c, reference)
    return c.errors
