"""Before Hydra creates anything: parse the command line, compose every job's config, validate.

Errors come out as one line each (``error: <key>=<value> is invalid: allowed ...``), exit code 2,
and nothing is created: no run dir, no logger dir, no remote touched. Two stages: static checks
(``validate.validate_config``: unknown keys, types, machine, files) on every job, then, if those
pass, each distinct task and module is built once (the net on the meta device) so the classes' own
``ValueError``s, a user's included, surface the same way.

Multiruns: every job of a sweep is checked, whatever sweeper or launcher is installed. Choice and
range sweeps are expanded (up to ``MAX_JOBS_CHECKED`` jobs); an ``interval(a, b)`` (Optuna) is
checked at both ends; ``hydra.sweeper.params`` in a config (an ``hparams_search`` preset) is
treated like command-line sweeps. Also turns ``run.ckpt_path=<run_dir>/checkpoints/last.ckpt``
into "resume that run in its own dir, with its own overrides" (later overrides still win).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import difflib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from project.signatures import signature
from project.train.rundir import find_run_dir
from project.train.validate import validate_config
from project.trust import TEMPLATE_CONFIGS, replayed_untrusted

CONFIG_DIR = str(TEMPLATE_CONFIGS)  # in the package (a wheel has them); configs/ links there
MAX_JOBS_CHECKED = 256
PARAMS_PREFIX = "hydra.sweeper.params."
MULTIRUN_MODE = "hydra.mode=MULTIRUN"
# Hydra plugins that live in an optional extra (pyproject.toml), by the config they provide
OPTIONAL_PLUGINS = {"hydra/sweeper/optuna": "optuna"}


class PreflightError(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _override_value(overrides: list[str], key: str) -> str | None:
    value = None
    for ov in overrides:
        k, sep, v = ov.lstrip("+~").partition("=")
        if sep and k == key:
            value = v
    if value and len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]  # a quoted path: run.ckpt_path='.../epoch=000400.ckpt'
    return value


def resume_overrides(overrides: list[str]) -> list[str]:
    """Resume in the checkpoint's own run dir with that run's overrides, unless told otherwise.
    ``run.init_from=<a checkpoint of a run dir>`` (a new run from its weights) reuses that run's
    overrides too, so the net is built the same, but gets a run dir of its own."""
    ckpt = _override_value(overrides, "run.ckpt_path")
    new_run = not ckpt or ckpt == "null"
    if new_run:
        ckpt = _override_value(overrides, "run.init_from")
    if not ckpt or ckpt == "null" or _override_value(overrides, "hydra.run.dir") is not None:
        return overrides
    run_dir = find_run_dir(ckpt)
    if run_dir is None:
        return overrides
    saved = run_dir / ".hydra" / "overrides.yaml"
    previous = yaml.safe_load(saved.read_text()) if saved.is_file() else []
    skip: tuple[str, ...] = ("run.ckpt_path=", "hydra.run.dir=", "run.init_from=")
    skip += ("run.name=",) if new_run else ()  # a new run: named by this command line
    previous = [ov for ov in previous or [] if not ov.lstrip("+~").startswith(skip)]
    hydra_file = run_dir / ".hydra" / "hydra.yaml"  # the user's config dirs (hydra.searchpath)
    if hydra_file.is_file():
        saved_hydra = yaml.safe_load(hydra_file.read_text()) or {}
        hydra_overrides = (saved_hydra.get("hydra", {}).get("overrides", {}) or {}).get("hydra")
        previous = [
            o for o in hydra_overrides or [] if o.startswith("hydra.searchpath=")
        ] + previous
    return (
        [*previous, *overrides] if new_run else [*previous, *overrides, f"hydra.run.dir={run_dir}"]
    )


def finished_run(overrides: list[str]) -> str | None:
    """A message when ``run.ckpt_path`` is the ``last.ckpt`` of a run whose ``summary.json`` says
    ``finished`` and ``trainer.max_epochs`` is what that run had: rerunning its resume command
    has nothing to do (raise ``trainer.max_epochs`` to train on)."""
    ckpt = _override_value(overrides, "run.ckpt_path")
    run_dir = find_run_dir(ckpt) if ckpt and ckpt != "null" else None
    if run_dir is None or Path(str(ckpt)).name != "last.ckpt":
        return None
    from project.summary import read_summary

    record = read_summary(run_dir)
    try:
        saved = yaml.safe_load((run_dir / "resolved_config.yaml").read_text())
        saved_epochs = saved["trainer"]["max_epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record is None or record.status != "finished":
        return None
    flags = [o for o in overrides if not o.startswith("hydra.run.dir=")]
    try:
        if OmegaConf.select(compose_config(flags), "trainer.max_epochs") != saved_epochs:
            return None
    except Exception:  # not composable here: let the run report it
        return None
    return (
        f"run {run_dir} is finished ({record.epochs} epochs; summary.json): nothing to do, "
        "the run is left as it is (raise trainer.max_epochs to train on)"
    )


# While ``check`` runs: what it composed, with the ``hydra`` node, by (config name, overrides),
# so each job is composed once (and a single run's config goes on to Hydra's ``run_job`` as is)
_composed: dict[tuple[str, tuple[str, ...]], DictConfig] | None = None


def compose_config(
    overrides: list[str], config_name: str = "config", with_hydra: bool = False
) -> DictConfig:
    """Compose the job config exactly as the entrypoint sees it (``hydra`` node only on request)."""
    key = (config_name, tuple(overrides))
    full = _composed.get(key) if _composed is not None else None
    if full is None:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="run"):
            full = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
        if _composed is not None:
            _composed[key] = full
    if with_hydra:
        return full
    cfg = copy.deepcopy(full)
    with open_dict(cfg):
        del cfg["hydra"]  # as compose(return_hydra_config=False) does
    return cfg


def _default_node(parent: str, overrides: list[str] | None = None) -> tuple[list[str], Any]:
    """Keys and ``_target_`` of ``parent`` in the config these overrides select."""
    try:
        node = compose_config(overrides or [])
        node = OmegaConf.select(node, parent) if parent else node
        if not isinstance(node, DictConfig):
            return [], None
        keys = sorted(str(k) for k in node if not str(k).startswith("_"))
        return keys, node.get("_target_")
    except Exception:
        return [], None


def _takes(target: Any, name: str) -> bool:
    """Whether ``target``'s constructor names an argument ``name`` (not merely ``**kwargs``: a
    typo there would be passed on and fail later)."""
    found = signature(str(target)) if target else None
    return found is not None and not isinstance(found, Exception) and name in found.names


def _one_line(exc: BaseException, overrides: list[str] | None = None) -> str:
    """Hydra/OmegaConf composition errors as one line: key, value, what is allowed."""
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        group, _, choice = exc.missing_cfg_file.rpartition("/")
        options = ", ".join(exc.options or [])
        if f"{group}/{choice}" in OPTIONAL_PLUGINS:
            extra = OPTIONAL_PLUGINS[f"{group}/{choice}"]
            return (
                f"{group}={choice} is not installed: it comes with the `{extra}` extra "
                f"(uv sync --extra {extra}); installed: {options}"
            )
        if group:
            return f"{group}={choice} is invalid: no such config; allowed: {options}"
    cause = exc.__cause__ or exc.__context__
    full_key = getattr(cause, "full_key", None) or getattr(exc, "full_key", None)
    if full_key and "not in struct" in str(cause or exc):
        parent = full_key.rpartition(".")[0]
        value = _override_value(overrides or [], full_key)
        shown = f"{full_key}={value}" if value is not None else full_key
        others = [o for o in overrides or [] if not o.lstrip("+~").startswith(full_key)]
        keys, target = _default_node(parent, others)
        if not keys:
            keys, target = _default_node(parent)
        where = f"under {parent}" if parent else "at the top level"
        name = full_key.rpartition(".")[2]
        if value is not None and name != "_target_" and _takes(target, name):
            return (
                f"{shown} is invalid: {full_key} is not in the config; {target} takes it, "
                f"so add it with +{shown}"
            )
        close = difflib.get_close_matches(name, keys, n=1)
        hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
        allowed = f"; {hint}allowed keys {where}: {', '.join(keys)}" if keys else ""
        return f"{shown} is invalid: unknown key{allowed}"
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def _sweep_values(override: Any) -> list[str] | None:
    """The values a sweep override stands for, as strings; None for a plain override."""
    if not override.is_sweep_override():
        return None
    from hydra.core.override_parser.types import IntervalSweep

    sweep = override.value()
    if isinstance(sweep, IntervalSweep):  # continuous: check both ends
        return [str(sweep.start), str(sweep.end)]
    return list(override.sweep_string_iterator())


def expand_jobs(
    overrides: list[str], multirun: bool, config_name: str = "config"
) -> list[list[str]]:
    """The override lists of the jobs a command stands for (all, up to ``MAX_JOBS_CHECKED``).

    A command is a multirun with ``-m`` or when its config says ``hydra.mode: MULTIRUN`` (an
    ``hparams_search`` preset). Search spaces come from the command line (``key=1,2``,
    ``key=interval(a,b)``, ``hydra.sweeper.params.key=...``) and from ``hydra.sweeper.params`` in
    the config; the command line wins.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    pairs = list(zip(parsed, overrides, strict=True))  # each with the override as typed
    plain = [line for ov, line in pairs if not ov.is_sweep_override()]
    plain = [o for o in plain if not o.lstrip("+~").startswith(PARAMS_PREFIX)]
    try:
        hydra_cfg = compose_config(plain, config_name, True).hydra
    except (HydraException, OmegaConfBaseException):
        if not multirun:  # reported by the job check below, with the overrides' context
            return [overrides]
        raise
    if not multirun and "MULTIRUN" not in str(hydra_cfg.get("mode")):
        return [overrides]
    specs: dict[str, str] = {}  # key -> search space spec, in order of precedence (last wins)
    params = OmegaConf.select(hydra_cfg, "sweeper.params")
    if isinstance(params, DictConfig):  # an hparams_search preset's search space
        specs.update({str(k): str(v) for k, v in params.items()})
    axes: list[list[str]] = []
    for ov, line in pairs:
        key = ov.get_key_element()
        if key.lstrip("+~").startswith(PARAMS_PREFIX):
            specs[key.lstrip("+~")[len(PARAMS_PREFIX) :]] = line.partition("=")[2]
        elif ov.is_sweep_override():
            specs[key] = line.partition("=")[2]
        else:
            axes.append([line])
    for key, spec in specs.items():
        (ov,) = parser.parse_overrides([f"{key}={spec}"])
        values = _sweep_values(ov)
        axes.append([f"{key}={v}" for v in values] if values is not None else [f"{key}={spec}"])
    if multirun and "MULTIRUN" not in str(hydra_cfg.get("mode")):
        axes.append([MULTIRUN_MODE])  # Hydra's main adds it for -m: each job is composed with it
    jobs: list[list[str]] = [[]]
    for axis in axes:
        jobs = [job + [value] for job in jobs for value in axis][:MAX_JOBS_CHECKED]
    return jobs


