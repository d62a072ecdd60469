"""The preflight's builds: a config's task, module, optimiser and changed callbacks built before
any run dir exists (the net on the meta device, or for real when small, for one forward on the
task's examples), so a constructor's own ``ValueError``, a net's wrong output shape, a net too
big for memory or a resume checkpoint's different net is one line and exit 2. Used by
``project.train.preflight``; the builder itself is ``project.build``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from project.build import (
    NetSizeError,
    cause,
    error_line,
    fill_net_sizes,
    instantiate_task,
    task_sizes,
)


def check_buildable(
    cfg: DictConfig, checkpoint: dict[str, Any] | None = None, skip: tuple[str, ...] = ()
) -> list[str]:
    """Build the task, then the module (net on the meta device: no memory, no time), and the
    optimiser and scheduler on a dummy parameter. Returns one line per failure.

    ``skip``: config nodes (``"data"``, ``"model"``) already known to be invalid. ``checkpoint``:
    a resume checkpoint whose saved net config must match this one.
    """
    errors: list[str] = []
    datamodule = None
    if "data" not in skip:
        try:
            datamodule = instantiate_task(cfg)
            fill_net_sizes(cfg, datamodule)
        except NetSizeError as exc:
            datamodule = None
            errors.append(f"model.net.{exc}")
        except Exception as exc:
            datamodule = None
            errors.append(error_line("data", exc, OmegaConf.to_container(cfg.data, resolve=False)))
    if "model" in skip:
        return errors
    errors += optimizer_errors(cfg)
    if datamodule is None:  # the net's sizes come from the task
        return errors
    try:
        if problem := memory_problem(cfg):
            return [*errors, problem]
        module = _build_module_on_meta(cfg)
    except Exception as exc:
        errors.append(_module_error_line(cfg, exc))
        return errors
    if checkpoint is not None:
        errors += _resume_mismatch(cfg, module, checkpoint)
    if not errors and (problem := output_problem(cfg, datamodule, module)):
        errors.append(problem)
    return errors


def _plain(cfg: DictConfig, key: str, drop: tuple[str, ...] = ()) -> Any:
    """Config node ``key`` as written (unresolved), without the keys in ``drop``."""
    node = OmegaConf.select(cfg, key)
    node = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else node
    return {k: v for k, v in node.items() if k not in drop} if isinstance(node, dict) else node


def build_errors(
    checked: list[tuple[DictConfig, tuple[str, ...]]], reference: DictConfig
) -> list[str]:
    """The preflight's builds: each distinct (task, module, checkpoint) of the jobs ``checked``
    (each with the nodes already reported invalid) once; the classes' own errors as lines.

    The default config's own pair is skipped: it is known to build, and building means importing
    torch and Lightning (seconds), which a typo elsewhere on the command line should not wait
    for. A job that changed only the optimiser or scheduler has them built on a dummy parameter
    with torch alone."""
    keys = ("data", "model", "run.ckpt_path", "run.init_from")
    lines: list[str] = []
    seen = {repr([_plain(reference, k) for k in keys])}
    for cfg, bad in checked:
        key = repr([_plain(cfg, k) for k in keys])
        if key in seen or not all(isinstance(cfg.get(k), DictConfig) for k in ("data", "model")):
            continue
        ckpt = OmegaConf.select(cfg, "run.ckpt_path") or OmegaConf.select(cfg, "run.init_from")
        changed = {k for k in ("data", "model") if cfg.get(k) != reference.get(k)}
        if changed <= set(bad) and not ckpt:
            continue  # what differs from the default is already reported
        seen.add(key)
        checkpoint = None
        if ckpt:
            from project.checkpoint import CheckpointError, read_checkpoint

            with contextlib.suppress(CheckpointError):  # else already reported by validate_config
                checkpoint = read_checkpoint(ckpt)
        # only the optimiser or scheduler changed: the task and the net are the default's
        rest = [("data", ()), ("seed", ()), ("model", ("optimizer", "scheduler"))]
        if checkpoint is None and all(_plain(cfg, *r) == _plain(reference, *r) for r in rest):
            new = optimizer_errors(cfg) if "model" not in bad else []
        else:
            new = check_buildable(cfg, checkpoint, bad)
        lines += [line for line in new if line not in lines]
    return lines


def callback_errors(configs: list[DictConfig], reference: DictConfig) -> list[str]:
    """Build each callback whose node differs from the default config's (once per distinct
    node), so its constructor's own checks (``callbacks.run_summary.threshold=nan``) run before
    anything is created. A node that needs the run dir (``${hydra:runtime.output_dir}``) is
    built in the run instead."""
    from hydra.utils import instantiate

    lines: list[str] = []
    built: set[str] = set()
    defaults = reference.get("callbacks") or {}
    for cfg in configs:
        for name, node in (cfg.get("callbacks") or {}).items():
            if not isinstance(node, DictConfig) or "_target_" not in node:
                continue
            raw = OmegaConf.to_container(node, resolve=False)
            if node == defaults.get(name) or "${hydra:" in str(raw) or f"{name}={raw!r}" in built:
                continue
            built.add(f"{name}={raw!r}")
            try:
                instantiate(node)
            except Exception as exc:
                if (line := error_line(f"callbacks.{name}", exc, raw)) not in lines:
                    lines.append(line)
    return lines


FORWARD_CHECK_MAX_PARAMS = 50_000_000  # larger nets are checked on the meta device (no memory)
FORWARD_CHECK_BATCH = 4


def _shape(shape: Any) -> str:
    return "[" + ", ".join(str(int(n)) for n in shape) + "]"


def output_problem(cfg: DictConfig, datamodule: Any, module: Any) -> str | None:
    """One forward of the net on a few real examples of the task, on the CPU, before any run dir
    exists: the logits must be ``[batch, pos, d_vocab_out]`` (with ``last_position_only`` and a
    net taking ``last_only``, ``[batch, 1 or pos, d_vocab_out]``). A net that forgot its
    unembedding (``[b, pos, 2 * vocab]``: the loss would silently run over the wrong classes) or
    returns ``[b, vocab]`` is one line naming ``model.net``, the shape got and the shape required.

    The net is built for real (seeded, RNG state restored) when it has at most
    ``FORWARD_CHECK_MAX_PARAMS`` parameters, else the forward runs on the meta device (shapes
    only). A task that cannot hand out a batch here, or an op without a meta kernel, skips it.
    """
    import inspect

    import torch
    from hydra.utils import instantiate

    net_cfg = OmegaConf.select(cfg, "model.net")
    meta_net = getattr(module, "net", None)
    if not isinstance(net_cfg, DictConfig) or not isinstance(meta_net, torch.nn.Module):
        return None
    try:
        datamodule.setup("fit")
        tokens = next(iter(datamodule.train_dataloader()))[0][:FORWARD_CHECK_BATCH]
    except Exception:
        return None  # not this check's business: the task reports it where it happens
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        return None
    sizes = task_sizes(datamodule)
    last_only = bool(getattr(datamodule, "last_position_only", False))
    n_params = sum(p.numel() for p in meta_net.parameters())
    on_meta = n_params > FORWARD_CHECK_MAX_PARAMS
    target = str(net_cfg.get("_target_"))
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            net = meta_net if on_meta else instantiate(net_cfg)
            net.eval()
            x = tokens.to("meta") if on_meta else tokens.cpu()
            takes_last = last_only and "last_only" in inspect.signature(net.forward).parameters
            out = net(x, last_only=True) if takes_last else net(x)
    except NotImplementedError:
        return None if on_meta else f"model.net: forward failed on a batch of the task ({target})"
    except Exception as exc:
        if on_meta:
            return None
        what = error_line("model.net", exc).partition(": ")[2]
        return (
            f"model.net: forward failed on a batch of {len(tokens)} examples of the task "
            f"(tokens {_shape(tokens.shape)}, {target}): {what}"
        )
    batch, pos = tokens.shape
    required = f"[{batch}, {pos}, {sizes['d_vocab_out']}]"
    if takes_last:
        required = f"[{batch}, 1 or {pos}, {sizes['d_vocab_out']}]"
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    ok = (
        shape is not None
        and len(shape) == 3
        and shape[0] == batch
        and shape[2] == sizes["d_vocab_out"]
        and (shape[1] == pos or (takes_last and shape[1] == 1))
    )
    if ok:
        return None
    got = _shape(shape) if shape is not None else f"a {type(out).__name__}, not a tensor"
    return (
        f"model.net is invalid: its forward returned {got} for tokens {_shape(tokens.shape)} of "
        f"the task; allowed logits [batch, pos, d_vocab_out] = {required} ({target})"
    )


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


def memory_problem(cfg: DictConfig, available: int | None = None) -> str | None:
    """One line when the net's parameters alone (with gradients and AdamW state) would not fit in
    memory, estimated without building it: the net class's ``estimate_params(**kwargs)`` when it
    has one (a million layers would take minutes to build even on the meta device), else a build
    on the meta device."""
    import torch
    from hydra.utils import instantiate

    from project.trust import locate

    net = OmegaConf.select(cfg, "model.net")
    if not isinstance(net, DictConfig) or "_target_" not in net:
        return None
    kwargs = OmegaConf.to_container(net, resolve=True)
    assert isinstance(kwargs, dict)
    estimate = getattr(locate(str(net._target_)), "estimate_params", None)
    if callable(estimate):
        n_params = int(estimate(**{str(k): v for k, v in kwargs.items() if str(k)[0] != "_"}))
    else:
        with torch.device("meta"):
            n_params = sum(p.numel() for p in instantiate(net).parameters())
    need = n_params * BYTES_PER_PARAM
    available = available_memory() if available is None else available
    if need <= available:
        return None
    sizes = ", ".join(
        f"model.net.{k!s}={v}" for k, v in kwargs.items() if isinstance(v, int) and k != "_target_"
    )
    return (
        f"model.net is invalid: allowed a net that fits in memory: {n_params:.3g} parameters need "
        f"~{need / 2**30:.1f} GiB (weights, gradients, AdamW state) and {available / 2**30:.1f} "
        f"GiB are available ({sizes})"
    )


def _build_module_on_meta(cfg: DictConfig) -> Any:
    import torch
    from hydra.utils import instantiate

    with torch.device("meta"):
        return instantiate(cfg.model)


def _module_error_line(cfg: DictConfig, exc: BaseException) -> str:
    """Name ``model.net`` when the message is about one of the net's arguments."""
    text = str(cause(exc))
    net = OmegaConf.select(cfg, "model.net")
    if isinstance(net, DictConfig) and any(f"{k!s}=" in text for k in net if k != "_target_"):
        return error_line("model.net", exc, OmegaConf.to_container(net, resolve=False))
    return error_line("model", exc, OmegaConf.to_container(cfg.model, resolve=False))


