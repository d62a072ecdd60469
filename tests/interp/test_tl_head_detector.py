"""Head scores equal TransformerLens's ``detect_head`` on the same model and tokens (``tl`` group).

Our default ``head_detector`` / ``score_pattern(reduce="tl")`` is TL's ``mul`` measure; TL's
``detect_head`` takes strings, so the test gives the TL model a ``to_tokens`` that returns our
token rows (no tokenizer needed) and passes one "string" per sequence: TL then averages the
per-sequence scores, as ours does. Checked with TL's defaults and with ``exclude_bos`` and
``exclude_current_token``.
"""

from __future__ import annotations

import os

import pytest
import torch

from project.models.tiny_transformer import TinyTransformer

if os.environ.get("REQUIRE_TRANSFORMER_LENS"):  # .ci/run's interop step: missing = a failure
    import transformer_lens  # noqa: F401
else:
    pytest.importorskip("transformer_lens", reason="uv sync --group tl")

from transformer_lens.head_detector import detect_head  # noqa: E402

from project.interp.induction import head_detector  # noqa: E402
from project.interp.tl_export import to_hooked_transformer  # noqa: E402

TL_NAMES = {
    "previous_token": "previous_token_head",
    "duplicate_token": "duplicate_token_head",
    "induction": "induction_head",
}


def repeated_tokens(n_seq: int = 4, span: int = 6, vocab: int = 20) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    first = torch.randint(0, vocab, (n_seq, span), generator=gen)  # repeats inside a span too
    return torch.cat([first, first], dim=1)


@pytest.mark.parametrize(
    "options",
    [{}, {"exclude_bos": True}, {"exclude_current_token": True},
     {"exclude_bos": True, "exclude_current_token": True}],
)  # fmt: skip
def test_head_detector_equals_transformer_lens_detect_head(options: dict) -> None:
    torch.manual_seed(0)
    tokens = repeated_tokens()
    # TL asserts seq_len < n_ctx
    ours = TinyTransformer(d_vocab=20, n_ctx=tokens.shape[1] + 1, n_layers=2, d_model=32,
                           n_heads=4, d_mlp=0).eval()  # fmt: skip
    for p in ours.parameters():  # sharper attention than the init's near-uniform patterns
        p.data.mul_(3.0)
    tl_model = to_hooked_transformer(ours)
    rows = {f"seq{i}": tokens[i : i + 1] for i in range(len(tokens))}

    def to_tokens(seq: str | list[str], *args: object, **kwargs: object) -> torch.Tensor:
        """Our token rows stand in for strings (TL tokenises the list first, then each one)."""
        return torch.cat([rows[s] for s in seq]) if isinstance(seq, list) else rows[seq]

    tl_model.to_tokens = to_tokens
    table = head_detector(ours, tokens, **options)
    for kind, tl_name in TL_NAMES.items():
        theirs = detect_head(tl_model, list(rows), tl_name, **options)  # [n_layers, n_heads]
        mine = torch.tensor(table[kind].to_numpy(), dtype=theirs.dtype).view_as(theirs)
        assert torch.allclose(mine, theirs, atol=1e-5), (kind, options, mine, theirs)
        assert theirs.std() > 0.01  # non-trivial scores: the comparison can fail