def _group_path_errors(overrides: list[str]) -> list[str]:
    """``experiment=../config``: a group choice that climbs out of its group (Hydra would load a
    config from elsewhere and report a confusing key with no options)."""
    lines = []
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        group = Path(CONFIG_DIR) / key
        if sep and "." not in key and group.is_dir() and (".." in value or value.startswith("/")):
            options = ", ".join(sorted(p.stem for p in group.glob("*.yaml")))
            lines.append(f"{key}={value} is invalid: no such config; allowed: {options}")
    return lines


@dataclass
class Sweep:
    """A multirun as the preflight checked it, for the entrypoint to hand to Hydra's sweeper:
    Hydra's overrides (with the ``hydra.mode=MULTIRUN`` Hydra's main adds for ``-m``) and each
    checked job's config as composed, by ``sweep_key``."""

    overrides: list[str]
    config_name: str
    composed: dict[tuple[str, tuple[str, ...]], DictConfig]


def sweep_key(config_name: str, overrides: list[str]) -> tuple[str, tuple[str, ...]] | None:
    """A sweep job's overrides in the form Hydra's sweeper writes them (``lr=1e-2`` is
    ``lr=0.01`` there) and in any order (the preflight and the sweeper order a job's overrides
    differently); None where a key is set twice (then order matters)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return None
    keys = [ov.get_key_element() for ov in parsed]
    if len(set(keys)) != len(keys):
        return None
    written = sorted(f"{ov.get_key_element()}={ov.get_value_element_as_str()}" for ov in parsed)
    return config_name, tuple(written)


def check(
    overrides: list[str], multirun: bool = False, config_name: str = "config"
) -> DictConfig | Sweep | None:
    """Raise ``PreflightError`` (one line per problem) if any job of this command is invalid.

    Returns what it composed, with the ``hydra`` node, for the entrypoint to run as is (the
    command line is composed once): a single run's config, or a multirun's ``Sweep``."""
    global _composed
    _composed = {}
    try:
        jobs = _check_jobs(overrides, multirun, config_name)
        single = _composed.get((config_name, tuple(overrides)))
        if multirun or jobs != [overrides] or "MULTIRUN" in str(single and single.hydra.mode):
            return _sweep(jobs, overrides, config_name)
        return single
    finally:
        _composed = None


def _sweep(jobs: list[list[str]], overrides: list[str], config_name: str) -> Sweep:
    assert _composed is not None
    if jobs[0][-1:] == [MULTIRUN_MODE] and overrides[-1:] != [MULTIRUN_MODE]:
        overrides = [*overrides, MULTIRUN_MODE]  # expand_jobs added it for -m, as Hydra's main
    composed = {}
    for job in jobs:
        key = sweep_key(config_name, job)
        cfg = _composed.get((config_name, tuple(job)))
        if key is not None and cfg is not None:
            composed[key] = cfg
    return Sweep(overrides, config_name, composed)


def _check_jobs(overrides: list[str], multirun: bool, config_name: str) -> list[list[str]]:
    if group_errors := _group_path_errors(overrides):
        raise PreflightError(group_errors)
    try:
        jobs = expand_jobs(overrides, multirun, config_name)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise PreflightError([_one_line(exc, overrides)]) from None
    lines: list[str] = []
    reference = compose_config([], config_name)  # target keys already known to be valid
    checked: list[tuple[DictConfig, tuple[str, ...]]] = []
    keys = set()  # before the builds below fill in what they fill in (model.net sizes)
    for job in jobs:
        try:
            cfg = compose_config(job, config_name) if job else reference
        except (HydraException, OmegaConfBaseException) as exc:
            lines.append(_one_line(exc, job))
            raise PreflightError(lines) from None
        keys.add(config_key(cfg))
        if (untrusted := replayed_untrusted(cfg)) is not None:
            raise PreflightError([untrusted])  # before anything of the stored run is built
        errors = validate_config(cfg, reference)
        lines += [line for line in _stale_key_lines(errors, job) if line not in lines]
        bad = tuple(n for n in ("data", "model") if any(e.key.startswith(n) for e in errors))
        if any(e.key == "seed" for e in errors):  # interpolated into the task (shuffle_seed)
            bad = (*bad, "data")
        checked.append((cfg, bad))
    from project.build_checks import build_errors, callback_errors

    lines += [line for line in build_errors(checked, reference) if line not in lines]
    if not lines:  # second stage, like the builds: a static error is reported without Lightning
        lines += [
            line
            for line in callback_errors([c for c, _ in checked], reference)
            if line not in lines
        ]
    if lines:
        raise PreflightError(lines)
    VALIDATED.update(keys)
    return jobs


# Configs (``config_key``) this process's preflight found valid: a run of one of them (a single
# run, a basic-launcher sweep job) is not checked a second time
VALIDATED: set[str] = set()


def config_key(cfg: DictConfig) -> str:
    """A job config as written (interpolations unresolved), without its ``hydra`` node."""
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    return repr({k: v for k, v in container.items() if k != "hydra"})


def _stale_key_lines(errors: list[Any], overrides: list[str]) -> list[str]:
    """The errors as lines; where the command line replaced a node's ``_target_`` and the node's
    other keys (left from the config it came with) are not the new class's, one line for them
    all instead of one per key."""
    replaced = {
        ov.lstrip("+~").partition("=")[0][: -len("._target_")]: ov.partition("=")[2]
        for ov in overrides
        if ov.lstrip("+~").partition("=")[0].endswith("._target_")
    }
    stale: dict[str, list[str]] = {}
    lines: list[str] = []
    for err in errors:
        node, _, key = err.key.rpartition(".")
        if node in replaced and str(err.allowed).startswith("a known key"):
            if node not in stale:
                stale[node] = []
                lines.append(node)  # placeholder, filled below
            stale[node].append(key)
        else:
            lines.append(str(err))
    for node, keys in stale.items():
        target = replaced[node]
        found = signature(target)
        takes = "?" if isinstance(found, Exception) else ", ".join(found.names)
        drop = " ".join(f"~{node}.{k}" for k in keys)
        lines[lines.index(node)] = (
            f"{node}._target_={target} is invalid: allowed a class that takes the node's keys; "
            f"{target.rpartition('.')[2]} does not take {', '.join(keys)} (left from the config "
            f"it replaced: drop them with {drop}, or write a config for it); "
            f"it takes {takes}"
        )
    return [line for line in lines if line]


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Hydra's own command-line flags (``-m``, ``--cfg``, ...) and the overrides, intermixed (a
    flag may follow the overrides, as Hydra allows). A parse error is left to Hydra to report."""
    from hydra._internal.utils import get_args_parser

    with contextlib.redirect_stderr(io.StringIO()):
        return get_args_parser().parse_intermixed_args(argv)


