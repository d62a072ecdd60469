"""Data invariants for every operation, the Nanda split, and on-device batching / DDP sharding."""

from __future__ import annotations

import pytest
import torch

from project.data.base import IGNORE_INDEX, DeviceBatches
from project.data.modular import OPERATIONS, ModularDataModule, all_pairs, is_prime, split_indices

REFERENCE = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "div": lambda a, b, p: next(c for c in range(p) if (c * b) % p == a),
    "x2+y2": lambda a, b, p: (a * a + b * b) % p,
    "x2+xy+y2": lambda a, b, p: (a * a + a * b + b * b) % p,
    "x3+xy": lambda a, b, p: (a**3 + a * b) % p,
    "x3+xy2+y": lambda a, b, p: (a**3 + a * b * b + b) % p,
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_every_operation_is_complete_disjoint_and_correct(operation: str) -> None:
    p = 13
    dm = ModularDataModule(operation=operation, modulus=p, frac_train=0.3, split_seed=1)
    tokens, labels = dm.tokens, dm.answers
    expected_pairs = {(a, b) for a in range(p) for b in range(p) if operation != "div" or b != 0}
    pairs = [tuple(t[:2].tolist()) for t in tokens]
    assert set(pairs) == expected_pairs and len(pairs) == len(expected_pairs)
    assert (tokens[:, 2] == p).all(), "the '=' token is p, at the last (supervised) position"
    for (a, b), y in zip(pairs, labels.tolist(), strict=True):
        assert y == REFERENCE[operation](a, b, p)
    train, val = set(dm.train_idx.tolist()), set(dm.val_idx.tolist())
    assert not train & val and train | val == set(range(len(pairs)))
    assert len(train) == int(0.3 * len(pairs))


def test_default_split_is_the_nanda_demo_split() -> None:
    # demo: torch.manual_seed(598); randperm(p*p); first int(0.3 p^2) train -> 3830 / 8939
    dm = ModularDataModule()
    assert (len(dm.train_idx), len(dm.val_idx)) == (3830, 8939)
    torch.manual_seed(598)
    assert torch.equal(dm.train_idx, torch.randperm(113 * 113)[:3830])
    assert dm.vocab_size == 114 and dm.d_vocab_out == 113 and dm.seq_len == 3


def test_batches_follow_the_contract_labels_only_at_the_answer() -> None:
    dm = ModularDataModule(modulus=11, frac_train=0.5, split_seed=3)
    dm.setup("fit")
    tokens, labels = next(iter(dm.train_dataloader()))
    assert tokens.shape == labels.shape == (len(dm.train_idx), 3)
    assert (labels[:, :2] == IGNORE_INDEX).all() and dm.last_position_only
    assert torch.equal(labels[:, 2], dm.answers[dm.train_idx])
    assert torch.equal(tokens, dm.tokens[dm.train_idx])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"operation": "pow"}, "operation='pow' is invalid: allowed one of add"),
        ({"modulus": 1}, "modulus=1 is invalid"),
        ({"operation": "div", "modulus": 24}, "modulus=24 is invalid: allowed a prime"),
        ({"frac_train": 1.5}, "frac_train=1.5 is invalid"),
        ({"batch_size": 0}, "batch_size=0 is invalid"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        ModularDataModule(**kwargs)


def test_python_split_is_the_paper_codes_gen_train_test() -> None:
    """split_rng=python, split_seed=0: the progress-measures-paper code's split, restated:
    pairs (i, j) in table order, random.seed(0); random.shuffle; the first 30% are train."""
    import random

    p = 113
    pairs = [(i, j, p) for i in range(p) for j in range(p)]
    random.seed(0)
    random.shuffle(pairs)
    div = int(0.3 * len(pairs))
    dm = ModularDataModule(frac_train=0.3, split_seed=0, split_rng="python")
    train = [tuple(row) for row in dm.tokens[dm.train_idx].tolist()]
    assert train == [tuple(x) for x in pairs[:div]] and len(train) == 3830
    demo = ModularDataModule()
    assert set(demo.train_idx.tolist()) != set(dm.train_idx.tolist())
    with pytest.raises(ValueError, match="split_rng='numpy' is invalid: allowed torch, python"):
        ModularDataModule(split_rng="numpy")


def test_split_is_deterministic_and_seed_dependent() -> None:
    a, _ = split_indices(100, 0.5, 7)
    b, _ = split_indices(100, 0.5, 7)
    c, _ = split_indices(100, 0.5, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_div_needs_prime_and_inverses_exist() -> None:
    assert is_prime(113) and is_prime(97) and not is_prime(1) and not is_prime(91)
    tokens, labels = all_pairs("div", 7)
    assert ((labels * tokens[:, 1]) % 7 == tokens[:, 0]).all()


def test_full_batch_is_one_slice_without_copy() -> None:
    tokens, labels = all_pairs("add", 11)
    batches = list(DeviceBatches(tokens, labels, batch_size=None, shuffle=True, seed=0))
    assert len(batches) == 1
    assert batches[0][0].data_ptr() == tokens.data_ptr(), "full batch must be a view, not a copy"
    assert len(DeviceBatches(tokens, labels, batch_size=-1, shuffle=False, seed=0)) == 1


def test_minibatches_cover_every_example_once_and_depend_on_epoch_only() -> None:
    tokens, labels = all_pairs("add", 11)
    epoch = {"e": 0}
    loader = DeviceBatches(tokens, labels, 32, True, seed=3, epoch_fn=lambda: epoch["e"])
    first = torch.cat([t[:, 0] * 11 + t[:, 1] for t, _ in loader])
    again = torch.cat([t[:, 0] * 11 + t[:, 1] for t, _ in loader])
    epoch["e"] = 1
    other = torch.cat([t[:, 0] * 11 + t[:, 1] for t, _ in loader])
    assert sorted(first.tolist()) == list(range(121)) and len(loader) == 4
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("batch_size", [None, 50])
def test_ddp_shards_are_disjoint_and_complete(batch_size: int | None) -> None:
    tokens, labels = all_pairs("add", 11)
    world = 3
    seen = []
    for rank in range(world):
        loader = DeviceBatches(tokens, labels, batch_size, True, 0, rank=rank, world_size=world)
        for t, y in loader:
            seen += (t[:, 0] * 11 + t[:, 1]).tolist()
            assert torch.equal(y, (t[:, 0] + t[:, 1]) % 11)
    assert sorted(seen) == list(range(121)), "no duplicates, no drops across ranks"
