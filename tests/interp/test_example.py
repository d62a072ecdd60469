"""examples/interp_demo.py runs end to end in a fresh interpreter without a display."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "interp_demo.py"
PNGS = {
    "ablation.png",
    "patching.png",
    "patching_heads.png",
    "probes.png",
    "attention.png",
    "neurons.png",
    "W_E.png",
}


def run_example(*args: str, out: Path) -> subprocess.CompletedProcess:
    # runpy keeps the process open after main() so we can check pyplot was never imported
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['interp_demo.py', '--out', {str(out)!r}, *{list(args)!r}]\n"
        f"runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'viz imported pyplot'\n"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def check_output(proc: subprocess.CompletedProcess, out: Path) -> None:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert {p.name for p in out.glob("*.png")} == PNGS
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy on all" in proc.stdout and "path patching attn -> MLP" in proc.stdout


def test_example_trains_ablates_patches_probes_and_plots_headless(tmp_path):
    proc = run_example(out=tmp_path / "out")
    check_output(proc, tmp_path / "out")
    assert "val accuracy 1.000" in proc.stdout


@pytest.mark.slow
def test_example_on_a_checkpoint_of_the_real_entrypoint(tmp_path):
    """The README flow: train with project.train.run, then load_checkpoint in the example."""
    from tests.conftest import SMALL, train_in_process

    run_dir = train_in_process(tmp_path, *SMALL, "trainer.max_epochs=300", "data.frac_train=0.8")
    proc = run_example("--ckpt", str(run_dir / "checkpoints" / "last.ckpt"), out=tmp_path / "out")
    check_output(proc, tmp_path / "out")
    assert "operation 'add'" in proc.stdout
