"""The configs are found through the package (issue #22), not through the clone: the built wheel
carries them, and a run from that wheel, outside the clone, composes and trains with them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_dirs


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``uv build`` makes, unpacked as an installer would into site-packages."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("needs uv (CI installs it)")
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([uv, "build", "--wheel", "-q", "-o", str(dist)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    (wheel,) = dist.glob("*.whl")
    site = tmp_path_factory.mktemp("site-packages")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def test_the_wheel_carries_the_configs(installed: Path) -> None:
    shipped = {p.relative_to(installed / "project" / "configs") for p in
               (installed / "project" / "configs").rglob("*.yaml")}  # fmt: skip
    in_clone = {p.relative_to(ROOT / "configs") for p in (ROOT / "configs").rglob("*.yaml")}
    assert shipped == in_clone and Path("config.yaml") in shipped


def test_a_run_from_the_installed_package_outside_the_clone(
    installed: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(installed), OMP_NUM_THREADS="1")  # ahead of the editable install
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "project.train.run", "data.modulus=23", "trainer.max_epochs=1",
         "logger=csv", f"run.output_root={out}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = run_dirs(out)
    hydra_cfg = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]
    sources = [s["path"] for s in hydra_cfg["runtime"]["config_sources"] if s["schema"] == "file"]
    assert str(installed / "project" / "configs") in sources  # not the clone's configs/
    assert (run_dir / "summary.json").is_file()