def optimizer_errors(cfg: DictConfig) -> list[str]:
    """Call the optimiser and scheduler partials on a dummy parameter: their own checks run."""
    import torch
    from hydra.utils import instantiate

    errors = []
    dummy = [torch.nn.Parameter(torch.zeros(1))]
    optimizer: Any = torch.optim.SGD(dummy, lr=0.1)
    for key in ("optimizer", "scheduler"):
        spec = OmegaConf.select(cfg, f"model.{key}")
        if not isinstance(spec, DictConfig) or "_target_" not in spec:
            continue
        try:
            built = instantiate(spec, _partial_=True)
            if key == "optimizer":
                optimizer = built(params=dummy)
            else:
                built(optimizer=optimizer)
        except Exception as exc:
            node = OmegaConf.to_container(spec)
            errors.append(
                _torch_range_line(f"model.{key}", exc, node)
                or error_line(f"model.{key}", exc, node)
            )
    return errors


# torch.optim's own range checks ("Invalid learning rate: -1") -> (argument, what is allowed)
_TORCH_RANGES = {
    "Invalid learning rate": ("lr", "a number >= 0"),
    "Invalid epsilon value": ("eps", "a number >= 0"),
    "Invalid beta parameter": ("betas", "two numbers in [0, 1)"),
    "Invalid weight_decay value": ("weight_decay", "a number >= 0"),
    "Invalid momentum value": ("momentum", "a number >= 0"),
    "Invalid alpha value": ("alpha", "a number >= 0"),
}


