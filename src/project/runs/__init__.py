"""Reading run dirs: one run (``load_run``), many runs (``collect_runs``), the report.

    from project.runs import load_run, collect_runs
    run = load_run("outputs/2025-01-01/12-00-00")     # config, record, metrics, snapshots
    df = collect_runs("multirun")                       # one row per run dir

``python -m project.runs <dirs>`` prints the runs table; ``python -m project.report <run>``
writes the HTML report.
"""

from project.runs.load import Reached, Run, first_epoch_at, load_run
from project.runs.table import collect_runs, format_table, summarise_run

__all__ = [
    "Reached", "Run", "collect_runs", "first_epoch_at", "format_table", "load_run", "summarise_run",
]  # fmt: skip
