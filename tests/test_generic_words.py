"""The generic core speaks no grokking: no word of the modular-arithmetic task (grok, Fourier,
frequency, modular, modulus) in the files listed below. Grokking lives in its plugin
(``src/project/grokking/``), reached only through a task's config and its declared report
sections; this is the CI check of issue #22 (``grep -rniE 'modular|modulus|fourier|frequenc|grok'``)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Files and dirs (relative to the repository root; a dir counts with every .py file under it)
# that must speak no grokking.
GENERIC_FILES = [
    # the run readers and the generic report (issue #22, reading side)
    "src/project/runs/load.py",
    "src/project/runs/table.py",
    "src/project/runs/sweep.py",
    "src/project/runs/report.py",
    "src/project/runs/report_generic.py",
    "src/project/runs/report_plot.py",
    "src/project/runs/report_compare.py",
    "src/project/report.py",
    # the training core
    "src/project/train",
    "src/project/callbacks",
    "src/project/lit_module.py",
    "src/project/build.py",
    "src/project/checkpoint.py",
    "src/project/eval.py",
    "src/project/loggers.py",  # moved out of train/ (shared with callbacks/ and ensemble/)
    "src/project/stored.py",  # the one reader of stored data (run dirs, checkpoints)
    "src/project/sync.py",
]
WORDS = re.compile(r"modular|modulus|fourier|frequenc|grok", re.IGNORECASE)
# Code that must not import the plugin (it may name a plugin's module in a string: a task's
# declared report sections are looked up by name, not imported by the core).
NO_PLUGIN_IMPORTS = [
    "src/project/runs",
    "src/project/report.py",
    "src/project/train",
    "src/project/callbacks",
    "src/project/lit_module.py",
    "src/project/build.py",
    "src/project/summary.py",
    "src/project/checkpoint.py",
    "src/project/eval.py",
    "src/project/loggers.py",
    "src/project/stored.py",
]


def expand(names: list[str]) -> list[Path]:
    paths = []
    for name in names:
        path = ROOT / name
        assert path.exists(), f"{name} is listed but does not exist"
        paths += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return paths


def test_the_generic_files_speak_no_grokking() -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in expand(GENERIC_FILES)
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if WORDS.search(line)
    ]
    assert not hits, "grokking words in generic files:\n" + "\n".join(hits)


def test_the_run_tools_do_not_import_the_plugin() -> None:
    imports = re.compile(r"^\s*(from|import)\s+project\.grokking\b", re.MULTILINE)
    found = [str(p.relative_to(ROOT)) for p in expand(NO_PLUGIN_IMPORTS)
             if imports.search(p.read_text())]  # fmt: skip
    assert not found, f"the core imports the grokking plugin: {found}"
