"""GPU-readiness options that run on CPU too: bf16-mixed precision and torch.compile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from project.utils.helpers import load_checkpoint
from tests.conftest import SMALL, train_in_process


def test_bf16_mixed_trains_on_cpu(tmp_path: Path) -> None:
    run = train_in_process(tmp_path, *SMALL, "trainer.max_epochs=3", "trainer.precision=bf16-mixed")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    model, _ = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert model.embed.W_E.dtype == torch.float32  # mixed precision keeps fp32 master weights


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["true", "reduce-overhead"])
def test_compile_trains_and_matches_eager(tmp_path: Path, mode: str) -> None:
    eager = train_in_process(tmp_path / "e", *SMALL, "trainer.max_epochs=3")
    compiled = train_in_process(
        tmp_path / "c", *SMALL, "trainer.max_epochs=3", f"model.compile={mode}"
    )
    a, _ = load_checkpoint(eager / "checkpoints" / "last.ckpt")
    b, _ = load_checkpoint(compiled / "checkpoints" / "last.ckpt")
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
