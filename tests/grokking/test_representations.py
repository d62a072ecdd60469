"""Group representations (Chughtai et al. 2023): the irreps of S5 and C_n from the multiplication
table, their agreement with the Fourier tools on C_n, and known answers on a net that composes
through one chosen irrep."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from project.data.groups import group_table, symmetric_group
from project.interp import fourier as fo
from project.interp import representations as rep
from project.models.hooks import HookedRootModule, HookPoint
from project.models.tiny_transformer import TinyTransformer, TinyTransformerConfig


@pytest.fixture(scope="module")
def s5() -> tuple[torch.Tensor, list[rep.Irrep]]:
    table = group_table("S5")
    return table, rep.group_irreps(table, symmetric_group(5))


def test_s5_has_its_seven_irreps_with_orthonormal_characters(s5) -> None:
    table, irreps = s5
    assert sorted(r.dim for r in irreps) == [1, 1, 4, 4, 5, 5, 6]
    assert sum(r.dim**2 for r in irreps) == 120
    chars = torch.stack([r.character for r in irreps])
    torch.testing.assert_close(chars @ chars.T / 120, torch.eye(7, dtype=torch.float64))
    for r in irreps:  # homomorphisms of the table, orthogonal matrices
        torch.testing.assert_close(r.matrices[table[3, 77]], r.matrices[3] @ r.matrices[77])
        torch.testing.assert_close(
            r.matrices[11] @ r.matrices[11].T, torch.eye(r.dim, dtype=torch.float64)
        )
    std = next(r for r in irreps if r.name == "standard")
    # the standard character = (fixed points) - 1; identity 4, a transposition 2, a 5-cycle -1
    fixed = (symmetric_group(5) == torch.arange(5)).sum(1).double()
    torch.testing.assert_close(std.character, fixed - 1)
    bases = torch.cat(
        [rep.matrix_element_basis(r) for r in irreps]
    )  # an orthonormal basis of R^120
    torch.testing.assert_close(bases @ bases.T, torch.eye(120, dtype=torch.float64))


def test_check_irreps_rejects_a_wrong_representation(s5) -> None:
    table, irreps = s5
    with pytest.raises(ValueError, match="sum d\\^2"):
        rep.check_irreps(irreps[:-1], table)
    bad = rep.Irrep("bad", irreps[2].matrices.flip(0))
    with pytest.raises(ValueError, match="not a homomorphism"):
        rep.check_irreps([bad], table)


def test_cyclic_irreps_are_the_fourier_basis() -> None:
    p = 13
    table = group_table(f"C{p}")
    irreps = rep.group_irreps(table)
    assert [r.name for r in irreps] == ["trivial", *[f"k{k}" for k in range(1, 7)]]
    torch.manual_seed(0)
    cfg = TinyTransformerConfig(d_vocab=p + 1, d_vocab_out=p, d_model=16, n_heads=2, d_mlp=32)
    model = TinyTransformer(cfg).eval()
    shares = rep.subspace_shares(model.embed.W_E.detach()[:p], irreps)
    norms = fo.embedding_frequency_norms(model, p).pow(2)
    for k in range(p // 2 + 1):  # the share of irrep k = the Fourier energy at frequency k
        name = "trivial" if k == 0 else f"k{k}"
        assert math.isclose(shares[name], float(norms[k] / norms.sum()), rel_tol=1e-9)
    keys = [1, 4]
    v = rep.product_directions([irreps[k] for k in keys], table)
    d = fo.sum_directions(p, keys)
    torch.testing.assert_close(v.T @ v, d.T @ d)  # the same subspace as cos/sin(w_k(a + b))
    logits, _ = fo.grid_forward(model, p)
    labels = table.reshape(-1)
    train = torch.arange(0, p * p, 3)
    names = [f"k{k}" for k in keys]
    r_loss = fo.restricted_loss(logits, labels, p, keys)
    torch.testing.assert_close(
        rep.restricted_logits(logits, irreps, table, names),
        fo.restricted_logits(logits, p, keys),
    )
    assert math.isclose(
        float(torch.nn.functional.cross_entropy(
            rep.restricted_logits(logits, irreps, table, names), labels)), r_loss, rel_tol=1e-9,
    )  # fmt: skip
    m = rep.representation_measures(model, table, irreps, train, None, names)
    assert math.isclose(m["restricted_loss"], r_loss, rel_tol=1e-9)
    assert math.isclose(
        m["excluded_loss"], fo.excluded_loss(logits, labels, p, keys, train), rel_tol=1e-9
    )
    # the character term of irrep k is 2 cos(w_k(a + b - c)): its coefficient is alpha_k / 2
    alpha = fo.logit_trig_coefficients(logits, p, keys)
    for k in keys:
        assert math.isclose(m[f"logit_coef_k{k}"], alpha[k] / 2, rel_tol=1e-6, abs_tol=1e-12)


class CharacterNet(HookedRootModule):
    """Composes through one irrep ρ: ``W_E[g] = vec ρ(g)``, ``W_U[:, c] = vec ρ(c)``, logits
    ``scale * tr(ρ(g) ρ(h) ρ(c)^T) = scale * chi_ρ(g h c^-1)``. Tokens ``[g, h, =]``."""

    def __init__(self, irrep: rep.Irrep, scale: float) -> None:
        super().__init__()
        n, d = irrep.matrices.shape[:2]
        self.d, self.scale = d, scale
        self.embed = nn.Module()
        w_e = torch.cat([irrep.matrices.reshape(n, d * d), torch.zeros(1, d * d).double()])
        self.embed.W_E = nn.Parameter(w_e)
        self.unembed = nn.Module()
        self.unembed.W_U = nn.Parameter(irrep.matrices.reshape(n, d * d).T.clone())
        self.hook_out = HookPoint()
        self.setup_hooks()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        d = self.d
        g = self.embed.W_E[tokens[:, 0]].reshape(-1, d, d)
        h = self.embed.W_E[tokens[:, 1]].reshape(-1, d, d)
        logits = self.scale * (g @ h).reshape(-1, d * d) @ self.unembed.W_U
        return self.hook_out(logits[:, None, :].expand(-1, tokens.shape[1], -1))


@pytest.mark.parametrize("name", ["standard", "wedge2_standard", "sign_sym2_rest"])
def test_a_net_composing_through_one_irrep_has_exactly_that_key_irrep(s5, name: str) -> None:
    table, irreps = s5
    chosen = next(r for r in irreps if r.name == name)
    net = CharacterNet(chosen, scale=8.0)
    train = torch.arange(0, 14400, 2)
    m = rep.representation_measures(net, table, irreps, train, None)
    assert m["key_irreps"] == [name]
    assert math.isclose(m[f"logit_share_{name}"], 1.0, rel_tol=1e-9)
    assert math.isclose(m[f"embed_share_{name}"], 1.0, rel_tol=1e-9)
    assert math.isclose(m[f"unembed_share_{name}"], 1.0, rel_tol=1e-9)
    assert m["train_acc"] == 1.0
    # restricted loss = full loss; excluded loss = ln |G| (nothing left but a constant)
    assert math.isclose(m["restricted_loss"], m["train_loss"], rel_tol=1e-9)
    assert math.isclose(m["excluded_loss"], math.log(120), rel_tol=1e-9)
    others = [r.name for r in irreps if r.name not in (name, "trivial")]
    m_other = rep.representation_measures(net, table, irreps, train, None, others)
    assert math.isclose(m_other["excluded_loss"], m["train_loss"], rel_tol=1e-9)


def test_key_rule_on_spectra() -> None:
    assert rep.key_irreps_from_shares({"a": 0.6, "b": 0.3, "c": 0.01, "d": 0.0}) == ["a", "b"]
    assert rep.key_irreps_from_shares({"a": 0.9, "b": 0.05, "c": 0.01}) == ["a"]
    assert rep.key_irreps_from_shares({"a": 0.01, "b": 0.01}) == []


def test_s6_and_a_missing_permutation_list_are_refused() -> None:
    with pytest.raises(ValueError, match="S6 is not supported"):
        rep.group_irreps(torch.arange(720).expand(720, 720), symmetric_group(6))  # non-abelian
    with pytest.raises(ValueError, match="needs its elements as permutations"):
        rep.group_irreps(group_table("S3"))


STOP = "+callbacks.stop_at"
S5_TO_99 = [  # experiment=s5 on CPU, quiet, stopped at the first validation with >= 99% val acc
    "experiment=s5", "trainer=cpu", "logger=none", "callbacks.progress_bar=null",
    "callbacks.snapshots.every_n_epochs=0", f"{STOP}._target_=lightning.pytorch.callbacks.EarlyStopping",
    f"{STOP}.monitor=val/acc", f"{STOP}.mode=max", f"{STOP}.stopping_threshold=0.99",
    f"{STOP}.patience=1000000", f"{STOP}.check_on_train_epoch_end=false",
]  # fmt: skip


def s5_final_measures(tmp_path, *overrides: str) -> tuple[dict, dict]:
    """Train ``experiment=s5`` to 99% val (``S5_TO_99`` + ``overrides``); the final model's
    representation measures (as the report computes them) and the run's summary.json."""
    import json

    from project.runs.load import load_run
    from project.runs.report_groups import final_measures, irreps_of
    from tests.conftest import train_in_process

    run_dir = train_in_process(tmp_path, *S5_TO_99, *overrides)
    run = load_run(run_dir)
    dm = run.datamodule()
    m = final_measures(run.final_model(), dm, irreps_of(dm))
    return m, json.loads((run_dir / "summary.json").read_text())


