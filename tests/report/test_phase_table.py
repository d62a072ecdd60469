"""docs/report.md shows exactly what ``scripts/phase_table.py`` prints from the committed
recordings: no phase number in it is copied by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "phase_table", ROOT / "scripts" / "phase_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_phase_tables_are_the_scripts_output() -> None:
    pt = load_script()
    shown = pt.doc_block((ROOT / "docs" / "report.md").read_text())
    assert shown, "docs/report.md has lost its generated phase-table block"
    assert shown == pt.block(pt.render()), (
        "regenerate: uv run python scripts/phase_table.py --write"
    )
