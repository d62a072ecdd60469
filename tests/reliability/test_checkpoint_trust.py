"""A checkpoint is data, never code, and never silently different.

* Crafted ``_target_``s in a checkpoint's ``hyper_parameters.net``, a run dir's
  ``resolved_config.yaml`` or the overrides a resume replays are refused before anything they name
  is called (``builtins.open(victim, "w")`` truncated files before; ``Path.touch``,
  ``shutil.copyfile``, ``os.makedirs`` ran too): ``load_checkpoint``, ``load_run``, eval, report,
  generate and resume.
* Every checkpoint carries a SHA-256 of its content; a flipped bit in tensor data or a damaged
  pickle byte is "corrupt or tampered" on every read and on resume (one line, exit 2).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from project.callbacks.checkpoints import AtomicCheckpointIO
from project.checkpoint import CheckpointError, read_checkpoint
from project.stored import StoredDataError, load_checkpoint, locate_class
from tests.conftest import SMALL, main_in_process, train_in_process
from tests.reliability.helpers import assert_bit_identical

NET = "project.models.tiny_transformer.TinyTransformer"


def _crafted_specs(tmp: Path) -> dict[str, tuple[dict, Path]]:
    """``_target_`` specs that ran code before, each with the file it would create or clobber."""
    victim = tmp / "victim.txt"
    victim.write_text("precious\n")
    return {
        "open-w": ({"_target_": "builtins.open", "_args_": [str(victim), "w"]}, victim),
        "touch": ({"_target_": "pathlib.Path.touch", "_args_": [str(tmp / "touched")]}, tmp / "touched"),
        "copyfile": (
            {"_target_": "shutil.copyfile", "_args_": [str(victim), str(tmp / "copied")]},
            tmp / "copied",
        ),
        "makedirs": ({"_target_": "os.makedirs", "_args_": [str(tmp / "made")]}, tmp / "made"),
        "nested": (  # a trusted net whose argument is a crafted call
            {"_target_": NET, "d_vocab": {"_target_": "builtins.open", "_args_": [str(victim), "w"]}},
            victim,
        ),
        # importable, in a trusted package, but not a net: refused by kind
        "torch-function": ({"_target_": "torch.save", "_args_": [1, str(tmp / "saved")]}, tmp / "saved"),
    }  # fmt: skip


def _untouched(tmp: Path, marker: Path) -> None:
    assert (tmp / "victim.txt").read_text() == "precious\n", "the victim file was clobbered"
    if marker.name != "victim.txt":
        assert not marker.exists(), f"{marker.name} was created: the target ran"


def _ckpt(path: Path, net_spec: dict) -> Path:
    state = {"net.embed.W_E": torch.zeros(4, 8)}
    torch.save({"state_dict": state, "hyper_parameters": {"net": net_spec}, "epoch": 0}, path)
    return path


@pytest.mark.parametrize(
    "name", ["open-w", "touch", "copyfile", "makedirs", "nested", "torch-function"]
)
def test_load_checkpoint_never_builds_a_crafted_target(tmp_path: Path, name: str) -> None:
    spec, marker = _crafted_specs(tmp_path)[name]
    path = _ckpt(tmp_path / "crafted.ckpt", spec)
    with pytest.raises(CheckpointError, match=r"model\.net.* is refused") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    _untouched(tmp_path, marker)


def test_the_rule_allows_classes_of_the_roles_kind_from_your_packages() -> None:
    assert locate_class(NET, "model.net", "x").__name__ == "TinyTransformer"
    assert locate_class("torch.optim.SGD", "model.optimizer", "x").__name__ == "SGD"
    assert locate_class("examples.my_project.my_project.TorchTransformer", "model.net", "x")
    with pytest.raises(StoredDataError, match="standard-library"):
        locate_class("collections.OrderedDict", "model.net", "x")
    with pytest.raises(StoredDataError, match="not a torch.nn.Module subclass"):
        locate_class("torch.optim.SGD", "model.net", "x")
    with pytest.raises(StoredDataError, match="importable"):
        locate_class("nope_pkg.Net", "model.net", "x")


def _fake_run_dir(tmp: Path, data_node: dict) -> Path:
    """A run dir as a colleague might send it: a (valid) checkpoint and a crafted config."""
    run_dir = tmp / "shared_run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    _ckpt(run_dir / "checkpoints" / "last.ckpt", {"_target_": NET, "d_vocab": 4, "d_model": 8})
    model = {"_target_": "project.lit_module.LitCausalLM", "_recursive_": False,
             "net": {"_target_": NET}, "optimizer": {"_target_": "torch.optim.AdamW"}}  # fmt: skip
    config = {"data": data_node, "model": model, "seed": 0}
    (run_dir / "resolved_config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def test_eval_load_run_report_and_generate_refuse_a_crafted_run_config(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from project.eval import main as eval_main
    from project.generate import load_vocab
    from project.report import main as report_main
    from project.runs.load import load_run

    spec, marker = _crafted_specs(tmp_path)["open-w"]
    run_dir = _fake_run_dir(tmp_path, spec)
    assert eval_main([str(run_dir)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "data._" in line and "is refused" in line
    with pytest.raises(StoredDataError):
        load_run(run_dir).datamodule()
    (run_dir / "resolved_config.yaml").write_text(
        yaml.safe_dump({"data": {**spec, "_target_": "builtins.open", "TextDataModule": 1}})
    )
    with pytest.raises(ValueError, match="not a text task|refused"):
        load_vocab(run_dir)
    _untouched(tmp_path, marker)
    (run_dir / "resolved_config.yaml").write_text(yaml.safe_dump({"data": spec, "seed": 0}))
    code = report_main([str(run_dir)])  # the report rebuilds the task: one line, exit 2
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is refused" in err[0], err
    _untouched(tmp_path, marker)


def test_eval_of_a_malicious_pickle_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import os

    from project.eval import main as eval_main

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {tmp_path / 'PAYLOAD_RAN'}",))

    run_dir = _fake_run_dir(tmp_path, {"_target_": "project.data.modular.ModularDataModule"})
    torch.save({"state_dict": {}, "payload": Payload()}, run_dir / "checkpoints" / "last.ckpt")
    assert eval_main([str(run_dir)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "corrupt or tampered" in line and "last.ckpt" in line
    assert not (tmp_path / "PAYLOAD_RAN").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) run: 3 epochs, last.ckpt every epoch, weights-only snapshots."""
    tmp = tmp_path_factory.mktemp("run")
    return train_in_process(
        tmp, *SMALL, "trainer.max_epochs=3", "logger=csv", "callbacks.progress_bar=null",
        "callbacks.last_checkpoint.every_n_epochs=1", "callbacks.snapshots.every_n_epochs=1",
    )  # fmt: skip


