"""Grokfast gradient filters (Lee et al. 2024): filter math on constructed gradients, state round
trips through a weights_only checkpoint, and the LightningModule wiring."""

from __future__ import annotations

import io
from collections import deque

import pytest
import torch
from torch import nn

from project.grokking.grokfast import Grokfast, GrokfastEMA, GrokfastMA
from project.lit_module import LitCausalLM
from project.optim import LinearWarmup


def with_grad(model: nn.Module, *values: float) -> None:
    for param, value in zip(model.parameters(), values, strict=True):
        param.grad = torch.full_like(param, value)


def test_ema_filter_matches_the_formula() -> None:
    model = nn.Linear(3, 2, bias=False)
    filt = GrokfastEMA(alpha=0.9, lamb=2.0)
    with_grad(model, 1.0)
    filt.apply(model)  # ema starts at the first gradient: grad + 2 * grad
    torch.testing.assert_close(model.weight.grad, torch.full((2, 3), 3.0))
    with_grad(model, 5.0)
    filt.apply(model)  # ema = 0.9 * 1 + 0.1 * 5 = 1.4; grad = 5 + 2 * 1.4
    torch.testing.assert_close(model.weight.grad, torch.full((2, 3), 7.8))
    torch.testing.assert_close(filt.ema["weight"], torch.full((2, 3), 1.4))


def test_ma_filter_waits_for_a_full_window_then_adds_the_mean() -> None:
    model = nn.Linear(2, 1, bias=False)
    filt = GrokfastMA(window=3, lamb=5.0)
    for value in (1.0, 2.0):
        with_grad(model, value)
        filt.apply(model)
        torch.testing.assert_close(model.weight.grad, torch.full((1, 2), value))  # warm-up
    with_grad(model, 6.0)
    filt.apply(model)  # mean(1, 2, 6) = 3
    torch.testing.assert_close(model.weight.grad, torch.full((1, 2), 6.0 + 5 * 3.0))
    with_grad(model, 10.0)
    filt.apply(model)  # window slides: mean(2, 6, 10) = 6
    torch.testing.assert_close(model.weight.grad, torch.full((1, 2), 10.0 + 5 * 6.0))


def test_params_without_grad_are_skipped() -> None:
    model = nn.Linear(2, 2)
    model.weight.grad = torch.ones_like(model.weight)
    filt = GrokfastEMA()
    filt.apply(model)
    assert set(filt.ema) == {"weight"} and model.bias.grad is None


@pytest.mark.parametrize("kind", ["ema", "ma"])
def test_state_round_trips_through_a_weights_only_checkpoint(kind: str) -> None:
    def fresh() -> GrokfastEMA | GrokfastMA:
        return Grokfast(kind, alpha=0.8, lamb=1.5, window=2).filter

    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    grads = [torch.randn(3, 4) for _ in range(5)]
    a = fresh()
    for g in grads[:3]:
        model.weight.grad, model.bias.grad = g.clone(), g[:, 0].clone()
        a.apply(model)
    buf = io.BytesIO()
    torch.save({"grad_filter": a.state_dict()}, buf)
    buf.seek(0)
    b = fresh()
    b.load_state_dict(torch.load(buf, weights_only=True)["grad_filter"])
    for g in grads[3:]:
        outs = []
        for filt in (a, b):
            model.weight.grad, model.bias.grad = g.clone(), g[:, 0].clone()
            filt.apply(model)
            outs.append(model.weight.grad.clone())
        torch.testing.assert_close(outs[0], outs[1])


def test_linear_warmup_is_the_official_schedule() -> None:
    """Nanda et al.'s ``min(step/10, 1)`` and Grokfast's ``1 if update > 10 else update / 10``."""
    warm = LinearWarmup(10)
    official = [min(step / 10, 1) for step in range(40)]
    grokfast = [1 if step > 10 else step / 10 for step in range(40)]
    assert [warm(s) for s in range(40)] == official == grokfast
    assert warm(0) == 0.0 and warm(5) == 0.5
    assert LinearWarmup(0)(0) == 1.0


