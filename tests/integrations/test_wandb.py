"""W&B with the real wandb package: offline fallback, files in the run dir, no secrets, resume."""

from __future__ import annotations

import contextlib
import io
import json
import struct
from pathlib import Path

import pytest
import yaml

from tests.conftest import train_in_process
from tests.integrations.conftest import TINY, main_in_process

SENTINEL = "wandbsecret0123456789abcdefSENTINEL"


def read_wandb_records(path: Path) -> list:
    """Records of a ``.wandb`` transaction log (W&B's LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, block, records, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        pending += chunk
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def config_and_summary(records: list) -> tuple[dict, dict]:
    config, summary = {}, {}
    for r in records:
        kind = r.WhichOneof("record_type")
        items = []
        if kind == "run":
            items = r.run.config.update
        elif kind == "config":
            items = r.config.update
        for item in items:
            config[item.key] = json.loads(item.value_json)
        if kind == "summary":
            for item in r.summary.update:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                summary[key] = json.loads(item.value_json)
        if kind == "history":
            for item in r.history.item:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                summary.setdefault(f"history:{key}", []).append(json.loads(item.value_json))
    return config, summary


@pytest.fixture(scope="module")
def wandb_runs(tmp_path_factory):
    """One offline W&B run with a (fake) API key in the environment, then a resume of it.

    Returns ``(run_dir, stderr of the first run)``.
    """
    tmp = tmp_path_factory.mktemp("wandb")
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WANDB_MODE", raising=False)
        mp.setenv("WANDB_API_KEY", SENTINEL)  # a key is configured, but the server is unreachable
        mp.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
        mp.setenv("WANDB_CONFIG_DIR", str(tmp / "wandb-config"))
        mp.setenv("WANDB_CACHE_DIR", str(tmp / "wandb-cache"))
        mp.setenv("WANDB_DATA_DIR", str(tmp / "wandb-data"))
        with contextlib.redirect_stderr(err):
            run_dir = train_in_process(
                tmp, *TINY, "logger=wandb", "+run.api_key=${oc.env:WANDB_API_KEY}"
            )
        main_in_process(f"run.ckpt_path={run_dir}/checkpoints/last.ckpt", "trainer.max_epochs=5")
    return run_dir, err.getvalue()


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_offline_fallback_notice_and_files_in_run_dir(wandb_runs) -> None:
    run_dir, stderr = wandb_runs
    notices = [ln for ln in stderr.splitlines() if ln.startswith("wandb: offline")]
    assert notices == [
        "wandb: offline (cannot reach 127.0.0.1 (Connection refused)); "
        "upload later with 'wandb sync'"
    ]
    runs = offline_runs(run_dir)
    assert len(runs) == 2  # the first run and its resume
    assert all(list(r.glob("run-*.wandb")) for r in runs)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["wandb"].startswith("wandb: offline run") and "wandb sync" in summary["wandb"]


def test_config_and_metrics_read_back(wandb_runs) -> None:
    run_dir, _ = wandb_runs
    first = offline_runs(run_dir)[0]
    config, summary = config_and_summary(read_wandb_records(next(first.glob("run-*.wandb"))))
    assert config["run_dir"] == str(run_dir)
    assert config["model"]["net"]["d_model"] == 32 and config["data"]["modulus"] == 23
    assert config["run"]["api_key"] == "<redacted>"
    final = json.loads((run_dir / "summary.json").read_text())["final"]
    # the first run's last logged values (epoch 3); the summary.json is the resumed run's (epoch 5)
    for key in ("train/acc", "val/acc", "train/loss", "val/loss"):
        assert key in summary and len(summary[f"history:{key}"]) == 3
    assert set(final) >= {"train/acc", "val/acc"}


def test_resume_continues_the_same_wandb_run(wandb_runs) -> None:
    run_dir, _ = wandb_runs
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    runs = offline_runs(run_dir)
    assert [r.name.rsplit("-", 1)[1] for r in runs] == [run_id, run_id]
    records = read_wandb_records(next(runs[1].glob("run-*.wandb")))
    run_records = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run_records and run_records[0].run_id == run_id
    _, summary = config_and_summary(records)
    assert len(summary["history:val/acc"]) == 2  # epochs 4 and 5 only


def test_no_secret_in_any_file_of_the_run_dir(wandb_runs) -> None:
    run_dir, _ = wandb_runs
    assert "${oc.env:WANDB_API_KEY}" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    leaks = [p for p in run_dir.rglob("*") if p.is_file() and SENTINEL.encode() in p.read_bytes()]
    assert leaks == []
    resolved = yaml.safe_load((run_dir / "resolved_config.yaml").read_text())
    assert resolved["run"]["api_key"] == "<redacted>"


def test_offline_reason(monkeypatch, tmp_path) -> None:
    from project.loggers import wandb_offline_reason

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_offline_reason() == "no W&B API key (set WANDB_API_KEY or run 'wandb login')"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_offline_reason() is None  # chosen by the user: no notice


def test_a_wandb_logger_subclass_is_built_as_itself(monkeypatch, tmp_path) -> None:
    """``logger._target_`` naming a subclass of ``WandbLogger`` gets the W&B handling (run dir,
    run id) and is built as that subclass, not replaced by the base class. Built as a rank other
    than zero, which does not start the W&B run (seconds)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
    from omegaconf import OmegaConf

    from project.build import build_loggers

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    target = "tests.integrations.wandb_subclass.TaggedWandbLogger"
    cfg = OmegaConf.create({"logger": {"_target_": target, "project": "t", "offline": True}})
    (logger,) = build_loggers(cfg, tmp_path)
    assert type(logger).__name__ == "TaggedWandbLogger" and logger.tagged
    assert logger.save_dir == str(tmp_path) and len(logger.version) == 8  # the run id
