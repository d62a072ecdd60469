"""A net whose logits do not have the task's shape is refused before the run dir exists: one
forward on a few real examples of the task, one line naming ``model.net``, the shape got and the
shape required, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from project.train.preflight import run_preflight
from tests.conftest import SMALL

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


def _net(name: str) -> list[str]:
    return ["~model.net", f"+model.net={{_target_: {HERE}.{name}}}"]


@pytest.mark.parametrize(
    ("net", "got"),
    [("WideNet", "[4, 3, 48]"), ("PooledNet", "[4, 23]")],
)
def test_wrong_logits_shape_is_one_line_naming_model_net(
    net: str, got: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_preflight([*SMALL, f"run.output_root={tmp_path / 'out'}", *_net(net)])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: model.net is invalid: its forward returned " + got), line
    assert "allowed logits [batch, pos, d_vocab_out] = [4, 3, 23]" in line  # modular: 3 tokens
    assert not (tmp_path / "out").exists()


def test_a_forward_that_raises_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        run_preflight([*SMALL, f"run.output_root={tmp_path / 'out'}", *_net("BrokenNet")])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: model.net: forward failed on a batch of 4 examples"), line


def test_a_net_with_the_right_shape_passes(tmp_path: Path) -> None:
    args = run_preflight([*SMALL, f"run.output_root={tmp_path / 'out'}", *_net("GoodNet")])
    assert any("GoodNet" in a for a in args)
