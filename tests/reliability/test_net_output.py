"""A net whose logits do not have the task's shape is refused when training starts, before the
first step: one line naming ``model.net``, the shape got and the shape required, exit 2, and the
run dir removed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import SMALL, main_in_process, run_dirs, train_in_process

HERE = "tests.reliability.test_net_output"


class WideNet(nn.Module):
    """Forgot the unembedding: [b, pos, 2 * d_vocab] logits."""

    def __init__(self, d_vocab: int, n_ctx: int, d_vocab_out: int, d_model: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(d_vocab, 2 * d_vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens)


class PooledNet(nn.Module):
    """[b, d_vocab_out]: no position axis."""

    def __init__(self, d_vocab: int, n_ctx: int, d_vocab_out: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(d_vocab, 8)
        self.out = nn.Linear(8, d_vocab_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(tokens).mean(1))


class GoodNet(PooledNet):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(tokens))


class BrokenNet(GoodNet):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(tokens)  # int64 into a Linear


QUIET = ["logger=none", "callbacks.progress_bar=null"]


def _errors(err: str) -> list[str]:
    """The ``error:`` lines (in-process, a logging handler an earlier test left may add noise)."""
    return [line for line in err.splitlines() if line.startswith("error")]


def _net(name: str) -> list[str]:
    return ["~model.net", f"+model.net={{_target_: {HERE}.{name}}}"]


@pytest.mark.parametrize(
    ("net", "got"),
    [("WideNet", "[264, 3, 48]"), ("PooledNet", "[264, 23]")],  # the first (full) batch
)
def test_wrong_logits_shape_is_one_line_naming_model_net(
    net: str, got: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main_in_process([*SMALL, f"run.output_root={out}", *QUIET, *_net(net)])
    assert exit_info.value.code == 2
    (line,) = _errors(capsys.readouterr().err)
    assert line.startswith("error: model.net is invalid: its forward returned " + got), line
    assert "allowed logits [batch, pos, d_vocab_out] = [264, 3, 23]" in line  # modular: 3 tokens
    assert run_dirs(out) == [] and not out.exists()


def test_a_forward_that_raises_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main_in_process([*SMALL, f"run.output_root={out}", *QUIET, *_net("BrokenNet")])
    assert exit_info.value.code == 2
    (line,) = _errors(capsys.readouterr().err)
    assert line.startswith("error: model.net: forward failed on a batch of 264 examples"), line
    assert "BrokenNet" in line and "RuntimeError: mat1 and mat2" in line
    assert run_dirs(out) == [] and not out.exists()


def test_a_net_with_the_right_shape_trains(tmp_path: Path) -> None:
    run_dir = train_in_process(tmp_path, *SMALL, *QUIET, "trainer.max_epochs=1", *_net("GoodNet"))
    assert (run_dir / "summary.json").is_file()
    assert "GoodNet" in (run_dir / "resolved_config.yaml").read_text()
