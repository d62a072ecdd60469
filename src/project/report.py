"""Reports from run dirs: ``python -m project.report RUN [RUN ...] [--out DIR]``.

One run: its full report (``--llc``: with the local learning coefficient of its snapshots),
``RUN/report/index.html`` + ``report.json``.
Several runs: one comparison page overlaying their curves, with the sections their tasks declare
(``compare_sections``; ``--out``, default ``report_compare/``), plus nothing else.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def input_problem(args: argparse.Namespace) -> str | None:
    """The first thing the command cannot work with, as one line (printed as ``error: ...``, exit
    2, before any work and with nothing written): a count below 1, a path that is not a run dir,
    a run file of the wrong shape (``resolved_config.yaml`` not a mapping naming the task,
    ``summary.json`` not a run record), an output directory that cannot be written."""
    from project.runs import checks
    from project.runs.report import check_run_dir

    for flag in ("max_snapshots", "llc_snapshots"):
        value = getattr(args, flag)
        if value < 1:
            name = "--" + flag.replace("_", "-")
            return f"{name}={value} is invalid: allowed an integer >= 1 (snapshots used at most)"
    single = len(args.runs) == 1  # the single-run report rebuilds the task from the config
    for run in map(Path, args.runs):
        if error := check_run_dir(run):
            return error.removeprefix("error: ")
        if problem := checks.config_problem(run, needs_task=single) or checks.summary_problem(run):
            return problem
    if not single:
        return checks.dir_problem(args.out or "report_compare", "--out")
    report_dir = Path(args.runs[0]) / "report"
    if not report_dir.is_symlink():  # a link is the report's own business (project.stored)
        return checks.dir_problem(report_dir, "the report dir")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m project.report", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run dirs written by project.train.run")
    parser.add_argument("--out", default=None, help="comparison page dir (several runs)")
    parser.add_argument("--max-snapshots", type=int, default=40, help="single run: snapshots")
    parser.add_argument("--xscale", choices=("linear", "log"), default="linear")
    parser.add_argument("--llc", action="store_true",
                        help="single run: the local learning coefficient of its snapshots "
                        "(devinterp: uv sync --extra llc; cached in RUN/llc.json)")  # fmt: skip
    parser.add_argument("--llc-snapshots", type=int, default=12,
                        help="single run: LLC of at most this many snapshots (default 12)")  # fmt: skip
    args = parser.parse_args(argv)
    if problem := input_problem(args):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from project.runs.report import build_report

    if args.llc:
        from project.interp.llc import INSTALL_HINT, have_devinterp

        if not have_devinterp():
            print(f"error: --llc: {INSTALL_HINT}", file=sys.stderr)
            return 2
    from project.checkpoint import CheckpointError
    from project.stored import StoredDataError

    try:
        if len(args.runs) == 1:
            out = build_report(
                args.runs[0], args.max_snapshots, args.xscale, args.llc, args.llc_snapshots
            )
        else:
            from project.runs.report_compare import build_comparison

            out = build_comparison(args.runs, args.out)
    except (CheckpointError, StoredDataError) as exc:  # a corrupt or crafted run dir
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
