"""Unit tests of the zoo tasks' data: shapes, -100 masks, splits, random gaps, unseen periods."""

from __future__ import annotations

import pytest
import torch

from project.data.groups import GroupCompositionDataModule, group_table, symmetric_group
from project.data.induction import InductionDataModule
from project.data.parity import SparseParityDataModule
from project.data.text import TextDataModule, unigram_entropy


def test_induction_repeats_after_random_unseen_gaps():
    dm = InductionDataModule(vocab_size=32, span=6, max_gap=5, val_gaps=[2], n_train=300, n_val=50)
    assert dm.train_gaps == [0, 1, 3, 4, 5] and dm.seq_len == 2 * 6 + 5
    for split, gaps in (("train", set(dm.train_gaps)), ("val", {2})):
        tokens, labels = dm.splits()[split]
        period, start = dm.periods(split), dm.starts(split)
        assert tokens.shape == labels.shape == (len(period), dm.seq_len)
        assert set((period - dm.span).tolist()) == gaps  # every gap drawn, none other
        assert len(set(start.tolist())) > 1  # random offset
        for t, lab, p, s in zip(tokens, labels, period, start, strict=True):
            p, s = int(p), int(s)
            assert torch.equal(t[s + p : s + p + dm.span], t[s : s + dm.span])
            supervised = (lab != -100).nonzero()[:, 0].tolist()
            assert supervised == list(range(s + p, s + p + dm.span - 1))
            assert torch.equal(lab[supervised], t[[i + 1 for i in supervised]])


def test_induction_online_batches_are_fresh_each_step_and_epoch():
    dm = InductionDataModule(span=4, max_gap=2, val_gaps=[1], online=True, batch_size=8)
    loader = dm.train_dataloader()
    batches = [b[0] for b in loader]
    assert len(batches) == dm.steps_per_epoch and not torch.equal(batches[0], batches[1])
    again = [b[0] for b in loader]
    assert torch.equal(batches[0], again[0])  # seeded by (shuffle_seed, epoch)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"span": 1}, "span=1 is invalid"),
        ({"max_gap": 1, "val_gaps": [0, 1]}, "val_gaps=[0, 1] is invalid"),
        ({"online": True, "batch_size": None}, "batch_size=None is invalid"),
    ],
)
def test_induction_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        InductionDataModule(**kwargs)


def test_parity_labels_are_the_xor_of_the_secret_bits_at_the_last_position():
    dm = SparseParityDataModule(n=16, k=3, online=False, n_train=200, n_val=100, batch_size=None)
    assert dm.seq_len == 17 and dm.vocab_size == 3 and dm.d_vocab_out == 2 and len(dm.secret) == 3
    tokens, labels = dm.splits()["train"]
    assert bool((labels[:, :-1] == -100).all()) and bool((tokens[:, -1] == 2).all())
    assert torch.equal(labels[:, -1], tokens[:, dm.secret].sum(1) % 2)
    val_tokens = dm.splits()["val"][0]
    train_rows = {tuple(r) for r in tokens.tolist()}
    assert (
        sum(tuple(r) in train_rows for r in val_tokens.tolist()) < 3
    )  # 2^16 possible rows: clashes are rare
    online = SparseParityDataModule(n=10, k=3, batch_size=16, steps_per_epoch=3)
    batches = list(online.train_dataloader())
    assert len(batches) == 3 and batches[0][0].shape == (16, 11)
    assert torch.equal(batches[1][1][:, -1], batches[1][0][:, online.secret].sum(1) % 2)
    with pytest.raises(ValueError, match="k=5 is invalid"):
        SparseParityDataModule(n=4, k=5)


def test_s5_table_is_the_symmetric_group():
    perms = symmetric_group(5)
    table = group_table("S5")
    assert table.shape == (120, 120) and perms.shape == (120, 5)
    assert torch.equal(table[0], torch.arange(120))  # identity on the left
    for g, h in ((3, 77), (119, 5), (42, 42)):  # (g·h)(x) = g(h(x))
        assert perms[table[g, h]].tolist() == [perms[g][perms[h][x]].item() for x in range(5)]
    for row in table:  # Latin square: every row is a permutation of the group
        assert sorted(row.tolist()) == list(range(120))
    assert not torch.equal(table, table.T)  # S5 is not abelian


def test_s5_split_and_per_element_accuracy():
    dm = GroupCompositionDataModule(group="S5", frac_train=0.4)
    assert dm.vocab_size == 121 and dm.d_vocab_out == 120
    train, val = dm.splits()["train"], dm.splits()["val"]
    assert len(train[0]) == 5760 and len(val[0]) == 14400 - 5760
    rows = {tuple(r) for r in train[0].tolist()}
    assert not any(tuple(r) in rows for r in val[0].tolist())

    class Oracle(torch.nn.Module):  # right everywhere except when the left operand is 7
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, tokens):
            answers = dm.table[tokens[:, 0], tokens[:, 1]]
            answers = torch.where(tokens[:, 0] == 7, (answers + 1) % 120, answers)
            return torch.nn.functional.one_hot(answers, 120).float()[:, None].expand(-1, 3, -1)

    acc = dm.per_element_accuracy(Oracle(), "all")
    assert acc["left"][7] == 0 and bool((acc["left"][torch.arange(120) != 7] == 1).all())
    assert abs(float(acc["right"].mean()) - 119 / 120) < 1e-9


def test_text_contiguous_split_windows_and_vocab(tmp_path):
    text = "hello world, the quick brown fox\n" * 20 + "ZZ last part zz\n" * 5
    path = tmp_path / "t.txt"
    path.write_text(text)
    dm = TextDataModule(path=str(path), seq_len=8, stride=4, batch_size=4)
    assert dm.vocab == "".join(sorted(set(text))) and dm.vocab_size == len(set(text))
    assert dm.decode(dm.encode("hello")) == "hello"
    train, val = dm.splits()["train"], dm.splits()["val"]
    assert train[0].shape[1] == 8 and bool((train[1] != -100).all())  # every position supervised
    assert torch.equal(train[0][0, 1:], train[1][0, :-1])  # labels are the next character
    n_train = int(len(text) * 0.9)
    assert (
        dm.decode(train[0][0]) == text[:8] and dm.decode(val[0][0]) == text[n_train : n_train + 8]
    )
    assert train[0].shape[0] == (n_train - 9) // 4 + 1  # stride 4
    assert val[0].shape[0] == (len(text) - n_train - 1) // 8  # non-overlapping
    assert abs(dm.unigram_entropy() - unigram_entropy(text)) < 1e-12
    assert unigram_entropy("aaaa") == 0 and abs(unigram_entropy("ab") - 0.6931471805599453) < 1e-12
    with pytest.raises(ValueError, match="path="):
        TextDataModule(path=str(tmp_path / "missing.txt"))
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not UTF-8"):
        TextDataModule(path=str(tmp_path / "bin"))
