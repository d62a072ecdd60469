"""The inputs and faults of issue #35 that reach the template core: each was tried on the old
code first (a traceback, a weak message, silence, or work lost) and ends as the README says:
one line naming the key or file and what is allowed, a non-zero exit, nothing left behind."""

from __future__ import annotations

import contextlib
import io
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from project.checkpoint import CheckpointError, read_checkpoint
from tests.conftest import ROOT, SMALL, main_in_process, run_dirs, train_in_process
from tests.reliability.helpers import tmpfs

QUIET = [*SMALL, "logger=csv", "callbacks.progress_bar=null", "model.net.d_model=16",
         "model.net.d_mlp=32"]  # fmt: skip


def _rejected(tmp_path: Path, capsys: pytest.CaptureFixture, *argv: str) -> str:
    out = tmp_path / "outputs"
    with pytest.raises(SystemExit) as exit_info:
        main_in_process([f"run.output_root={out}", *argv])
    assert exit_info.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(errors) == 1, errors
    assert run_dirs(out) == [], "a rejected run left its run dir"
    return errors[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["model.net.d_mlp=0", "trainer.max_epochs=1"],
         "callbacks.progress_measures.every_n_epochs=200 is invalid with an attention-only net"),
        (["grokfast=ema", "grokfast.alpha=1.5"],
         "grokfast.alpha=1.5 is invalid: grokfast is a config group (grokfast=<name> picks a "
         "config), not a key; allowed: callbacks.grokfast.alpha=1.5"),
        (["run.name=nan"], "run.name=nan is invalid: allowed a plain name; it was read as a float"),
    ],
    ids=["attention-only-with-fourier-measures", "group-setting", "name-read-as-number"],
)  # fmt: skip
def test_a_bad_input_is_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], expected: str
) -> None:
    line = _rejected(tmp_path, capsys, *SMALL, *argv)
    assert line.startswith(f"error: {expected}"), line


def test_a_typo_under_a_token_task_lists_the_base_class_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's ReverseTask passes ``**kwargs`` to ``TokenTask``: its keys count too."""
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "my_project"))
    task = "+data={_target_: my_project.ReverseTask, split_sed: 1}"
    line = _rejected(tmp_path, capsys, "~data", task)
    assert "did you mean data.split_seed?" in line and "batch_size" in line, line


def test_a_truncated_checkpoint_says_so(tmp_path: Path) -> None:
    path = tmp_path / "full.ckpt"
    torch.save({"state_dict": {"w": torch.randn(1000)}, "epoch": 1}, path)
    data = path.read_bytes()
    for fraction in (0.01, 0.1, 0.5, 0.9, 0.999):
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path)
        assert "truncated or corrupt" in str(info.value) and "Errno" not in str(info.value)


@pytest.mark.parametrize("tool", ["eval", "generate"])
def test_eval_and_generate_name_a_missing_or_empty_file(tmp_path: Path, tool: str) -> None:
    from project import eval as project_eval
    from project import generate

    main = project_eval.main if tool == "eval" else generate.main
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "text.ckpt").write_text("notes\n")
    for name, what in (("nope", "does not exist"), ("empty.ckpt", "is empty"),
                       ("text.ckpt", "not a PyTorch checkpoint")):  # fmt: skip
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main([str(tmp_path / name)]) == 2
        (line,) = err.getvalue().strip().splitlines()
        assert what in line, line


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_in_process(
        tmp_path_factory.mktemp("trained"), *QUIET, "trainer.max_epochs=2",
        "callbacks.last_checkpoint.every_n_epochs=1",
    )  # fmt: skip


def test_a_resume_while_another_process_trains_the_run_is_refused_and_kill_9_frees_it(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    lock = run / ".hydra" / "train.lock"
    holder = subprocess.Popen(  # a process that holds the run's lock, as a training resume does
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); f.write('4242'); f.flush(); print('held', flush=True); "
         "time.sleep(600)", str(lock)], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    before = (run / "run.log").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main_in_process([f"run.ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_epochs=3"])
    assert exit_info.value.code == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert "is being trained by another process (pid 4242)" in line, line
    assert (run / "run.log").read_text() == before, "the refused resume wrote to run.log"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    main_in_process([f"run.ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_epochs=3"])
    log = (run / "run.log").read_text()
    assert "resumed from" in log and "after epoch 2: epochs after it are run" in log


def test_a_resume_into_a_read_only_run_dir_is_one_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with tmpfs(tmp_path / "disk", "8m") as disk:
        run = disk / "run"
        shutil.copytree(trained, run)
        remount = ["mount", "-o", "remount,ro", str(disk)]
        if subprocess.run(remount, capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        with pytest.raises(SystemExit) as exit_info:
            main_in_process([f"run.ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_epochs=3"])
        assert exit_info.value.code == 2
        errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(errors) == 1 and "is read-only" in errors[0], errors


def test_a_run_that_diverges_before_its_first_last_ckpt_says_nothing_was_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main_in_process([f"run.output_root={tmp_path / 'outputs'}", *QUIET,
                         "model.optimizer.lr=1e30", "trainer.max_epochs=20",
                         "callbacks.last_checkpoint.every_n_epochs=50",
                         "callbacks.last_checkpoint.every_n_minutes=0"])  # fmt: skip
    assert exit_info.value.code == 3
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert "nothing was saved to resume from" in line and "left: run.log" in line, line
    assert "does not exist or is unreadable" not in line


def test_a_full_disk_before_the_first_last_ckpt_says_no_space(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "3m") as disk:
        proc = subprocess.run(
            [sys.executable, "-m", "project.train.run", f"run.output_root={disk}/out",
             "trainer.max_epochs=5", "data.modulus=113", "logger=csv",
             "callbacks.progress_bar=null"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert proc.returncode == 4, proc.stderr[-2000:]
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: no space left on "), errors


def test_a_resume_whose_overrides_file_is_a_mapping_names_the_file(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump({"seed": 1}))
    with pytest.raises(SystemExit):
        main_in_process([f"run.ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_epochs=3"])
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert "overrides.yaml holds a mapping; allowed: a YAML list of override strings" in line, line


def test_a_resume_whose_summary_is_not_json_names_the_file_and_changes_nothing(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "summary.json").write_text("{not json")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as exit_info:
        main_in_process([f"run.ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_epochs=3"])
    assert exit_info.value.code == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert "summary.json" in line and "not JSON" in line and "allowed" in line, line
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
