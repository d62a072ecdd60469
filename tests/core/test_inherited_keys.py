"""A subclass's keys are its base class's constructor arguments too (``split_seed`` of a
``TokenTask`` subclass passing ``**kwargs`` on); an unknown key lists all of them; a ``_target_``
replaced on the command line is checked against the new class, its stale keys named in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from project.train.preflight import run_preflight

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_project"
USER = [f"hydra.searchpath=[file://{EXAMPLE / 'configs'}]", "data=reverse", "data.n_examples=64"]


@pytest.fixture(autouse=True)
def _user_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "my_project", raising=False)


def _lines(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    with pytest.raises(SystemExit) as exit_info:
        run_preflight([*argv, f"run.output_root={tmp_path / 'out'}"])
    assert exit_info.value.code == 2
    assert not (tmp_path / "out").exists()
    return capsys.readouterr().err.strip().splitlines()


def test_a_base_class_argument_is_a_key(tmp_path: Path) -> None:
    argv = run_preflight([*USER, "+data.split_seed=3", f"run.output_root={tmp_path}"])
    assert "+data.split_seed=3" in argv


def test_a_base_class_argument_not_in_the_config_says_how_to_add_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (line,) = _lines([*USER, "data.split_seed=3"], tmp_path, capsys)
    assert line == (
        "error: data.split_seed=3 is invalid: data.split_seed is not in the config; "
        "my_project.ReverseTask takes it, so add it with +data.split_seed=3"
    )


def test_an_unknown_key_lists_the_base_class_arguments_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (line,) = _lines([*USER, "+data.bogus=1"], tmp_path, capsys)
    assert line.startswith("error: data.bogus=1 is invalid: allowed a known key: ReverseTask takes")
    assert "n_digits" in line and "split_seed" in line and "shuffle_seed" in line


def test_a_replaced_target_names_its_stale_keys_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "project.data.parity.SparseParityDataModule"
    (line,) = _lines([*USER, f"data._target_={target}"], tmp_path, capsys)
    assert line.startswith(f"error: data._target_={target} is invalid: allowed a class that takes")
    assert "does not take n_digits, n_examples" in line and "~data.n_digits" in line


def test_an_optimiser_value_is_checked_without_building_the_task_or_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``model.optimizer.lr=-1``: the optimiser is built on a dummy parameter with torch alone;
    the task and module (which import Lightning, seconds) are the default's and not built."""
    import project.build_checks as assemble

    def fail(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("check_buildable was called")

    monkeypatch.setattr(assemble, "check_buildable", fail)
    (line,) = _lines(["model.optimizer.lr=-1"], tmp_path, capsys)
    assert line.startswith("error: model.optimizer.lr=-1 is invalid: allowed a number >= 0")