def run_preflight(argv: list[str]) -> list[str]:
    """Validate the command line; returns the (possibly resume-expanded) argv, or exits 2."""
    return prepare(argv)[0]


def prepare(argv: list[str]) -> tuple[list[str], DictConfig | Sweep | None]:
    """``run_preflight``, and what it composed for the entrypoint to run as is (a single run's
    config with its ``hydra`` node, or a multirun's ``Sweep``); None where Hydra's own entrypoint
    should compose (a flag such as ``--cfg``, ``--help`` or ``--config-dir``)."""
    if "--version" in argv:
        return argv, None
    try:
        args = parse_args(argv)
    except SystemExit:
        return argv, None
    if args.help or args.hydra_help or args.cfg or args.info:
        return argv, None
    if args.shell_completion or args.experimental_rerun or args.config_path or args.config_dir:
        return argv, None
    flags = [a for a in argv if a not in args.overrides]
    overrides = resume_overrides(list(args.overrides))
    try:
        composed = check(overrides, bool(args.multirun), args.config_name or "config")
    except PreflightError as err:
        for line in err.lines:
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    if not args.multirun and (done := finished_run(overrides)) is not None:
        print(done)  # the run is left untouched: no Hydra files rewritten, no summary overwritten
        raise SystemExit(0)
    from project.sync import check_rclone_dest  # RCLONE_DEST typo: report before training

    if problem := check_rclone_dest():
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    return [*flags, *overrides], composed
