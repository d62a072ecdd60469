"""The phase tables of docs/report.md, regenerated from the runs recorded in docs/results.

    uv run python scripts/phase_table.py            # print the tables (markdown)
    uv run python scripts/phase_table.py --write    # replace them in docs/report.md

Every number comes from ``project.grokking.report_phases.detect_phases`` on the committed
recordings (``summary.json``, ``csv_logs/metrics.csv``, ``progress.jsonl``, ``trajectory.jsonl``),
as ``python -m project.report`` computes them; ``tests/report/test_phase_table.py`` checks that
docs/report.md shows exactly this output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from project.grokking.report_phases import PHASES, detect_phases, phase_measures, read_trajectory
from project.runs import report_generic as rg
from project.runs.load import load_run

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
DOC = ROOT / "docs" / "report.md"
BEGIN = "<!-- begin: scripts/phase_table.py (generated; do not edit by hand) -->"
END = "<!-- end: scripts/phase_table.py -->"
RUNS = [  # (label, recording)
    ("faithful default, seed 0 (16k epochs)", "nanda2023_seed0"),
    ("`fast_grok` seed 0 (400 epochs)", "fast_grok_seed0"),
    ("`fast_grok` seed 1 (400 epochs)", "fast_grok_seed1"),
    ("`fast_grok` seed 2 (400 epochs)", "fast_grok_seed2"),
]
CHECKS = {  # check -> the number shown beside it (a key of its check_values)
    "train_loss_falls_in_memorisation": "fall_nats",
    "excluded_loss_tracks_train_loss_in_memorisation": "share",
    "test_loss_stays_high_in_memorisation": "share",
    "restricted_loss_stays_high_in_memorisation": "share",
    "excluded_loss_rises_in_circuit_formation": "rise_nats",
    "restricted_loss_falls_in_circuit_formation": "fall_nats",
    "test_loss_stays_high_in_circuit_formation": "share",
    "test_loss_falls_sharply_in_cleanup": "share",
    "restricted_loss_falls_in_cleanup": "fall_nats",
    "weight_sq_sum_falls_in_cleanup": "fall_nats",
    "weight_sq_sum_falls_faster_in_cleanup": "ratio",
    "grok_epoch_in_cleanup": "grok_epoch",
}


def phases_of(name: str, every: int = 1, offset: int = 0) -> dict[str, Any]:
    """detect_phases on a recording (snapshots ``offset::every``), plus its memorised/grok epochs."""
    run = load_run(RESULTS / name)
    traj = read_trajectory(RESULTS / name)[0].sort_values("epoch").iloc[offset::every]
    measures, _ = phase_measures(run.progress, traj, rg.curves(run))
    memorised, grok = run.reached.train_epoch, run.reached.epoch
    found = detect_phases(measures, grok, memorised, sensitivity=every == 1)
    return {**found, "memorised": memorised, "grok": grok}


def _n(x: float | int | None) -> str:
    return "-" if x is None else f"{int(x):,}"


def _span(found: dict[str, Any], phase: str) -> str:
    span = found["phases"][phase]
    if span is not None:
        return f"{_n(span[0])}-{_n(span[1])}"
    why = found["not_placed"].get(phase, "")
    return "**not separated**" if why.startswith("not separated") else f"- ({why})"


def _value(name: str, values: dict[str, Any]) -> str:
    if name == "weight_sq_sum_falls_faster_in_cleanup":
        cu = values.get("cleanup_nats_per_epoch")
        cf = values.get("circuit_formation_nats_per_epoch")
        return "" if cu is None or not cf else f"{cu / cf:.1f}x"
    v = values.get(CHECKS[name])
    if v is None:
        return ""
    return f"{v:,}" if name == "grok_epoch_in_cleanup" else f"{v:.2f}"


def _mark(ok: bool | None, value: str) -> str:
    word = "-" if ok is None else "yes" if ok else "**NO**"
    return f"{word} ({value})" if value and ok is not None else word


def render() -> str:
    found = {name: phases_of(name) for _, name in RUNS}
    halved = {name: [phases_of(name, 2, off) for off in (0, 1)] for _, name in RUNS}
    out = [
        "| run | memorised (train acc >= 99%) | grok (val acc >= 99%) | memorisation "
        "| circuit formation | clean-up | checks failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, name in RUNS:
        f = found[name]
        failed = [k for k, v in f["checks"].items() if v is False]
        spans = " | ".join(_span(f, p) for p in PHASES)
        out.append(f"| {label} | {_n(f['memorised'])} | {_n(f['grok'])} | {spans} | "
                   f"{', '.join(f'`{k}`' for k in failed) or 'none'} |")  # fmt: skip
    out += ["", "Why a phase is not separated:", ""]
    for label, name in RUNS:
        for phase, why in found[name]["not_placed"].items():
            out.append(f"- {label}, {phase.replace('_', ' ')}: {why}.")
    out += [
        "",
        "Each boundary with one detector constant moved (the default in the middle), and the "
        "phases from every 2nd snapshot (offsets 0 / 1):",
        "",
        "| run | e1 at settle 0.02 / 0.05 / 0.1 | e2 at sharp 0.1 / 0.25 / 0.5 "
        "| e3 at sharp 0.1 / 0.25 / 0.5 | e2 at window 0.025 / 0.05 / 0.1 "
        "| e3 at window 0.025 / 0.05 / 0.1 | circuit formation, every 2nd snapshot |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, name in RUNS:
        s = found[name]["sensitivity"]

        def row(const: str, bound: str, s: dict[str, Any] = s) -> str:
            return " / ".join(_n(v[bound]) for v in s[const].values())

        cf = " / ".join(_span(h, "circuit_formation") for h in halved[name])
        out.append(f"| {label} | {row('settle', 'e1')} | {row('sharp', 'e2')} | "
                   f"{row('sharp', 'e3')} | {row('window', 'e2')} | {row('window', 'e3')} | "
                   f"{cf} |")  # fmt: skip
    out += [
        "",
        "The checks (the number beside each: a share of a fall in ln(loss), a fall or rise in "
        "nats, the ratio of the clean-up to the circuit-formation rate, or the grok epoch; `-`: the "
        "phase is not separated or not placed):",
        "",
        "| check | " + " | ".join(label for label, _ in RUNS) + " |",
        "|---|" + "---|" * len(RUNS),
    ]
    for check in CHECKS:
        cells = [_mark(found[n]["checks"].get(check),
                       _value(check, found[n]["check_values"].get(check, {})))
                 for _, n in RUNS]  # fmt: skip
        out.append(f"| `{check}` | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def block(text: str) -> str:
    """The generated block (markers included) as docs/report.md holds it."""
    return f"{BEGIN}\n{text}{END}"


def doc_block(doc: str) -> str:
    """The generated block currently in ``doc`` (markers included); '' when absent."""
    if BEGIN not in doc or END not in doc:
        return ""
    return doc[doc.index(BEGIN) : doc.index(END) + len(END)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="replace the tables in docs/report.md")
    args = parser.parse_args(argv)
    text = render()
    if not args.write:
        sys.stdout.write(text)
        return 0
    doc = DOC.read_text()
    old = doc_block(doc)
    if not old:
        print(f"error: {DOC} has no {BEGIN} ... {END} block", file=sys.stderr)
        return 2
    DOC.write_text(doc.replace(old, block(text)))
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