def official_gradfilter_ma(
    m: nn.Module, grads: dict | None, window_size: int, lamb: float, filter_type: str,
    warmup: bool = True,
) -> dict:  # fmt: skip
    """The official algorithm (ironjr/grokfast ``gradfilter_ma``), restated: a deque of raw
    gradients per parameter; once full (or without warm-up) ``grad = grad + lamb * (sum/len or
    sum)``, the new gradient tensor replacing the old one."""
    if grads is None:
        grads = {n: deque(maxlen=window_size) for n, p in m.named_parameters()
                 if p.requires_grad and p.grad is not None}  # fmt: skip
    for n, p in m.named_parameters():
        if p.requires_grad and p.grad is not None:
            grads[n].append(p.grad.data.detach())
            if not warmup or len(grads[n]) == window_size:
                total = sum(grads[n])
                avg = total / len(grads[n]) if filter_type == "mean" else total
                p.grad.data = p.grad.data + avg * lamb
    return grads


@pytest.mark.parametrize("filter_type", ["mean", "sum"])
@pytest.mark.parametrize("warmup", [True, False])
def test_ma_matches_the_official_algorithm_on_a_fixed_gradient_sequence(
    filter_type: str, warmup: bool
) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    sequence = [(torch.randn(3, 4), torch.randn(3)) for _ in range(12)]
    ours = GrokfastMA(window=5, lamb=5.0, warmup=warmup, filter_type=filter_type)
    grads = None
    for g_w, g_b in sequence:
        model.weight.grad, model.bias.grad = g_w.clone(), g_b.clone()
        grads = official_gradfilter_ma(model, grads, 5, 5.0, filter_type, warmup)
        expected = [model.weight.grad.clone(), model.bias.grad.clone()]
        model.weight.grad, model.bias.grad = g_w.clone(), g_b.clone()
        ours.apply(model)
        torch.testing.assert_close(model.weight.grad, expected[0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(model.bias.grad, expected[1], rtol=1e-6, atol=1e-6)


def test_official_default_lamb_per_filter_and_filter_type_checked() -> None:
    ema, ma = Grokfast("ema").filter, Grokfast("ma", filter_type="sum").filter
    assert isinstance(ema, GrokfastEMA) and ema.lamb == 2.0
    assert isinstance(ma, GrokfastMA) and (ma.lamb, ma.filter_type) == (5.0, "sum")
    assert Grokfast("ma", lamb=1.5).filter.lamb == 1.5
    with pytest.raises(ValueError, match="filter_type='median' is invalid: allowed mean, sum"):
        Grokfast("ma", filter_type="median")
    with pytest.raises(ValueError, match="filter='sgd' is invalid: allowed ema, ma"):
        Grokfast("sgd")
    with pytest.raises(ValueError, match="alpha=1.5 is invalid"):
        Grokfast("ema", alpha=1.5)


def test_callback_filters_the_module_gradients_and_checkpoints_its_state() -> None:
    net = dict(d_vocab=8, n_ctx=3, d_vocab_out=7, d_model=8, n_heads=2, d_mlp=16)
    net["_target_"] = "project.models.tiny_transformer.TinyTransformer"
    opt = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}
    module = LitCausalLM(net=net, optimizer=opt)
    callback = Grokfast("ema", alpha=0.5, lamb=1.0)
    tokens = torch.randint(0, 7, (10, 3))
    labels = torch.randint(0, 7, (10, 3))
    loss, _, _ = module.loss_and_correct((tokens, labels))
    loss.backward()
    raw = {n: p.grad.clone() for n, p in module.named_parameters()}
    callback.on_before_optimizer_step(None, module, None)
    for name, param in module.named_parameters():  # first step: grad + lamb * grad
        torch.testing.assert_close(param.grad, 2 * raw[name])
    state = callback.state_dict()  # Lightning stores it under checkpoint["callbacks"]["Grokfast"]
    assert set(state["ema"]) == set(raw)
    other = Grokfast("ema", alpha=0.5, lamb=1.0)
    other.load_state_dict(state)
    for name in raw:
        torch.testing.assert_close(other.filter.ema[name], raw[name])
