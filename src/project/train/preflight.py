"""Before Hydra creates anything: parse the command line, compose every job's config, validate.

Errors come out as one line each (``error: <key>=<value> is invalid: allowed ...``), exit code 2,
and nothing is created: no run dir, no logger dir, no remote touched. Also turns
``run.ckpt_path=<run_dir>/checkpoints/last.ckpt`` into "resume that run in its own dir, with its
own overrides" (later overrides on the command line still win).
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from project.train.rundir import find_run_dir
from project.train.validate import validate_config

CONFIG_DIR = str(Path(__file__).resolve().parents[3] / "configs")
MAX_JOBS_CHECKED = 256


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
    return value


def resume_overrides(overrides: list[str]) -> list[str]:
    """Resume in the checkpoint's own run dir with that run's overrides, unless told otherwise."""
    ckpt = _override_value(overrides, "run.ckpt_path")
    if not ckpt or ckpt == "null" or _override_value(overrides, "hydra.run.dir") is not None:
        return overrides
    run_dir = find_run_dir(ckpt)
    if run_dir is None:
        return overrides
    saved = run_dir / ".hydra" / "overrides.yaml"
    previous = yaml.safe_load(saved.read_text()) if saved.is_file() else []
    skip = ("run.ckpt_path=", "hydra.run.dir=")
    previous = [ov for ov in previous or [] if not ov.lstrip("+~").startswith(skip)]
    return [*previous, *overrides, f"hydra.run.dir={run_dir}"]


def compose_config(overrides: list[str], config_name: str = "config") -> DictConfig:
    """Compose the job config (without the ``hydra`` node) exactly as the entrypoint sees it."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="run"):
        return compose(config_name=config_name, overrides=overrides)


def _default_keys(parent: str) -> list[str]:
    try:
        node = compose_config([])
        node = OmegaConf.select(node, parent) if parent else node
        keys = node.keys() if isinstance(node, DictConfig) else []
        return sorted(str(k) for k in keys if not str(k).startswith("_"))
    except Exception:
        return []


def _one_line(exc: BaseException, overrides: list[str] | None = None) -> str:
    """Hydra/OmegaConf composition errors as one line: key, value, what is allowed."""
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        group, _, choice = exc.missing_cfg_file.rpartition("/")
        options = ", ".join(exc.options or [])
        if group:
            return f"{group}={choice} is invalid: no such config; allowed: {options}"
    cause = exc.__cause__ or exc.__context__
    full_key = getattr(cause, "full_key", None) or getattr(exc, "full_key", None)
    if full_key and "not in struct" in str(cause or exc):
        parent = full_key.rpartition(".")[0]
        value = _override_value(overrides or [], full_key)
        shown = f"{full_key}={value}" if value is not None else full_key
        keys = _default_keys(parent)
        where = f"under {parent}" if parent else "at the top level"
        name = full_key.rpartition(".")[2]
        close = difflib.get_close_matches(name, keys, n=1)
        hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
        allowed = f"; {hint}allowed keys {where}: {', '.join(keys)}" if keys else ""
        return f"{shown} is invalid: unknown key{allowed}"
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def expand_jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    if not multirun:
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [job for batch in batches for job in batch][:MAX_JOBS_CHECKED]


def check(overrides: list[str], multirun: bool = False, config_name: str = "config") -> None:
    """Raise ``PreflightError`` (one line per problem) if any job of this command is invalid."""
    try:
        jobs = expand_jobs(overrides, multirun)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise PreflightError([_one_line(exc)]) from None
    lines: list[str] = []
    reference = compose_config([], config_name)  # target keys already known to be valid
    for job in jobs:
        try:
            cfg = compose_config(job, config_name)
        except (HydraException, OmegaConfBaseException) as exc:
            lines.append(_one_line(exc, job))
            break
        lines += [str(e) for e in validate_config(cfg, reference) if str(e) not in lines]
    if lines:
        raise PreflightError(lines)


def run_preflight(argv: list[str]) -> list[str]:
    """Validate the command line; returns the (possibly resume-expanded) argv, or exits 2."""
    from hydra._internal.utils import get_args_parser

    try:
        args, _ = get_args_parser().parse_known_args(argv)
    except SystemExit:
        return argv
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion:
        return argv
    flags = [a for a in argv if a not in args.overrides]
    overrides = resume_overrides(list(args.overrides))
    try:
        check(overrides, multirun=bool(args.multirun), config_name=args.config_name or "config")
    except PreflightError as err:
        for line in err.lines:
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    from project.train.sync import check_rclone_dest  # RCLONE_DEST typo: report before training

    if problem := check_rclone_dest():
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    return [*flags, *overrides]