def describe(m: dict, summary: dict) -> str:
    """The numbers docs/zoo.md quotes (pytest -s)."""
    shares = ", ".join(
        f"{k[len('logit_share_'):]} {v:.1%}/{m['embed_share_' + k[12:]]:.0%}"
        for k, v in m.items() if k.startswith("logit_share_")
    )  # fmt: skip
    return (
        f"99% val at epoch {summary.get('reached_epoch')} (stopped at {summary.get('epochs')}); "
        f"keys {m['key_irreps']}; logit/W_E shares: {shares}; train loss {m['train_loss']:.4f}, "
        f"val acc {m['val_acc']:.4f}; restricted loss {m['restricted_loss']:.4f} acc "
        f"{m['restricted_acc']:.4f}; excluded loss {m['excluded_loss']:.2f} acc "
        f"{m['excluded_acc']:.4f}"
    )


@pytest.mark.slow
def test_s5_preset_composes_through_a_few_large_irreps(tmp_path) -> None:
    """Chughtai et al.'s finding on S5: after grokking the net composes through the 4-dim standard
    irrep and/or its sign twist: they hold most of W_E, are among the key irreps, keeping only the
    key irreps keeps the answers, removing them destroys the train loss (measured 2026-12-02,
    seeds 0 / 1 / 2: keys standard / standard / sign_standard + sign, 69-73% of W_E in that irrep,
    restricted loss <= 0.0012, excluded loss 8.0 / 9.8 / 8.5; docs/zoo.md, S5)."""
    m, summary = s5_final_measures(tmp_path, "seed=0")
    print(describe(m, summary))
    four = {"standard", "sign_standard"}
    assert m["val_acc"] >= 0.99
    assert four & set(m["key_irreps"])  # a 4-dim irrep among the keys found from the logits
    assert sum(m[f"embed_share_{k}"] for k in four) >= 0.6
    # keeping only the key irreps' functions of g·h keeps the answers (loss near the full loss);
    # removing them leaves worse than chance on the train pairs (ln 120 = 4.79)
    assert m["restricted_loss"] < 0.1 and m["restricted_acc"] >= 0.99
    assert m["restricted_loss"] < m["train_loss"] + 0.1
    assert m["excluded_loss"] > 5.0 and m["excluded_acc"] < 0.05
