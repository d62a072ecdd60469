"""Lines of ``project`` code a training run imports: the ``project.*`` modules in
``sys.modules`` at exit, each counted with ``wc -l`` (docs/architecture.md).

    PYTHONPATH=examples/my_project uv run python scripts/count_run_imports.py \
        hydra.searchpath=[file://$PWD/examples/my_project/configs] data=reverse \
        model=torch_transformer trainer.max_epochs=1
"""

import atexit
import runpy
import sys
from pathlib import Path


def report() -> None:
    mods = sorted(m for m in sys.modules if m == "project" or m.startswith("project."))
    total = 0
    rows = []
    for m in mods:
        f = getattr(sys.modules[m], "__file__", None)
        if f and f.endswith(".py"):
            n = len(Path(f).read_text().splitlines())
            total += n
            rows.append((n, m))
    for n, m in sorted(rows):
        print(f"{n:6d} {m}", file=sys.__stderr__)
    print(f"TOTAL {total} lines in {len(rows)} modules", file=sys.__stderr__)


atexit.register(report)
sys.argv = ["project.train.run", *sys.argv[1:]]
runpy.run_module("project.train.run", run_name="__main__")
