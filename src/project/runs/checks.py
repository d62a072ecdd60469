"""What the run readers' commands check before they work: the files of a run dir they read, and
the paths they will write. Each check returns one line naming the file (or flag), the bad value
and what is allowed, or None; the commands print it as ``error: <line>`` and exit 2
(``project.report``) or list the run with the line as a note (``project.runs``, see
``project.runs.table``).

    config_problem(run_dir)        # resolved_config.yaml: YAML, a mapping at the top level
    overrides_problem(run_dir)     # .hydra/overrides.yaml: a YAML list of override strings
    summary_problem(run_dir)       # summary.json (project.summary): a JSON object, a run record
    dir_problem(path, "--out")     # a directory that can be created and written
    file_problem(path, "--csv")    # a file that can be written (its directory must exist)
"""

from __future__ import annotations

from pathlib import Path

from project.stored import StoredDataError, read_config, read_overrides
from project.summary import summary_problem
from project.utils.paths import unwritable

__all__ = ["config_problem", "dir_problem", "file_problem", "overrides_problem", "summary_problem"]

CONFIG_FILE = "resolved_config.yaml"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"


def config_problem(run_dir: str | Path, needs_task: bool = False) -> str | None:
    """``resolved_config.yaml`` as a reader needs it (``project.stored.read_config``): absent is
    fine unless ``needs_task`` (the report rebuilds the run's task from ``data._target_``)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return (
            f"{path} is missing; the report rebuilds the run's task from it" if needs_task else None
        )
    try:
        data = read_config(path)
    except StoredDataError as exc:
        return str(exc)
    node = data.get("data")
    if needs_task and not (isinstance(node, dict) and isinstance(node.get("_target_"), str)):
        return (f"{path} names no data._target_; allowed: a mapping whose data node names the "
                "run's task class (data._target_), as project.train.run writes it")  # fmt: skip
    return None


def overrides_problem(run_dir: str | Path) -> str | None:
    """``.hydra/overrides.yaml``: a YAML list of strings (absent or empty is fine)."""
    try:
        read_overrides(Path(run_dir))
    except StoredDataError as exc:
        return str(exc)
    return None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def dir_problem(path: str | Path, flag: str) -> str | None:
    """Whether ``path`` is a directory that can be created (with its parents) and written
    (``project.utils.paths.unwritable``: tried, then undone)."""
    if problem := unwritable(Path(path)):
        return f"{flag}={path} is invalid: {problem}; allowed: a directory that can be created and written"
    return None


def file_problem(path: str | Path, flag: str) -> str | None:
    """Whether ``path`` can be written as a file: its directory exists and the file can be opened
    for writing (tried in append mode; a file this check created is removed)."""
    path = Path(path)
    allowed = "allowed: a file path in an existing directory you can write"
    if path.is_dir():
        return f"{flag}={path} is invalid: it is a directory; {allowed}"
    if not path.parent.is_dir():
        return f"{flag}={path} is invalid: {path.parent} is not a directory; {allowed}"
    existed = path.exists()
    try:
        with path.open("a"):
            pass
    except OSError as exc:
        return f"{flag}={path} is invalid: cannot write it ({_reason(exc)}); {allowed}"
    finally:
        if not existed and path.is_file():
            path.unlink()
    return None
