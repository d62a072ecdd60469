"""The README's commands as a user types them: real subprocesses, real scripts, real TensorBoard."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, cli_env, run_cli, run_dirs


def test_seed_readme_quick_cpu_run(tmp_path: Path) -> None:
    proc = run_cli(
        "model=causal_lm",
        "data=modular",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "data.batch_size=256",
        "trainer.log_every_n_steps=1",
        f"run.output_root={tmp_path}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 15  # ceil(3830 / 256) mini-batches in the one epoch
    assert any((run / "tb_logs").glob("events.out.tfevents.*"))


BAD_INPUTS = [
    (["data.operation=pow"], "data.operation='pow'", "add, sub, mul, div"),
    (["data.frac_train=1.5"], "data.frac_train=1.5", "(0, 1)"),
    (["data.modulus=1"], "data.modulus=1", ">= 2"),
    (["data.operation=div", "data.modulus=91"], "data.modulus=91", "prime"),
    (
        ["model.net.d_model=130", "model.net.n_heads=4"],
        "model.net.d_model=130",
        "multiple of n_heads=4",
    ),
    (["trainer=nonexistent"], "trainer=nonexistent", "cpu, ddp"),
]


@pytest.mark.parametrize(("overrides", "names", "allowed"), BAD_INPUTS, ids=lambda v: str(v)[:40])
def test_bad_input_is_one_clear_line_and_leaves_nothing(
    tmp_path: Path, overrides: list[str], names: str, allowed: str
) -> None:
    proc = run_cli(*overrides, f"run.output_root={tmp_path / 'outputs'}", cwd=tmp_path, timeout=600)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and names in lines[0] and allowed in lines[0]
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()
    assert "Traceback" not in proc.stderr + proc.stdout


def test_smoke_local_falls_back_to_cpu_without_mps(tmp_path: Path) -> None:
    if shutil.which("uv") is None:
        pytest.skip("uv not on PATH")
    proc = subprocess.run(
        [
            str(ROOT / "scripts" / "smoke_local.sh"),
            "trainer.max_epochs=2",
            "data.modulus=23",
            f"run.output_root={tmp_path}",
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    if not torch.backends.mps.is_available():
        assert "MPS is not available on this machine; running on CPU" in proc.stdout
    (run,) = run_dirs(tmp_path)
    assert (run / "checkpoints" / "last.ckpt").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_gpu_scripts_explain_a_missing_gpu(tmp_path: Path) -> None:
    if shutil.which("uv") is None:
        pytest.skip("uv not on PATH")
    gpu = subprocess.run(
        [str(ROOT / "scripts" / "train_gpu.sh"), f"run.output_root={tmp_path}"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )
    assert gpu.returncode == 2 and "no CUDA GPU is available" in gpu.stderr
    ddp = subprocess.run(
        [str(ROOT / "scripts" / "train_ddp.sh")],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )
    assert ddp.returncode == 2 and "trainer.accelerator=cpu" in ddp.stderr
    assert not any(tmp_path.iterdir())


def test_tensorboard_serves_the_run(tmp_path: Path) -> None:
    from tests.conftest import SMALL, train_in_process

    run = train_in_process(tmp_path, *SMALL, "trainer.max_epochs=3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tb = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(tmp_path / "outputs"),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_env(),
    )
    try:
        runs = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=2) as r:
                    runs = json.load(r)
                if runs:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        expected = os.path.relpath(run / "tb_logs", tmp_path / "outputs")
        assert runs and expected in runs, runs
    finally:
        tb.terminate()
        tb.wait(timeout=30)


@pytest.mark.slow
def test_setup_vm_is_idempotent() -> None:
    for _ in range(2):
        proc = subprocess.run(
            [str(ROOT / "scripts" / "setup_vm.sh")], capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "torch " in proc.stdout and "cuda available:" in proc.stdout
