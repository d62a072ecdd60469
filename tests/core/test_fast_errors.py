"""A typo on the command line is reported without importing torch or Lightning (issue #15: bad
input errors in about a second): constructor signatures are read from source, and the default
(task, model) pair is not rebuilt."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_object

from project.train.validate import _type_ok
from tests.conftest import ROOT, cli_env


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


VALUES = [1, 0.5, True, "x", None, [0.9, 0.98], {"a": 1}]
_READ = """
import json, sys
from project.signatures import static_signature
from project.train.validate import _type_ok
out = {}
for target in sys.argv[1:]:
    s = static_signature(target)
    out[target] = s and {
        "names": s.names,
        "takes_any": s.takes_any_keyword,
        "verdicts": {n: [_type_ok(v, a) for v in VALUES] for n, a in s.annotations.items()},
    }
print(json.dumps(out))
""".replace("VALUES", repr(VALUES))


@pytest.fixture(scope="module")
def read_from_source() -> dict:
    """Every target's signature read in a fresh process (nothing imported yet)."""
    proc = subprocess.run(
        [sys.executable, "-c", _READ, *TARGETS], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_most_targets_are_read_from_source(read_from_source: dict) -> None:
    unread = [t for t, s in read_from_source.items() if s is None]
    assert len(unread) <= len(TARGETS) // 4, unread


@pytest.mark.parametrize("target", TARGETS)
def test_signature_from_source_matches_the_imported_class(read_from_source, target: str) -> None:
    static = read_from_source[target]
    if static is None:
        pytest.skip(f"{target}: read by importing it (no __init__ of its own)")
    obj = get_object(target)
    params = inspect.signature(obj).parameters
    names = [p for p, v in params.items() if v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
    assert static["names"] == names
    assert static["takes_any"] == any(v.kind is v.VAR_KEYWORD for v in params.values())
    try:
        hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
    except NameError:  # an annotation imported under TYPE_CHECKING only
        hints = {}
    for name, verdicts in static["verdicts"].items():  # never stricter than the real types
        real = hints.get(name, params[name].annotation)
        for value, verdict in zip(VALUES, verdicts, strict=True):
            assert verdict is None or verdict == _type_ok(value, real), (name, value)


def test_a_fresh_process_reads_source_not_modules() -> None:
    code = (
        "import sys; from project.signatures import static_signature as s; "
        "a = s('project.data.modular.ModularDataModule'); b = s('torch.optim.AdamW'); "
        "print(a.names[:2], 'lr' in b.names, 'torch' in sys.modules, 'lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split("\n")[0] == "['operation', 'modulus'] True False False", out.stderr


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
def test_a_typo_is_reported_without_importing_torch(tmp_path: Path, override: str, line: str):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "project.train.run", override],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")]
    assert len(errors) == 1 and errors[0].startswith(line), proc.stderr[-2000:]
    imported = {ln.rpartition("|")[2].strip() for ln in proc.stderr.splitlines() if "|" in ln}
    assert "torch" not in imported and "lightning" not in imported
    assert list(tmp_path.iterdir()) == []


def test_literal_annotations_are_checked_and_named() -> None:
    from project.train.validate import _type_name

    kind = typing.Literal["ema", "ma"]
    assert _type_ok("ema", kind) is True and _type_ok("sma", kind) is False
    assert _type_name(kind) == "one of ema, ma"
    assert _type_name(typing.Optional[int]) == "Optional[int]"  # noqa: UP045
