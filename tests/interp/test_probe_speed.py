"""``probe_cache`` on a small cache finishes in seconds, whatever torch's thread count (issue #35:
a 128 x 17 x 32 cache of a 2-layer d_model 32 net never finished on a busy multi-core machine)."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from project.interp import probes
from project.interp.probes import probe_cache
from project.models.tiny_transformer import TinyTransformer

HOOK = "blocks.0.hook_resid_pre"


@pytest.fixture(scope="module")
def sorting_cache() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A 2-layer d_model 32 net on 17-token sequences (8 digits, a separator, 8 answers): the
    cache of one hook, ``[128, 17, 32]``, and the tokens."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = TinyTransformer(
        d_vocab=12, d_vocab_out=12, d_model=32, n_heads=4, d_head=8, d_mlp=128, n_layers=2,
        n_ctx=17,
    )  # fmt: skip
    tokens = torch.randint(0, 10, (128, 17), generator=gen)
    tokens[:, 8] = 10
    _, cache = net.run_with_cache(tokens, names_filter=HOOK)
    assert tuple(cache[HOOK].shape) == (128, 17, 32)
    return dict(cache), tokens


@pytest.fixture
def threads():
    """torch's thread count as a user's process has it (the interp conftest sets one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before, torch.get_num_interop_threads()))
    yield
    torch.set_num_threads(before)


def test_probe_cache_on_a_small_cache_is_quick_and_right(sorting_cache, threads) -> None:
    cache, tokens = sorting_cache
    start = time.perf_counter()
    table = probe_cache(cache, tokens[:, 3], n_classes=12, names=HOOK)
    elapsed = time.perf_counter() - start
    assert len(table) == 17
    by_pos = dict(zip(table["pos"], table["val_acc"], strict=True))
    assert by_pos[3] == 1.0  # the token at position 3 is linearly present there (its embedding)
    assert by_pos[4] < 0.5  # and not at position 4 (before attention)
    assert elapsed < 15, f"probe_cache took {elapsed:.1f} s"


def test_small_probe_fits_run_on_one_thread(sorting_cache, threads, monkeypatch) -> None:
    """The root cause: a fit is ~10^4 tiny tensor ops; spread over several threads each one
    waits for the others (on a busy machine: ~1 ms for a 102 x 32 x 12 matmul instead of
    10 us), so small fits run on one thread, and the caller's count is restored."""
    cache, tokens = sorting_cache
    seen: list[int] = []
    real = F.cross_entropy

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(probes.F, "cross_entropy", spy)
    before = torch.get_num_threads()
    probes.train_probe(cache[HOOK][:, 3], tokens[:, 3], n_classes=12)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before > 1


def test_probe_cache_progress_bar(sorting_cache, capsys) -> None:
    cache, tokens = sorting_cache
    probe_cache(cache, tokens[:, 3], n_classes=12, names=HOOK, positions=[3, 4], progress=True)
    assert "probe" in capsys.readouterr().err
    probe_cache(cache, tokens[:, 3], n_classes=12, names=HOOK, positions=[3], progress=False)
    assert capsys.readouterr().err == ""
    probe_cache(cache, tokens[:, 3], n_classes=12, names=HOOK, positions=[3])  # not a TTY: off
    assert capsys.readouterr().err == ""
