"""StableMax cross-entropy, ⊥Grad (OrthoGrad) and the softmax-collapse diagnostic (Prieto et al.
2025): formulas on constructed tensors, the wrapper's state and Lightning wiring, a short run."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest
import torch
from torch import nn

from project.lit_module import LitCausalLM
from project.losses import (
    log_stablemax,
    softmax_collapse_fraction,
    softmax_collapsed,
    stablemax_cross_entropy,
    stablemax_s,
)
from project.optim import OrthoGrad, orthogonalize_gradients_
from tests.conftest import train_in_process

NET = {
    "_target_": "project.models.tiny_transformer.TinyTransformer",
    "d_vocab": 8,
    "n_ctx": 3,
    "d_vocab_out": 7,
    "d_model": 8,
    "n_heads": 2,
    "d_mlp": 16,
}
OPT = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-2, "weight_decay": 0.0}


def test_s_and_stablemax_by_hand() -> None:
    x = torch.tensor([-3.0, -0.5, 0.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(stablemax_s(x), torch.tensor([0.25, 1 / 1.5, 1.0, 3.0]).double())
    probs = log_stablemax(x).exp()
    s = torch.tensor([0.25, 1 / 1.5, 1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(probs, s / s.sum())
    labels = torch.tensor([3])
    loss = stablemax_cross_entropy(x[None], labels)
    assert math.isclose(float(loss), -math.log(3.0 / float(s.sum())), rel_tol=1e-12)


def test_stablemax_ignores_unsupervised_rows_and_stays_finite_where_softmax_saturates() -> None:
    logits = torch.tensor([[0.0, 1.0], [5.0, 0.0], [1e4, -1e4]])
    labels = torch.tensor([1, -100, 1])
    per_row = stablemax_cross_entropy(logits, labels, reduction="none")
    assert per_row[1] == 0
    mean = stablemax_cross_entropy(logits, labels)
    assert math.isclose(float(mean), float(per_row.sum()) / 2, rel_tol=1e-12)
    # the wrong answer with a 2e4 margin: softmax's float32 log-probability would be -inf-ish
    # (-2e4), StableMax's is -log(10001 * 10001 + 1), finite and with a non-zero gradient
    assert math.isfinite(float(per_row[2])) and float(per_row[2]) < 20
    with pytest.raises(ValueError, match="reduction='max' is invalid"):
        stablemax_cross_entropy(logits, labels, reduction="max")


def test_softmax_collapse_definition_in_float32_and_float64() -> None:
    # exp(-20) ~ 2e-9 vanishes next to 1 in float32 (eps 1.2e-7) but not in float64 (2.2e-16);
    # exp(-40) ~ 4e-18 vanishes in both; a margin of 5 collapses in neither
    logits = torch.tensor([[20.0, 0.0, 0.0], [40.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert softmax_collapsed(logits, torch.float32).tolist() == [True, True, False, False]
    assert softmax_collapsed(logits, torch.float64).tolist() == [False, True, False, False]
    assert softmax_collapse_fraction(logits, torch.float32) == 0.5
    assert softmax_collapse_fraction(logits, torch.float64) == 0.25


def test_orthogonalized_gradient_is_orthogonal_to_the_weights_and_keeps_its_norm() -> None:
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 4, dtype=torch.float64))
    g = torch.randn(5, 4, dtype=torch.float64) + 3 * w.detach()  # a large component along w
    w.grad = g.clone()
    orthogonalize_gradients_([w])
    assert abs(float((w.grad * w.detach()).sum())) < 1e-10
    assert math.isclose(float(w.grad.norm()), float(g.norm()), rel_tol=1e-12)
    # the projection of g: g - (w.g / w.w) w, then rescaled
    flat_w, flat_g = w.detach().flatten(), g.flatten()
    expected = flat_g - (flat_w @ flat_g) / (flat_w @ flat_w) * flat_w
    expected = expected * flat_g.norm() / expected.norm()
    torch.testing.assert_close(w.grad.flatten(), expected)


def test_orthograd_wraps_any_optimiser_and_round_trips_its_state() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = OrthoGrad(torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    assert opt.base.param_groups[0]["lr"] == 5e-3  # one set of param groups
    x, y = torch.randn(16, 4), torch.randn(16, 3)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        return loss

    before = model.weight.detach().clone()
    opt.step(closure)  # the closure runs first, then the projection, then AdamW
    scheduler.step()
    assert not torch.equal(before, model.weight)
    assert len(opt.base.state) == 2 and opt.state is opt.base.state
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    other = OrthoGrad(torch.optim.AdamW(model.parameters(), lr=1e-2))
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other.param_groups is other.base.param_groups
    torch.testing.assert_close(
        other.state[model.weight]["exp_avg"], opt.state[model.weight]["exp_avg"]
    )
    with pytest.raises(ValueError, match="base=.* is invalid"):
        OrthoGrad(model)  # type: ignore[arg-type]


def test_lightning_module_loss_choice_and_orthograd_wrapper() -> None:
    tokens = torch.randint(0, 7, (10, 3))
    labels = torch.randint(0, 7, (10, 3))
    plain = LitCausalLM(net=NET, optimizer=OPT)
    torch.manual_seed(0)
    stable = LitCausalLM(net=NET, optimizer=OPT, loss="stablemax", orthograd=True)
    logits, flat = stable.logits_and_labels((tokens, labels))
    loss, _, _ = stable.loss_and_correct((tokens, labels))
    torch.testing.assert_close(loss, stablemax_cross_entropy(logits, flat))
    assert isinstance(stable.configure_optimizers(), OrthoGrad)
    assert not isinstance(plain.configure_optimizers(), OrthoGrad)
    with pytest.raises(ValueError, match="loss='mse' is invalid: allowed cross_entropy, stablemax"):
        LitCausalLM(net=NET, optimizer=OPT, loss="mse")


@pytest.mark.parametrize(
    ("preset", "loss", "dtype", "ortho", "beta2", "eps"),
    [
        # their --orthogonal_gradients path steps an AdamW built with torch's defaults
        ("stablemax", "stablemax", "float64", True, 0.999, 1e-8),
        ("softmax_collapse", "cross_entropy", "float32", False, 0.99, 1e-25),
    ],
)
def test_presets_are_their_codes_defaults(
    preset: str, loss: str, dtype: str, ortho: bool, beta2: float, eps: float
) -> None:
    from hydra import compose, initialize_config_dir

    from project.train.checks import CONFIG_DIR, config_errors

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}"])
    assert (cfg.data.operation, cfg.data.modulus, cfg.data.frac_train) == ("add", 113, 0.3)
    assert cfg.data.batch_size is None  # full batch
    assert cfg.model.net._target_ == "project.models.mlp.OneHotMLP"
    assert (list(cfg.model.net.hidden), cfg.model.net.bias) == ([200, 200], False)
    assert cfg.model.net.operand_vocab == 113  # their input: 2 x 113 one-hot slots
    opt = cfg.model.optimizer
    assert (opt.lr, opt.weight_decay, list(opt.betas), opt.eps) == (1e-2, 0.0, [0.9, beta2], eps)
    assert cfg.model.scheduler is None
    assert (cfg.model.loss, cfg.model.loss_dtype, cfg.model.orthograd) == (loss, dtype, ortho)
    assert cfg.model.softmax_collapse is True
    assert config_errors(cfg) == []


def test_onehot_mlp_operand_vocab_drops_the_unused_slot_that_orthograd_would_move() -> None:
    from project.models.mlp import OneHotMLP

    torch.manual_seed(0)
    tokens = torch.tensor([[a, b, 7] for a in range(7) for b in range(7)])  # '=' is token 7
    labels = (tokens[:, 0] + tokens[:, 1]) % 7
    theirs = OneHotMLP(8, 3, 7, hidden=[16], operand_vocab=7)
    w0, w1 = (theirs.get_parameter(f"layers.{i}.weight") for i in (0, 1))
    assert w0.shape == (16, 14)  # one-hot(a) ++ one-hot(b), 7 slots each
    x = torch.cat([nn.functional.one_hot(tokens[:, i], 7) for i in (0, 1)], 1).float()
    torch.testing.assert_close(theirs(tokens)[:, -1], torch.relu(x @ w0.T) @ w1.T)
    for bad in (0, 9, True, 2.0):
        with pytest.raises(ValueError, match="operand_vocab=.* is invalid"):
            OneHotMLP(8, 3, 7, operand_vocab=bad)  # type: ignore[arg-type]

    # the default (d_vocab slots) has an input column per operand that no sample uses (token 7):
    # AdamW alone leaves it, ⊥Grad + AdamW moves it (the projection is over the whole matrix)
    for ortho, moves in ((False, False), (True, True)):
        torch.manual_seed(0)
        net = OneHotMLP(8, 3, 7, hidden=[16])
        w = net.get_parameter("layers.0.weight")
        unused = w[:, [7, 15]].detach().clone()
        opt: torch.optim.Optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0)
        if ortho:
            opt = OrthoGrad(opt)
        for _ in range(3):
            opt.zero_grad()
            stablemax_cross_entropy(net(tokens)[:, -1], labels).backward()
            opt.step()
        assert (not torch.equal(w[:, [7, 15]], unused)) is moves


def test_cli_run_logs_the_collapse_fractions(tmp_path) -> None:
    run = train_in_process(
        tmp_path, "data.modulus=23", "data.frac_train=0.5", "trainer=cpu", "logger=csv",
        "trainer.max_epochs=30", "model.softmax_collapse=true", "model.orthograd=true",
        "model.loss=stablemax", "model.optimizer.weight_decay=0", "model.optimizer.lr=1e-2",
        "callbacks.progress_measures.every_n_epochs=0", "callbacks.snapshots.every_n_epochs=0",
    )  # fmt: skip
    metrics = pd.read_csv(run / "csv_logs" / "metrics.csv")
    for dt in ("f32", "f64"):
        col = metrics[f"train/softmax_collapse_{dt}"].dropna()
        assert len(col) == 30 and col.between(0, 1).all()
    assert metrics["train/acc"].dropna().iloc[-1] > 0.5  # it trains with StableMax + ⊥AdamW


SLOW = ["trainer=cpu", "logger=csv", "callbacks.progress_bar=null",
        "callbacks.snapshots.every_n_epochs=0"]  # fmt: skip


@pytest.mark.slow
def test_softmax_collapse_preset_memorises_without_generalising(tmp_path) -> None:
    """Prieto et al.'s stall: no weight decay, plain softmax: 100% train, ~0% val, and train
    samples whose float32 softmax has collapsed appear as the loss keeps falling."""
    run = train_in_process(
        tmp_path, "experiment=softmax_collapse", *SLOW, "trainer.max_epochs=1500"
    )
    m = pd.read_csv(run / "csv_logs" / "metrics.csv").groupby("epoch").first()
    assert m["train/acc"].dropna().iloc[-1] == 1.0
    assert m["val/acc"].dropna().max() < 0.05
    collapse = m["train/softmax_collapse_f32"].dropna()
    assert collapse.iloc[:100].max() == 0.0 and collapse.iloc[-1] > 0.0
    assert m["train/loss"].dropna().iloc[-1] < 1e-5


@pytest.mark.slow
def test_orthograd_groks_without_weight_decay(tmp_path) -> None:
    """⊥AdamW with weight decay 0 generalises on the same task and net within a few hundred epochs."""
    run = train_in_process(
        tmp_path, "experiment=stablemax", "model.loss=cross_entropy", "model.loss_dtype=float32",
        *SLOW, "trainer.max_epochs=400",
    )  # fmt: skip
    m = pd.read_csv(run / "csv_logs" / "metrics.csv").groupby("epoch").first()
    assert m["val/acc"].dropna().max() >= 0.95


@pytest.mark.slow
def test_stablemax_preset_groks_without_weight_decay(tmp_path) -> None:
    """The paper's result: StableMax cross-entropy with ⊥AdamW, weight decay 0, reaches 99% val
    (seed 0: epoch 590 in docs/zoo.md), with no train sample's softmax collapsed."""
    run = train_in_process(tmp_path, "experiment=stablemax", *SLOW, "trainer.max_epochs=1000")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reached_epoch"] is not None and summary["best"] >= 0.99
    m = pd.read_csv(run / "csv_logs" / "metrics.csv").groupby("epoch").first()
    assert m["train/softmax_collapse_f32"].dropna().max() == 0.0
