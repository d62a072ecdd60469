"""Linear probes: recover what is linearly present, fail (near chance) on what is not."""

from __future__ import annotations

import pytest
import torch

from project.interp.probes import probe_cache, split, train_probe


@pytest.fixture(scope="module")
def cache(grokked):
    _, cache = grokked.model.run_with_cache(grokked.tokens)
    return cache


def test_probe_recovers_a_from_position_0(grokked, cache):
    a = grokked.tokens[:, 0]
    res = train_probe(cache["blocks.0.hook_resid_pre"][:, 0], a, n_classes=grokked.p)
    assert res.task == "classification" and res.n_classes == grokked.p
    assert res.val_acc >= 0.99 and res.train_acc == 1.0
    assert res.n_train + res.n_val == len(a) and res.n_val > 50
    assert torch.equal(res.predict(cache["blocks.0.hook_resid_pre"][:, 0]), a)


def test_probe_on_a_random_label_is_near_chance(grokked, cache):
    y = torch.randint(
        0, grokked.p, (len(grokked.tokens),), generator=torch.Generator().manual_seed(0)
    )
    res = train_probe(cache["blocks.0.hook_resid_pre"][:, 0], y, n_classes=grokked.p)
    assert res.val_acc < 0.15  # chance is 1/23 = 0.043
    # position 1 holds b, not a: probing a there is near chance too
    res_b = train_probe(
        cache["blocks.0.hook_resid_pre"][:, 1], grokked.tokens[:, 0], n_classes=grokked.p
    )
    assert res_b.val_acc < 0.15


def test_probe_every_hook_and_position(grokked, cache):
    table = probe_cache(
        cache, grokked.tokens[:, 0], n_classes=grokked.p, names=lambda n: "resid" in n
    )
    hooks = ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_mid", "blocks.0.hook_resid_post"]
    assert list(dict.fromkeys(table["hook"])) == hooks
    assert len(table) == 9 and list(table.columns) == ["hook", "pos", "d", "train_acc", "val_acc"]
    by = {(r.hook, r.pos): r.val_acc for r in table.itertuples()}
    assert by[("blocks.0.hook_resid_pre", 0)] >= 0.99
    assert by[("blocks.0.hook_resid_pre", 1)] < 0.15  # before attention, pos 1 knows nothing of a
    assert by[("blocks.0.hook_resid_mid", 1)] > 0.5  # attention moved a to position 1
    patterns = probe_cache(
        cache,
        grokked.tokens[:, 0],
        n_classes=grokked.p,
        names="blocks.0.attn.hook_pattern",
        positions=[2],
    )
    assert patterns["d"].tolist() == [4 * 3]  # heads x key positions at query position 2


def test_regression_probe_reports_r2(grokked, cache):
    x = cache["blocks.0.hook_resid_pre"][:, 0]
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(x.shape[1], generator=gen)
    y = x @ w + 0.01 * torch.randn(len(x), generator=gen)
    res = train_probe(x, y, task="regression", weight_decay=1e-6)
    assert res.val_r2 > 0.99 and res.train_r2 > 0.99
    assert res.predict(x).shape == y.shape
    with pytest.raises(AttributeError, match="regression probe has val_r2, not val_acc"):
        _ = res.val_acc
    noise = torch.randn(len(x), generator=gen)
    assert train_probe(x, noise, task="regression").val_r2 < 0.2
    multi = train_probe(x, torch.stack([y, 2 * y], 1), task="regression", weight_decay=1e-6)
    assert multi.val_r2 > 0.99 and multi.predict(x).shape == (len(x), 2)
    table = probe_cache(cache, y, task="regression", names="blocks.0.hook_resid_pre")
    assert {"train_r2", "val_r2"} <= set(table.columns)


def test_probe_input_errors(cache):
    x = cache["blocks.0.hook_resid_pre"][:, 0]
    y = torch.arange(len(x)) % 23
    with pytest.raises(ValueError, match="n_classes=None: a classification probe needs"):
        train_probe(x, y)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        train_probe(x, y, n_classes=10)
    with pytest.raises(ValueError, match="task='cluster'"):
        train_probe(x, y, n_classes=23, task="cluster")
    with pytest.raises(ValueError, match="frac_train=1.0"):
        split(10, 1.0)
    a, b = split(100, 0.8, seed=4)
    assert len(a) == 80 and len(b) == 20 and not set(a.tolist()) & set(b.tolist())
    with pytest.raises(KeyError, match="unknown cached activation name"):
        probe_cache(cache, y, n_classes=23, names="blocks.7.hook_resid_pre")
