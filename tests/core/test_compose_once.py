"""Compose once (issue #22): a single run's command line is composed by Hydra once, checked, and
that same config is the one the run trains with; the run does not check it a second time.

A real CLI process, with Hydra's config loader and the config check counted from inside it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT, SMALL, cli_env, run_dirs

COUNTING_RUN = """
import json, sys
from hydra._internal.config_loader_impl import ConfigLoaderImpl
import project.train.run as run

composed, checked_in_run = [], []
load = ConfigLoaderImpl.load_configuration
def counting_load(self, config_name, overrides, *args, **kwargs):
    composed.append(list(overrides))
    return load(self, config_name, overrides, *args, **kwargs)
ConfigLoaderImpl.load_configuration = counting_load
validate = run.validate_config
def counting_validate(cfg, *args):
    checked_in_run.append(1)
    return validate(cfg, *args)
run.validate_config = counting_validate
sys.argv = ["project.train.run", *sys.argv[1:]]
try:
    run.main()
finally:
    print("COUNTS " + json.dumps({"composed": composed, "checked_in_run": len(checked_in_run)}))
"""


def _counts(out: Path, *overrides: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", COUNTING_RUN, f"run.output_root={out}", *overrides],
        cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("COUNTS ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {"returncode": proc.returncode, **json.loads(line[-1][len("COUNTS ") :])}


def test_a_single_run_composes_its_command_line_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    overrides = [*SMALL, "trainer.max_epochs=1", "logger=csv"]
    counts = _counts(out, *overrides)
    assert counts["returncode"] == 0
    command_line = [f"run.output_root={out}", *overrides]
    assert counts["composed"].count(command_line) == 1  # Hydra's main composed it twice more
    assert all(c in ([], command_line) for c in counts["composed"])  # and the default config
    assert counts["checked_in_run"] == 0  # checked once, by the preflight
    (run_dir,) = run_dirs(out)
    assert (run_dir / "summary.json").is_file()
    hydra_cfg = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]
    assert hydra_cfg["mode"] == "RUN"  # recorded as Hydra's own entrypoint records a single run
    assert hydra_cfg["overrides"]["hydra"] == ["hydra.mode=RUN"]
    assert hydra_cfg["overrides"]["task"] == command_line
    saved = yaml.safe_load((run_dir / "resolved_config.yaml").read_text())
    assert saved["data"]["modulus"] == 23 and saved["trainer"]["max_epochs"] == 1


def test_a_config_in_multirun_mode_still_sweeps(tmp_path: Path) -> None:
    """``hydra.mode=MULTIRUN`` (as an ``hparams_search`` preset sets it) without ``-m``: Hydra's
    multirun, one job in the sweep dir, not a single run."""
    out, sweep = tmp_path / "out", tmp_path / "sweep"
    counts = _counts(out, *SMALL, "trainer.max_epochs=1", "logger=csv", "hydra.mode=MULTIRUN",
                     f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert counts["returncode"] == 0
    assert (sweep / "0" / "summary.json").is_file()
    assert not out.exists() or not run_dirs(out)


def test_a_sweep_composes_each_job_once(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    overrides = [*SMALL, "trainer.max_epochs=1", "logger=csv", "seed=0,1"]
    counts = _counts(tmp_path / "out", "-m", *overrides, f"hydra.sweep.dir={sweep}")
    assert counts["returncode"] == 0
    for seed in ("seed=0", "seed=1"):  # the preflight's; Hydra composed it twice more
        assert sum(seed in c for c in counts["composed"]) == 1, counts["composed"]
    assert counts["checked_in_run"] == 0
    for job in ("0", "1"):
        assert (sweep / job / "summary.json").is_file()
        assert "- seed=0,1" not in (sweep / job / ".hydra" / "overrides.yaml").read_text()


def test_a_sweep_job_gets_the_config_hydras_own_loader_composes(tmp_path: Path) -> None:
    """What each job trains with: the preflight's composition, handed over by the entrypoint's
    loader, equals (``hydra`` node included) what Hydra's loader composes for that job."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from project.train.preflight import check
    from project.train.run import ComposedOnceLoader
    from project.train.rundir import register_resolvers

    register_resolvers()
    typed = [*SMALL, "model.optimizer.weight_decay=1e-1,2.0", "run.name='a b'"]
    sweep = check([*typed, f"hydra.sweep.dir={tmp_path}"], multirun=True)
    ours = ComposedOnceLoader(sweep)
    hydras = ConfigLoaderImpl(ours.config_search_path)
    master = hydras.load_configuration("config", sweep.overrides, RunMode.MULTIRUN)
    arguments = list(master.hydra.overrides.task)
    (jobs,) = BasicSweeper.split_arguments(
        OverridesParser.create().parse_overrides(arguments), None
    )
    assert len(jobs) == 2 and len(sweep.composed) == 2  # weight_decay=0.1 there, 1e-1 here
    for job in jobs:
        mine, theirs = ours.load_sweep_config(master, job), hydras.load_sweep_config(master, job)
        assert OmegaConf.to_container(mine) == OmegaConf.to_container(theirs)
