"""Head scores on hand-built attention patterns with known answers."""

from __future__ import annotations

import pytest
import torch

from project.interp.induction import (
    duplicate_token_pattern,
    induction_pattern,
    period_pattern,
    previous_token_pattern,
    score_pattern,
)


def _repeated(n_batch: int = 3, span: int = 5, vocab: int = 1000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    first = torch.randperm(vocab, generator=gen)[: n_batch * span].view(n_batch, span)
    return torch.cat([first, first], dim=1)  # distinct tokens, repeated once: period = span


def _head(seq: int, target: callable) -> torch.Tensor:
    """[q, k] pattern putting all attention on target(i) (or on i itself when None)."""
    pat = torch.zeros(seq, seq)
    for i in range(seq):
        j = target(i)
        pat[i, j if j is not None and 0 <= j <= i else i] = 1.0
    return pat


def test_detection_patterns_match_the_period_definitions():
    tokens = _repeated()
    period = torch.full((3,), 5)
    assert torch.equal(duplicate_token_pattern(tokens), period_pattern(10, period, 0))
    assert torch.equal(induction_pattern(tokens)[:, 5:], period_pattern(10, period, 1)[:, 5:])
    prev = previous_token_pattern(tokens)
    assert prev[0, 3, 2] and prev.sum() == 3 * 9


def test_supervised_query_scores_of_ideal_and_uniform_heads():
    tokens = _repeated()
    seq, period = tokens.shape[1], 5
    heads = torch.stack(
        [
            _head(seq, lambda i: i - 1),  # previous-token head
            _head(seq, lambda i: i - period if i >= period else None),  # duplicate head
            _head(seq, lambda i: i - period + 1 if i >= period else None),  # induction head
            torch.tril(torch.ones(seq, seq)) / torch.arange(1, seq + 1)[:, None],  # uniform
        ]
    )
    pattern = heads.expand(3, -1, -1, -1)  # [batch, head, q, k]
    sq = "supervised_query"
    prev = score_pattern(pattern, previous_token_pattern(tokens), reduce=sq)  # queries 1.. count
    dup = score_pattern(pattern, duplicate_token_pattern(tokens), reduce=sq)
    ind = score_pattern(pattern, induction_pattern(tokens), reduce=sq)
    assert prev[0] == 1.0 and dup[1] == 1.0 and ind[2] == 1.0
    assert prev[1] < 0.2 and dup[0] == 0 and dup[2] == 0 and ind[0] < 0.2 and ind[1] == 0
    # uniform head: mean of 1/(i+1) over the queries that have a target
    expect_prev = sum(1 / (i + 1) for i in range(1, seq)) / (seq - 1)
    assert abs(float(prev[3]) - expect_prev) < 1e-6
    expect_ind = sum(1 / (i + 1) for i in range(period, seq)) / period
    assert abs(float(ind[3]) - expect_ind) < 1e-6
    everyone = torch.ones(3, seq, dtype=torch.bool)  # an explicit query mask counts query 0 too
    assert (
        abs(float(score_pattern(pattern, previous_token_pattern(tokens), everyone, sq)[0]) - 0.9)
        < 1e-6
    )
    # TransformerLens normalisation divides by all queries: half of them have no target
    assert (
        abs(float(score_pattern(pattern, induction_pattern(tokens), reduce="tl")[2]) - 0.5) < 1e-6
    )


def test_tl_default_scores_every_query_and_handles_the_exclude_options_as_tl():
    """TransformerLens ``detect_head`` (mul): sum(att * det) / sum(att) per sequence, with key 0
    and the diagonal zeroed first when excluded; known answers on hand-built heads."""
    tokens = _repeated()
    seq, period = tokens.shape[1], 5
    ideal_ind = _head(seq, lambda i: i - period + 1 if i >= period else None)  # else: itself
    uniform = torch.tril(torch.ones(seq, seq)) / torch.arange(1, seq + 1)[:, None]
    pattern = torch.stack([ideal_ind, uniform]).expand(3, -1, -1, -1)
    det = induction_pattern(tokens)
    ind = score_pattern(pattern, det)  # default reduce="tl"
    assert abs(float(ind[0]) - period / seq) < 1e-6  # half the queries have no target
    expect_uniform = sum(1 / (i + 1) for i in range(period, seq)) / seq
    assert abs(float(ind[1]) - expect_uniform) < 1e-6
    # exclude_current_token: the ideal head's 5 self-attending queries leave the denominator
    no_diag = score_pattern(pattern, det, exclude_current_token=True)
    assert abs(float(no_diag[0]) - 1.0) < 1e-6
    on_diag = sum(1 / (i + 1) for i in range(seq))
    assert abs(float(no_diag[1]) - expect_uniform * seq / (seq - on_diag)) < 1e-6
    # exclude_bos: query 0 puts all its attention on key 0, so it drops from the denominator
    no_bos = score_pattern(pattern, det, exclude_bos=True)
    assert abs(float(no_bos[0]) - period / (seq - 1)) < 1e-6
    with pytest.raises(ValueError, match="no query_mask"):
        score_pattern(pattern, det, torch.ones(3, seq, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduce='query' is invalid"):
        score_pattern(pattern, det, reduce="query")
