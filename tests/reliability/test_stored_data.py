"""Stored data is data: a run dir or checkpoint someone hands you runs no code and writes nowhere
else (issue #32), and the runs a user makes legitimately stay readable.

Every attack ends the same way: no decoy changed, no marker written, one ``error:`` line, exit 2.
The attacks were run against the previous reader (``project.trust``) first: the hydra-callback
resume, the resolver in a config and in a checkpoint, the ``__main__`` module and the symlinked
report all ran or wrote there.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from project.checkpoint import CheckpointError, with_integrity
from project.stored import load_checkpoint
from tests.conftest import ROOT, SMALL, cli_env, main_in_process, train_in_process

TINY = [*SMALL, "model.net.d_model=16", "model.net.d_mlp=32", "trainer.max_epochs=2",
        "callbacks.snapshots.every_n_epochs=1"]  # fmt: skip


class Bomb:
    """A pickle that writes a marker when loaded with ``weights_only=False``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"echo ran > {self.marker}",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_in_process(tmp_path_factory.mktemp("trained"), *TINY)


@pytest.fixture
def scene(trained: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A fresh copy of the trained run dir, a victim file and the marker path."""
    run = tmp_path / "run"
    shutil.copytree(trained, run, symlinks=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    return run, victim, tmp_path / "marker"


def _untouched(victim: Path, marker: Path) -> None:
    assert victim.read_text() == "precious\n", "the decoy was changed"
    assert not marker.exists(), "a crafted target ran"


def _one_error(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


def _edit_config(run: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = run / "resolved_config.yaml"
    cfg = yaml.safe_load(path.read_text())
    edit(cfg)
    path.write_text(yaml.safe_dump(cfg))


def _tools(
    run: Path, only: tuple[str, ...] = ("eval", "report", "generate")
) -> list[tuple[str, int, str]]:
    """eval, report and generate (``only``) on the run dir, in-process: (tool, exit, stderr)."""
    import contextlib
    import io

    from project import eval as project_eval
    from project import generate, report

    results = []
    for name, call in (
        ("eval", lambda: project_eval.main([str(run)])),
        ("report", lambda: report.main([str(run), "--max-snapshots", "2"])),
        ("generate", lambda: generate.main([str(run), "--tokens", "1"])),
    ):
        if name not in only:
            continue
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = call()
        results.append((name, code, err.getvalue()))
    return results


# -- 1. a resume replays no stored hydra.* override ------------------------------------------


@pytest.mark.parametrize("key", ["run.ckpt_path", "run.init_from"])
@pytest.mark.parametrize(
    "stored",
    [
        ["+hydra.callbacks.x._target_=torch.load", "+hydra.callbacks.x.f={pkl}",
         "+hydra.callbacks.x.weights_only=false"],
        ["hydra.run.dir={victim_dir}"],
        ["hydra/launcher=submitit_local"],
        ["+model.net.extra=${{oc.create:{{_target_: builtins.open, _args_: [{victim}, w]}}}}"],
        ["callbacks.snapshots.dirpath={victim_dir}"],
        ["callbacks.last_checkpoint.dirpath=stolen"],  # relative: the cwd, not the run dir
        ["logger.save_dir=stolen"],
        ["+callbacks.x._target_=builtins.open", "+callbacks.x._args_=[{victim},w]"],
        ["model.net._target_=torch.save"],
        ["seed=0,1"],
    ],
    ids=["hydra-callback-pickle", "hydra-run-dir", "hydra-group", "resolver", "path-outside",
         "relative-dirpath", "relative-save-dir", "args", "function-target", "sweep"],
)  # fmt: skip
def test_a_resume_replays_only_plain_settings(
    scene: tuple[Path, Path, Path],
    key: str,
    stored: list[str],
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run, victim, marker = scene
    monkeypatch.chdir(victim.parent)  # a relative path would land here
    with open(run / "notes.pkl", "wb") as f:
        pickle.dump(Bomb(marker), f)
    overrides = run / ".hydra" / "overrides.yaml"
    previous = yaml.safe_load(overrides.read_text())
    fill = {"pkl": run / "notes.pkl", "victim": victim, "victim_dir": victim.parent}
    overrides.write_text(yaml.safe_dump(previous + [s.format(**fill) for s in stored]))
    before = sorted(p.name for p in victim.parent.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        main_in_process([f"{key}={run}/checkpoints/last.ckpt", "trainer.max_epochs=3"])
    assert exit_info.value.code == 2
    line = _one_error(capsys.readouterr().err)
    assert "overrides.yaml" in line and "refused" in line, line
    _untouched(victim, marker)
    assert sorted(p.name for p in victim.parent.iterdir()) == before


# -- 2. no resolver is ever evaluated; 3. only classes of the role's kind, from your packages --

CRAFTED_TARGETS = {
    "main-module": "project.runs.__main__.X",
    "tool-main": "torch.utils.model_dump.__main__.X",
    "stdlib-this": "this.X",
    "builtins": "builtins.open",
    "os-system": "os.system",
    "function": "torch.save",
    "private": "torch._dynamo.X",
    "wrong-kind": "torch.optim.AdamW",
}


@pytest.mark.parametrize("where", ["model.net", "data"])
@pytest.mark.parametrize("target", list(CRAFTED_TARGETS.values()), ids=list(CRAFTED_TARGETS))
def test_a_crafted_target_in_a_run_config_is_refused_before_import(
    scene: tuple[Path, Path, Path], where: str, target: str
) -> None:
    run, victim, marker = scene

    def edit(cfg: dict) -> None:
        node = cfg["model"]["net"] if where == "model.net" else cfg["data"]
        node["_target_"] = target

    _edit_config(run, edit)
    imported = set(sys.modules)
    # report and generate build the net from the checkpoints, not the config: eval reads model.net
    for tool, code, err in _tools(
        run, ("eval",) if where == "model.net" else ("eval", "report", "generate")
    ):
        assert code == 2, (tool, err)
        line = _one_error(err)
        assert target in line and ("refused" in line or "is not a text task" in line), line
    new = {m for m in set(sys.modules) - imported if m.split(".")[0] in ("this", "project")}
    assert not any("__main__" in m or m == "this" for m in new), new
    _untouched(victim, marker)


RESOLVERS = {
    "value": lambda v: v,
    "in-list": lambda v: [1, v],
    "in-dict": lambda v: {"a": {"b": v}},
}


@pytest.mark.parametrize("shape", list(RESOLVERS))
@pytest.mark.parametrize("where", ["model.net", "data"])
def test_a_resolver_in_a_run_config_is_never_evaluated(
    scene: tuple[Path, Path, Path], shape: str, where: str
) -> None:
    run, victim, marker = scene
    crafted = RESOLVERS[shape](f"${{oc.create:{{_target_: builtins.open, _args_: [{victim}, w]}}}}")

    def edit(cfg: dict) -> None:
        (cfg["model"]["net"] if where == "model.net" else cfg["data"])["extra"] = crafted

    _edit_config(run, edit)
    for tool, code, err in _tools(
        run, ("eval",) if where == "model.net" else ("eval", "report", "generate")
    ):
        assert code == 2, (tool, err)
        assert "plain data" in _one_error(err) or "not a text task" in err
    _untouched(victim, marker)


@pytest.mark.parametrize(
    "net",
    [
        {"extra": "${oc.create:{_target_: builtins.open, _args_: [VICTIM, w]}}"},
        {"_target_": "builtins.open", "_args_": ["VICTIM", "w"]},
        {"_target_": "project.runs.__main__.X"},
        {"d_vocab": {"_target_": "builtins.open", "_args_": ["VICTIM", "w"]}},
        {"_partial_": True},
    ],
    ids=["resolver", "open", "main", "nested", "partial"],
)
def test_a_crafted_checkpoint_with_its_hash_recomputed_is_refused(
    scene: tuple[Path, Path, Path], net: dict
) -> None:
    run, victim, marker = scene
    for path in sorted((run / "checkpoints").glob("*.ckpt")):
        ckpt = torch.load(path, weights_only=True)
        spec = dict(ckpt["hyper_parameters"]["net"])
        for k, v in net.items():
            spec[k] = yaml.safe_load(yaml.safe_dump(v).replace("VICTIM", str(victim)))
        ckpt["hyper_parameters"]["net"] = spec
        torch.save(with_integrity({k: v for k, v in ckpt.items() if k != "integrity"}), path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(run / "checkpoints" / "last.ckpt")
    from project.runs import load_run

    with pytest.raises(CheckpointError, match="refused"):
        next(load_run(run).snapshots())
    import contextlib
    import io

    from project import report

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert report.main([str(run), "--max-snapshots", "2"]) == 2
    assert "refused" in _one_error(err.getvalue())
    _untouched(victim, marker)


def test_a_module_shipped_in_the_run_dir_is_never_imported(
    scene: tuple[Path, Path, Path],
) -> None:
    """``python -m project.eval .`` inside a downloaded run dir: ``-m`` puts the cwd on
    ``sys.path``, so ``evil.Net`` would import the run dir's own ``evil.py``."""
    run, victim, marker = scene
    (run / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nNet = None\n")
    (run / "evilpkg").mkdir()
    (run / "evilpkg" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    _edit_config(run, lambda cfg: cfg["model"]["net"].update(_target_="evil.Net"))
    proc = subprocess.run(
        [sys.executable, "-m", "project.eval", "."],
        cwd=run, env=cli_env(PYTHONPATH=str(ROOT / "src")), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "inside the run dir" in _one_error(proc.stderr)
    _untouched(victim, marker)
    # a package shipped there, from a process whose sys.path starts with the cwd, as -m's does
    _edit_config(run, lambda cfg: cfg["model"]["net"].update(_target_="evilpkg.nets.Net"))
    cwd = os.getcwd()
    os.chdir(run)
    sys.path.insert(0, "")
    try:
        from project import eval as project_eval

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert project_eval.main(["."]) == 2
    finally:
        sys.path.remove("")
        os.chdir(cwd)
    assert "inside the run dir" in _one_error(err.getvalue())
    assert "evilpkg" not in sys.modules
    _untouched(victim, marker)


# -- 4. writes stay inside the run dir -----------------------------------------------------


@pytest.mark.parametrize(
    "link",
    ["report", "summary.json", "resolved_config.yaml", "run.log", "checkpoints/last.ckpt", "wandb"],
)
def test_a_symlink_leaving_the_run_dir_is_refused(
    scene: tuple[Path, Path, Path], link: str, capsys: pytest.CaptureFixture
) -> None:
    run, victim, marker = scene
    elsewhere = victim.parent / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / Path(link).name
    path = run / link
    if path.is_dir():
        shutil.rmtree(path)
        target.mkdir()
        (target / "index.html").write_text("precious\n")
    elif path.exists():
        shutil.copy(path, target)
        path.unlink()
    else:
        target.write_text("precious\n")
    before = {p: p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()}
    path.symlink_to(target)
    codes = [code for tool, code, _ in _tools(run) if tool != "generate"]
    assert codes == [2, 2]
    with pytest.raises(SystemExit) as exit_info:
        main_in_process([f"run.ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_epochs=3"])
    assert exit_info.value.code == 2
    assert "symlink leaving the run dir" in _one_error(capsys.readouterr().err)
    assert {p: p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()} == before
    _untouched(victim, marker)


# -- legitimate runs stay readable --------------------------------------------------------


def test_a_command_line_task_in_a_moved_run_dir_evaluates_reports_and_resumes(
    tmp_path: Path,
) -> None:
    """A task and net named only on the command line (examples/my_project on PYTHONPATH), then
    the run dir moved: eval, report and resume work through the CLI; without the package, the
    one line says how to make it importable."""
    env = cli_env(PYTHONPATH=str(ROOT / "examples" / "my_project"))
    task = ["~data", "+data={_target_: my_project.ReverseTask, n_digits: 3, n_examples: 64, "
            "frac_train: 0.5, batch_size: 32}", "~model.net",
            "+model.net={_target_: my_project.TorchTransformer, d_model: 16, n_layers: 1}",
            "callbacks.run_summary.threshold=0.5", "trainer=cpu", "trainer.max_epochs=2",
            "trainer.check_val_every_n_epoch=1", "callbacks.snapshots.every_n_epochs=1"]  # fmt: skip
    out = tmp_path / "outputs"
    python = [sys.executable, "-m"]

    def run(*args: str, environ: dict[str, str] = env) -> subprocess.CompletedProcess:
        return subprocess.run([*python, *args], cwd=tmp_path, env=environ, capture_output=True,
                              text=True, timeout=300)  # fmt: skip

    proc = run("project.train.run", f"run.output_root={out}", *task)
    assert proc.returncode == 0, proc.stderr
    (trained,) = sorted(out.glob("*/*"))
    moved = tmp_path / "moved" / "run"
    shutil.move(trained, moved)
    assert run("project.eval", str(moved)).returncode == 0
    assert run("project.report", str(moved)).returncode == 0
    assert (moved / "report" / "index.html").is_file()
    proc = run("project.train.run", f"run.ckpt_path={moved}/checkpoints/last.ckpt",
               "trainer.max_epochs=3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((moved / "summary.json").read_text())["epochs"] == 3

    proc = run("project.eval", str(moved), environ=cli_env())  # the package not importable here
    assert proc.returncode == 2
    line = _one_error(proc.stderr)
    assert "make the package 'my_project' importable" in line, line


def test_a_refused_stored_setting_given_again_on_the_command_line_resumes(
    scene: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal's fix works: the key typed on this command line replaces the stored one."""
    run, victim, marker = scene
    monkeypatch.chdir(victim.parent)
    overrides = run / ".hydra" / "overrides.yaml"
    stored = yaml.safe_load(overrides.read_text())
    overrides.write_text(yaml.safe_dump([*stored, "callbacks.last_checkpoint.dirpath=stolen"]))
    here = "callbacks.last_checkpoint.dirpath=${hydra:runtime.output_dir}/checkpoints"
    main_in_process([f"run.ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_epochs=3", here])
    assert yaml.safe_load((run / "summary.json").read_text())["epochs"] == 3
    assert not (victim.parent / "stolen").exists()
    _untouched(victim, marker)
