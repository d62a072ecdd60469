"""A typo on the command line is one line naming key, value and what is allowed, and creates
nothing; every class the configs name has keys the checks can read (``inspect.signature``)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml

from project.train.checks import _parameters, _type_name, type_ok
from tests.conftest import ROOT, run_cli


def _targets() -> set[str]:
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("_target_"), str):
                found.add(node["_target_"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in [*ROOT.glob("configs/**/*.yaml"), *ROOT.glob("examples/**/*.yaml")]:
        for doc in yaml.safe_load_all(path.read_text()):
            walk(doc)
    return {t for t in found if not t.startswith(("hydra", "my_project"))}


TARGETS = sorted(_targets())


def test_the_configs_name_the_classes_this_checks() -> None:
    assert "project.data.modular.ModularDataModule" in TARGETS
    assert "torch.optim.AdamW" in TARGETS and len(TARGETS) >= 15


@pytest.mark.parametrize("target", TARGETS)
def test_the_checks_read_the_keys_of_every_configured_class(target: str) -> None:
    params, takes_any = _parameters(target)  # imports it; raises if it cannot
    assert isinstance(params, dict) and isinstance(takes_any, bool)


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("trainer.max_epochs=0", "error: trainer.max_epochs=0 is invalid: allowed an integer >= 1"),
        ("model.optimizer.lr=fast", "error: model.optimizer.lr='fast' is invalid: allowed a value"),
        (
            "data.frac_train=x",
            "error: data.frac_train='x' is invalid: allowed a value of type float",
        ),
        ("callbacks.run_summary.mode=3", "error: callbacks.run_summary.mode=3 is invalid"),
    ],
)
def test_a_typo_is_one_line_and_creates_nothing(tmp_path: Path, override: str, line: str):
    proc = run_cli(override, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(line), proc.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_literal_annotations_are_checked_and_named() -> None:
    kind = typing.Literal["ema", "ma"]
    assert type_ok("ema", kind) is True and type_ok("sma", kind) is False
    assert _type_name(kind) == "one of ema, ma"
    assert _type_name(typing.Optional[int]) == "a value of type Optional[int]"  # noqa: UP045
