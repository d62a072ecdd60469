"""Reports from run dirs: ``python -m project.report RUN [RUN ...] [--out DIR]``.

One run: its full report (``--llc``: with the local learning coefficient of its snapshots),
``RUN/report/index.html`` + ``report.json`` (the same as ``python -m project.runs.report RUN``).
Several runs: one comparison page overlaying their curves, with the sections their tasks declare
(``compare_sections``; ``--out``, default ``report_compare/``), plus nothing else.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
    from project.runs.report import build_report, check_run_dir

    for run in args.runs:
        error = check_run_dir(Path(run))
        if error:
            print(error, file=sys.stderr)
            return 2
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