def _entry(path: Path, tensor: bool) -> tuple[int, int]:
    """``(offset, size)`` of the first tensor's data (else of ``data.pkl``) inside a
    ``torch.save`` zip: entries are stored uncompressed, after a local header whose padding
    differs from the central directory's."""
    with zipfile.ZipFile(path) as archive:
        info = next(
            i
            for i in archive.infolist()
            if ("/data/" in i.filename and i.file_size > 64) == tensor
            and (tensor or i.filename.endswith("data.pkl"))
        )
    with path.open("rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def _tensor_offset(path: Path) -> int:
    return _entry(path, tensor=True)[0]


def _flip(path: Path, offset: int, n_bytes: int = 1, bit: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + n_bytes):
        data[i] ^= (1 << bit) if bit is not None else 0xFF
    path.write_bytes(bytes(data))


def test_every_checkpoint_carries_its_hash_and_a_flipped_bit_is_refused(
    finished_run: Path, tmp_path: Path
) -> None:
    last = finished_run / "checkpoints" / "last.ckpt"
    ckpt = read_checkpoint(last)
    assert ckpt["integrity"]["scheme"] == "sha256/v1" and len(ckpt["integrity"]["sha256"]) == 64
    snapshot = finished_run / "checkpoints" / "epoch_000001.ckpt"
    assert "integrity" in read_checkpoint(snapshot)  # weights-only snapshots too
    for n_bytes, bit in ((16, None), (1, 0)):  # 16 bytes; one bit
        copy = tmp_path / f"flipped_{n_bytes}.ckpt"
        shutil.copy(last, copy)
        _flip(copy, _tensor_offset(copy) + 8, n_bytes, bit)
        assert torch.load(copy, weights_only=True)  # torch alone reads it without a word
        for load in (read_checkpoint, load_checkpoint, AtomicCheckpointIO().load_checkpoint):
            with pytest.raises(CheckpointError, match="corrupt or tampered"):
                load(copy)


def test_a_damaged_pickle_byte_reads_corrupt_or_tampered(
    finished_run: Path, tmp_path: Path
) -> None:
    last = finished_run / "checkpoints" / "last.ckpt"
    start, size = _entry(last, tensor=False)
    refused = 0
    for i in range(8):  # a spread of positions across the pickle stream
        copy = tmp_path / f"pkl_{i}.ckpt"
        shutil.copy(last, copy)
        _flip(copy, start + 2 + i * (size // 9))
        try:
            loaded = read_checkpoint(copy)
        except CheckpointError as exc:
            assert "corrupt or tampered" in str(exc) and "malicious" not in str(exc)
            refused += 1
        else:  # a byte the content does not depend on (a pickle memo slot): never a silent change
            assert_bit_identical(loaded, read_checkpoint(last))
    assert refused >= 6, refused


def test_resume_from_a_corrupted_last_ckpt_is_one_line_exit_2(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_copy = tmp_path / "run"
    shutil.copytree(finished_run, run_copy)
    last = run_copy / "checkpoints" / "last.ckpt"
    _flip(last, _tensor_offset(last) + 8, 16)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exc:
        main_in_process([f"run.ckpt_path={last}"])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: run.ckpt_path=") and "corrupt or tampered" in line
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in before] == [], "the rejected resume left files"


def test_resume_never_builds_or_quotes_a_crafted_target(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    spec, marker = _crafted_specs(tmp_path)["open-w"]
    run_copy = tmp_path / "run"
    shutil.copytree(finished_run, run_copy)
    last = run_copy / "checkpoints" / "last.ckpt"
    ckpt = read_checkpoint(last)
    ckpt["hyper_parameters"]["net"] = spec
    AtomicCheckpointIO().save_checkpoint(ckpt, last)  # a consistent hash: crafted, not corrupt
    main_in_process([f"run.ckpt_path={last}", "trainer.max_epochs=4"])  # hparams stay data
    capsys.readouterr()
    _untouched(tmp_path, marker)
    # the overrides a resume replays are data too
    shutil.copy(finished_run / "checkpoints" / "last.ckpt", last)
    overrides = run_copy / ".hydra" / "overrides.yaml"
    victim = tmp_path / "victim.txt"
    replayed = ["data._target_=builtins.open", f"+data.file={victim}", "+data.mode=w"]
    overrides.write_text(yaml.safe_dump(yaml.safe_load(overrides.read_text()) + replayed))
    with pytest.raises(SystemExit) as exc:
        main_in_process([f"run.ckpt_path={last}", "trainer.max_epochs=5"])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "data._target_='builtins.open' is refused" in line
    _untouched(tmp_path, marker)