def _torch_range_line(node_key: str, exc: BaseException, node: Any) -> str | None:
    """A torch optimiser's range error as ``model.optimizer.lr=-1 is invalid: allowed ...``."""
    message = str(cause(exc)).strip()
    for prefix, (arg, allowed) in _TORCH_RANGES.items():
        if message.startswith(prefix) and isinstance(node, dict) and arg in node:
            target = str(node.get("_target_", "")).rpartition(".")[2]
            return (
                f"{node_key}.{arg}={node[arg]} is invalid: allowed {allowed} ({target}: {message})"
            )
    return None


def _resume_mismatch(cfg: DictConfig, module: Any, checkpoint: dict[str, Any]) -> list[str]:
    """A resumed run must build the checkpoint's net again: one line per differing argument."""
    from project.train.rundir import find_run_dir
    from project.trust import UntrustedTargetError, check_stored, searchpath_dirs

    saved = (checkpoint.get("hyper_parameters") or {}).get("net")
    current = OmegaConf.select(cfg, "model.net")
    if not isinstance(saved, dict) or not isinstance(current, DictConfig):
        return []
    key = "run.ckpt_path" if OmegaConf.select(cfg, "run.ckpt_path") else "run.init_from"
    try:  # never quote a crafted target back as "allowed"
        ckpt_path = OmegaConf.select(cfg, key)
        dirs = searchpath_dirs(find_run_dir(ckpt_path)) if ckpt_path else []
        check_stored(saved, "model.net", f"{key}'s checkpoint (hyper_parameters.net)", dirs)
    except UntrustedTargetError as exc:
        return [str(exc)]
    current_dict = OmegaConf.to_container(current, resolve=True)
    assert isinstance(current_dict, dict)
    lines = []
    for name, value in current_dict.items():
        if name in saved and saved[name] != value and name != "_target_":
            lines.append(
                f"model.net.{name!s}={value!r} is invalid: allowed {saved[name]!r}, the value in "
                f"{key}'s checkpoint (its weights need the same net)"
            )
    if saved.get("_target_") != current_dict.get("_target_"):
        lines.append(
            f"model.net._target_={current_dict.get('_target_')!r} is invalid: allowed "
            f"{saved.get('_target_')!r}, the net in {key}'s checkpoint"
        )
    return lines
