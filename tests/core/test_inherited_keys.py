"""A subclass's keys are its base class's constructor arguments too (``split_seed`` of a
``TokenTask`` subclass passing ``**kwargs`` on); an unknown key lists all of them; a ``_target_``
replaced on the command line is checked against the new class, its stale keys named in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from project.train.checks import CONFIG_DIR, config_errors
from tests.conftest import main_in_process, run_dirs

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_project"
USER = [f"hydra.searchpath=[file://{EXAMPLE / 'configs'}]", "data=reverse", "data.n_examples=64"]


@pytest.fixture(autouse=True)
def _user_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "my_project", raising=False)


def _lines(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main_in_process([*argv, f"run.output_root={out}"])
    assert exit_info.value.code == 2
    assert run_dirs(out) == [] and not out.exists()
    # (in-process, a logging handler an earlier test left may add noise; the CLI does not)
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]


def test_a_base_class_argument_is_a_key(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", [*USER, "+data.split_seed=3", f"run.output_root={tmp_path}"])
    assert cfg.data.split_seed == 3 and cfg.data._target_ == "my_project.ReverseTask"
    assert config_errors(cfg) == []


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
