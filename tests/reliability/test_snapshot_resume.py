"""Any checkpoint of a run dir resumes or is refused in one line before anything is created:
snapshot names parse unquoted (``epoch_000001.ckpt``), the run's saved config is reused for any
checkpoint inside its run dir, a weights-only snapshot is refused with the exact command that
works, and the older ``epoch=000001.ckpt`` names are still read everywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from project.eval import resolve
from project.runs.load import load_run
from project.train.resume import resume_argv
from tests.conftest import SMALL, main_in_process, run_dirs, train_in_process


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("snap")
    return train_in_process(
        tmp,
        *SMALL,
        "model.net.d_model=32",  # not the default: a resume that ignored the run's config fails
        "trainer.max_epochs=2",
        "logger=none",
        "callbacks.progress_bar=null",
        "callbacks.snapshots.every_n_epochs=1",
    )


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    with pytest.raises(SystemExit) as exit_info:
        main_in_process(argv)
    assert exit_info.value.code == 2
    # (in-process, a logging handler left from an earlier test may print noise; the CLI does not)
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]


def test_snapshot_names_have_no_equals_sign(run: Path) -> None:
    names = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert names == ["epoch_000000.ckpt", "epoch_000001.ckpt", "epoch_000002.ckpt", "last.ckpt"]


def test_a_weights_only_snapshot_is_refused_with_the_command_that_works(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = run_dirs(run.parents[1])
    snapshot = run / "checkpoints" / "epoch_000001.ckpt"
    (line,) = _refused([f"run.ckpt_path={snapshot}"], capsys)  # unquoted; the run's config reused
    assert line.startswith(f"error: run.ckpt_path='{snapshot}' is invalid"), line
    assert "weights-only snapshot" in line
    last = run / "checkpoints" / "last.ckpt"
    assert f"resume the run with: python -m project.train.run run.ckpt_path={last}" in line
    assert line.endswith(
        f"or start a new run from its weights with: python -m project.train.run "
        f"run.init_from={snapshot}"
    )
    assert run_dirs(run.parents[1]) == before


def test_a_new_run_starts_from_a_snapshots_weights_and_says_so(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    snapshot = run / "checkpoints" / "epoch_000001.ckpt"
    new = train_in_process(tmp_path, f"run.init_from={snapshot}", "trainer.max_epochs=1")
    assert new.parent.parent == tmp_path / "outputs"  # a run dir of its own
    assert f"a new run from the weights of {snapshot} (after 1 epoch)" in capsys.readouterr().out
    start = torch.load(new / "checkpoints" / "epoch_000000.ckpt", weights_only=True)["state_dict"]
    weights = torch.load(snapshot, weights_only=True)["state_dict"]
    assert start.keys() == weights.keys()
    assert all(torch.equal(start[k], weights[k]) for k in weights)  # the run's config reused


def test_a_complete_snapshot_resumes_with_the_runs_config(run: Path) -> None:
    complete = run / "checkpoints" / "epoch_000002_full.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", complete)
    try:
        argv = resume_argv([f"run.ckpt_path={complete}", "trainer.max_epochs=3"])
    finally:
        complete.unlink()
    assert "model.net.d_model=32" in argv and f"hydra.run.dir={run}" in argv


def test_old_snapshot_names_are_still_read(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old_run"
    shutil.copytree(run, old)
    for path in (old / "checkpoints").glob("epoch_*.ckpt"):
        path.rename(path.with_name(path.name.replace("_", "=")))
    assert load_run(old).epochs == [0, 1, 2]
    (old / "checkpoints" / "last.ckpt").unlink()
    assert resolve(old)[0].name == "epoch=000002.ckpt"  # project.eval of the run dir
    quoted = f"run.ckpt_path='{old}/checkpoints/epoch=000001.ckpt'"
    (line,) = _refused([quoted], capsys)
    assert "weights-only snapshot" in line


def test_eval_report_generate_of_a_run_whose_package_is_not_importable(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user's run read by a process that cannot import the user's package: one line, exit 2,
    with the fix; never a directory the run dir names (its searchpath is stored data)."""
    import yaml

    from project import eval as eval_module
    from project import generate, report

    user = tmp_path / "user"
    (user / "configs" / "data").mkdir(parents=True)
    (user / "ghost_pkg").mkdir()  # the package is there, but not on this process's path
    (user / "configs" / "data" / "ghost.yaml").write_text("_target_: ghost_pkg.tasks.GhostTask\n")
    ghost = tmp_path / "ghost_run"
    shutil.copytree(run, ghost)
    config = yaml.safe_load((ghost / "resolved_config.yaml").read_text())
    config["data"]["_target_"] = "ghost_pkg.tasks.GhostTask"
    (ghost / "resolved_config.yaml").write_text(yaml.safe_dump(config))
    hydra = yaml.safe_load((ghost / ".hydra" / "hydra.yaml").read_text())
    hydra["hydra"]["searchpath"] = [f"file://{user / 'configs'}"]
    (ghost / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    for main in (eval_module.main, report.main):
        assert main([str(ghost)]) == 2, main
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "data._target_='ghost_pkg.tasks.GhostTask' cannot be imported" in line, line
        assert "make the package 'ghost_pkg' importable" in line and str(user) not in line, line
    assert generate.main([str(ghost)]) == 2  # generation needs a text task: one line too
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
