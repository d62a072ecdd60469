"""Known-answer tests for project.interp.fourier on constructed inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from project.data.arithmetic import all_pairs, split_indices
from project.interp import fourier as fo
from project.models.tiny_transformer import TinyTransformer, TinyTransformerConfig

P = 23


def small_model(p: int = P, seed: int = 0) -> TinyTransformer:
    torch.manual_seed(seed)
    cfg = TinyTransformerConfig(
        d_vocab=p + 1, d_vocab_out=p, d_model=16, n_heads=2, d_head=8, d_mlp=32
    )
    return TinyTransformer(cfg).eval()


def wave(p: int, k: int, fn=torch.cos) -> torch.Tensor:
    return fn(2 * math.pi * k * torch.arange(p, dtype=torch.float64) / p)


@pytest.mark.parametrize("p", [23, 113, 12])
def test_basis_is_orthonormal_and_follows_the_named_convention(p: int) -> None:
    basis, names = fo.fourier_basis(p)
    assert basis.shape == (p, p) and len(names) == p
    torch.testing.assert_close(basis @ basis.T, torch.eye(p, dtype=torch.float64))
    assert names[:3] == ["const", "cos 1", "sin 1"]
    torch.testing.assert_close(basis[0], torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64))
    k = 4
    torch.testing.assert_close(basis[2 * k - 1], wave(p, k) / wave(p, k).norm())
    torch.testing.assert_close(basis[2 * k], wave(p, k, torch.sin) / wave(p, k, torch.sin).norm())
    freqs = fo.basis_frequencies(p)
    assert freqs.tolist()[:5] == [0, 1, 1, 2, 2] and int(freqs.max()) == p // 2
    if p % 2 == 0:  # Nyquist frequency has a cos row only
        assert names[-1] == f"cos {p // 2}"


def test_bad_modulus_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="p must be an integer >= 2"):
        fo.fourier_basis(1)


def test_embedding_built_from_two_frequencies_yields_exactly_those_two() -> None:
    model = small_model()
    with torch.no_grad():
        w_e = model.embed.W_E
        w_e.zero_()
        w_e[:P, 0] = (3.0 * wave(P, 5)).float()
        w_e[:P, 1] = (4.0 * wave(P, 5, torch.sin)).float()
        w_e[:P, 2] = (2.0 * wave(P, 9)).float()
        w_e[P] = 7.0  # the '=' token is not part of the spectrum
    norms = fo.embedding_frequency_norms(model, P)
    assert norms.shape == (P // 2 + 1,)
    expected = torch.zeros(P // 2 + 1, dtype=torch.float64)
    scale = math.sqrt(P / 2)  # |cos(w k x)| over x = 0..p-1
    expected[5] = scale * math.hypot(3.0, 4.0)
    expected[9] = scale * 2.0
    torch.testing.assert_close(norms, expected, atol=1e-4, rtol=1e-5)
    assert fo.key_frequencies_from_norms(norms) == [5, 9]
    assert fo.key_fraction(norms, [5, 9]) == pytest.approx(1.0)
    assert fo.key_fraction(norms, [9]) == pytest.approx(4.0 / (25.0 + 4.0))


def test_flat_spectrum_has_no_key_frequencies() -> None:
    norms = torch.ones(57, dtype=torch.float64) + 0.05 * torch.rand(57)
    assert fo.key_frequencies_from_norms(norms) == []
    norms[[14, 35, 41]] = 20.0
    assert fo.key_frequencies_from_norms(norms) == [14, 35, 41]


def test_neuron_clusters_recover_constructed_frequencies() -> None:
    a = torch.arange(P, dtype=torch.float64)[:, None]
    b = torch.arange(P, dtype=torch.float64)[None, :]
    w = lambda k: 2 * math.pi * k / P  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    acts = torch.stack(
        [
            torch.cos(w(5) * a) * torch.cos(w(5) * b) + 0.5 * torch.sin(w(5) * a),  # k = 5
            torch.cos(w(9) * (a + b)) + 3.0,  # k = 9
            torch.randn(P, P, generator=gen, dtype=torch.float64),  # noise: unexplained
            torch.full((P, P), 2.0, dtype=torch.float64),  # dead (constant)
        ],
        dim=-1,
    )
    shares = fo.neuron_frequency_shares(acts)
    assert shares.shape == (4, P // 2 + 1)
    assert shares[0, 5] == pytest.approx(1.0) and shares[1, 9] == pytest.approx(1.0)
    assert float(shares[3].abs().sum()) == 0.0
    freq, share = fo.neuron_clusters(acts)
    assert freq.tolist() == [5, 9, -1, -1]
    assert float(share[2]) < 0.85
    assert fo.key_frequencies_from_neurons(acts) == [5, 9]
    # neurons 0 and 1 carry all their variance in {5, 9}; neuron 2 does not
    frac = fo.neuron_key_fraction(acts, [5, 9])
    var = (acts - acts.mean((0, 1))).pow(2).sum((0, 1))
    expected = (var[0] + var[1] + var[2] * shares[2, [5, 9]].sum()) / var.sum()
    assert frac == pytest.approx(float(expected))


def key_logits(p: int, amps: dict[int, float], sign: int = 1) -> torch.Tensor:
    """Grid logits [p*p, p] = sum_k amp_k cos(w_k(a + sign*b - c))."""
    idx = torch.arange(p * p, dtype=torch.float64)
    z = (idx // p + sign * (idx % p))[:, None] - torch.arange(p, dtype=torch.float64)[None, :]
    return sum(amp * torch.cos(2 * math.pi * k * z / p) for k, amp in amps.items())


@pytest.mark.parametrize(("operation", "sign"), [("add", 1), ("sub", -1)])
def test_restricted_and_excluded_loss_known_answers(operation: str, sign: int) -> None:
    tokens, labels = all_pairs(operation, P)
    logits = key_logits(P, {3: 4.0, 7: 2.5}, sign) + 1.5  # key frequencies plus a constant
    full = float(F.cross_entropy(logits, labels))
    assert fo.restricted_loss(logits, labels, P, [3, 7], operation=operation) == pytest.approx(full)
    assert fo.logit_key_fraction(logits, P, [3, 7], operation) == pytest.approx(1.0)
    # removing every key component leaves logits that are constant over inputs: uniform answer
    train_idx, _ = split_indices(len(labels), 0.3, 0)
    excl = fo.excluded_loss(logits, labels, P, [3, 7], train_idx, operation)
    assert excl == pytest.approx(math.log(P))
    # a non-key frequency is projected out by the restriction, and survives the exclusion
    noisy = logits + key_logits(P, {11: 3.0}, sign)
    assert fo.restricted_loss(noisy, labels, P, [3, 7], operation=operation) == pytest.approx(full)
    torch.testing.assert_close(
        fo.excluded_logits(noisy, P, [3, 7], operation), key_logits(P, {11: 3.0}, sign) + 1.5
    )
    assert 0.0 < fo.logit_key_fraction(noisy, P, [3, 7], operation) < 1.0
    with pytest.raises(ValueError, match="operation must be one of"):
        fo.sum_directions(P, [3], "mul")


def test_sum_directions_are_orthonormal() -> None:
    dirs = fo.sum_directions(12, [1, 3, 6])  # k = 6 = p/2 has no sine direction
    assert dirs.shape == (5, 144)
    torch.testing.assert_close(dirs @ dirs.T, torch.eye(5, dtype=torch.float64))


def test_gini_known_answers() -> None:
    assert fo.gini(torch.ones(50)) == pytest.approx(0.0, abs=1e-12)
    one_hot = torch.zeros(50)
    one_hot[17] = 3.0
    assert fo.gini(one_hot) == pytest.approx(1 - 1 / 50)
    assert fo.gini(torch.tensor([3.0, 0.0, 1.0, 0.0])) == pytest.approx(0.625)  # by hand
    assert fo.gini(torch.tensor([-3.0, 0.0, 10.0, 0.0]) * 7) == pytest.approx(
        fo.gini(torch.tensor([3.0, 0.0, 10.0, 0.0]))
    )
    assert fo.gini(torch.zeros(4)) == 0.0


def test_weight_ginis_and_total_norm() -> None:
    model = small_model()
    with torch.no_grad():
        model.embed.W_E[:P] = (
            wave(P, 4)[:, None] * torch.randn(1, 16, dtype=torch.float64)
        ).float()
        model.unembed.W_U.copy_(
            (torch.randn(16, 1, dtype=torch.float64) * wave(P, 6, torch.sin)[None, :]).float()
        )
    assert fo.embedding_gini(model, P) == pytest.approx(1 - 1 / P)
    assert fo.logit_weights_gini(model, P) == pytest.approx(1 - 1 / P)
    assert fo.logit_weights(model, P).shape == (32, P)
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(0.5)
    n = sum(param.numel() for param in model.parameters())
    assert fo.total_weight_sq_sum(model) == pytest.approx(0.25 * n)


def test_grid_forward_matches_the_model_and_its_hook() -> None:
    model = small_model()
    logits, acts = fo.grid_forward(model, P)
    tokens = fo.grid_tokens(P)
    assert tokens[P + 2].tolist() == [1, 2, P]
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.mlp.hook_post")
    torch.testing.assert_close(logits, model(tokens)[:, -1].double())
    torch.testing.assert_close(
        acts, cache["blocks.0.mlp.hook_post"][:, -1].double().reshape(P, P, -1)
    )
    coeffs = fo.fourier_2d(acts)  # orthonormal: energy is preserved
    torch.testing.assert_close(coeffs.pow(2).sum(), acts.pow(2).sum())


def test_progress_measures_on_a_fresh_model_agree_with_direct_computation() -> None:
    model = small_model()
    tokens, labels = all_pairs("add", P)
    train_idx, val_idx = split_indices(len(labels), 0.3, 598)
    m = fo.progress_measures(model, P, tokens, labels, train_idx, val_idx, "add")
    with torch.no_grad():
        direct = model(tokens[train_idx])[:, -1].double()
    assert m["train_loss"] == pytest.approx(float(F.cross_entropy(direct, labels[train_idx])))
    assert abs(m["val_loss"] - math.log(P)) < 1.0  # a fresh model is near chance
    logits, _ = fo.grid_forward(model, P)
    keys = m["key_freqs"]
    assert m["n_key_freqs"] == len(keys)
    assert m["restricted_loss"] == pytest.approx(fo.restricted_loss(logits, labels, P, keys))
    assert m["excluded_loss"] == pytest.approx(fo.excluded_loss(logits, labels, P, keys, train_idx))
    assert m["weight_sq_sum"] == pytest.approx(fo.total_weight_sq_sum(model))
    # fixed key frequencies are used as given; non-sum operations skip the logit measures
    fixed = fo.progress_measures(model, P, key_freqs=[2, 1], operation="mul")
    assert fixed["key_freqs"] == [1, 2] and "restricted_loss" not in fixed
    assert "logit_key_frac" not in fixed and 0.0 <= fixed["embed_key_frac"] <= 1.0
