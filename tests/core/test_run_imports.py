"""A run of the README's own task (examples/my_project) imports a small core: at most 2,500 lines
of ``project`` code (issue #33), and nothing of the workbench (grokking, interp, runs, ensemble)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT, cli_env

BUDGET = 2500
WORKBENCH = ("project.grokking", "project.interp", "project.runs", "project.ensemble",
             "project.callbacks.llc", "project.data.modular", "project.sync", "project.loggers")  # fmt: skip


def test_a_user_task_run_imports_at_most_the_core(tmp_path) -> None:  # type: ignore[no-untyped-def]
    example = ROOT / "examples" / "my_project"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "count_run_imports.py"),
         f"hydra.searchpath=[file://{example / 'configs'}]", "data=reverse",
         "model=torch_transformer", "trainer.max_epochs=1", "data.n_examples=64",
         f"run.output_root={tmp_path / 'out'}", "callbacks.progress_bar=null"],
        cwd=tmp_path, env=cli_env(PYTHONPATH=str(example)), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    total = int(re.search(r"TOTAL (\d+) lines", proc.stderr).group(1))  # type: ignore[union-attr]
    modules = re.findall(r"^\s*\d+ (project\S*)$", proc.stderr, flags=re.M)
    assert total <= BUDGET, proc.stderr[-3000:]
    assert not [m for m in modules if m.startswith(WORKBENCH)], modules
