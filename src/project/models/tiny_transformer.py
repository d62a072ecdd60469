"""TinyTransformer: the Nanda et al. (2023) grokking model, with TransformerLens hook names.

Parameters use TransformerLens names and shapes (``embed.W_E [d_vocab, d_model]``,
``blocks.0.attn.W_Q [n_heads, d_model, d_head]``, ``unembed.W_U [d_model, d_vocab_out]``, ...),
so weights map one-to-one onto a ``HookedTransformer`` and TL habits carry over.
Default: 1 layer, d_model 128, 4 heads x 32, d_mlp 512, ReLU, no LayerNorm, learned positions,
untied unembed. ``d_mlp=0`` gives an attention-only transformer (no MLP, no MLP hooks).

Initialisation (the official progress-measures code, ``transformers.py``; one place, here):
every weight matrix is ``N(0, 1/d_model)`` (std ``1/sqrt(d_model)``): ``W_E``, ``W_pos``,
``W_Q``, ``W_K``, ``W_V``, ``W_O``, ``W_in`` *and* ``W_out``; only ``W_U`` is
``N(0, 1/d_vocab)``. Biases start at zero, LayerNorm at ``w=1, b=0``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module

from project.models.hooks import HookedRootModule, HookPoint

ACTIVATIONS = ("relu", "gelu")


@dataclass
class TinyTransformerConfig:
    """Sizes and switches; the defaults are the Nanda et al. (2023) model for p = 113."""

    d_vocab: int = 114  # p residues + the '=' token
    n_ctx: int = 3  # [a, b, =]
    d_vocab_out: int = 113  # logits over the p residues
    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512  # 0 = attention-only (no MLP)
    act: str = "relu"  # relu | gelu
    layernorm: bool = False  # LayerNorm before attn/mlp and at the end (pre-LN) when true
    attn_bias: bool = False  # Nanda's model has no attention biases
    mlp_bias: bool = True  # ... but does have b_in / b_out
    unembed_bias: bool = False

    def __post_init__(self) -> None:
        for name in ("d_vocab", "n_ctx", "d_vocab_out", "n_layers", "d_model", "n_heads", "d_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: allowed an integer >= 1")
        if not isinstance(self.d_mlp, int) or isinstance(self.d_mlp, bool) or self.d_mlp < 0:
            raise ValueError(
                f"d_mlp={self.d_mlp!r} is invalid: allowed an integer >= 0 (0 = attention-only)"
            )
        if self.act not in ACTIVATIONS:
            raise ValueError(
                f"act={self.act!r} is invalid: allowed one of {', '.join(ACTIVATIONS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def n_params(self) -> int:
        """Parameter count of the net this config builds, without building it."""
        d, h, dh, mlp = self.d_model, self.n_heads, self.d_head, self.d_mlp
        attn = 4 * h * d * dh + (3 * h * dh + d if self.attn_bias else 0)
        mlp_params = 2 * d * mlp + (mlp + d if self.mlp_bias else 0) if mlp else 0
        norms = (2 * d if self.layernorm else 0) * (1 + (1 if mlp else 0))
        block = attn + mlp_params + norms
        ends = self.d_vocab * d + self.n_ctx * d + d * self.d_vocab_out
        ends += (self.d_vocab_out if self.unembed_bias else 0) + (2 * d if self.layernorm else 0)
        return self.n_layers * block + ends


def config_from_args(
    cfg: TinyTransformerConfig | None, given: dict[str, Any]
) -> TinyTransformerConfig:
    """``cfg`` (or the defaults) with the non-None keyword arguments ``given`` applied; derives
    ``d_vocab_out`` from ``d_vocab`` and ``d_head`` from ``d_model // n_heads``."""
    given = {k: v for k, v in given.items() if v is not None}
    if cfg is None:
        base = TinyTransformerConfig().to_dict()
        if "d_vocab" in given and "d_vocab_out" not in given:
            given["d_vocab_out"] = given["d_vocab"]
        if ("d_model" in given or "n_heads" in given) and "d_head" not in given:
            model_width = given.get("d_model", base["d_model"])
            heads = given.get("n_heads", base["n_heads"])
            if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
                raise ValueError(f"n_heads={heads!r} is invalid: allowed an integer >= 1")
            if model_width % heads:
                raise ValueError(
                    f"d_model={model_width} is invalid: allowed a multiple of "
                    f"n_heads={heads} (or set d_head)"
                )
            given["d_head"] = model_width // heads
        return TinyTransformerConfig(**{**base, **given})
    return TinyTransformerConfig(**{**cfg.to_dict(), **given}) if given else cfg


class LayerNorm(nn.Module):
    """LayerNorm with TransformerLens names (``w``, ``b``, ``hook_scale``, ``hook_normalized``)."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model], before w and b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        # hook_normalized is x / scale, before w and b (TransformerLens >= 4; TL 2.x hooks after them)
        return self.hook_normalized(x / scale) * self.w + self.b

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` without the HookPoints, as one fused ``F.layer_norm`` (same within float32
        rounding). Only for ``TinyTransformer``'s hook-free fast path."""
        return F.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: TinyTransformerConfig) -> None:
        super().__init__()
        h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.randn(h, d, dh) / math.sqrt(d))
        self.W_K = nn.Parameter(torch.randn(h, d, dh) / math.sqrt(d))
        self.W_V = nn.Parameter(torch.randn(h, d, dh) / math.sqrt(d))
        self.W_O = nn.Parameter(torch.randn(h, dh, d) / math.sqrt(d))
        self.b_Q: nn.Parameter | None
        self.b_K: nn.Parameter | None
        self.b_V: nn.Parameter | None
        self.b_O: nn.Parameter | None
        if cfg.attn_bias:
            self.b_Q = nn.Parameter(torch.zeros(h, dh))
            self.b_K = nn.Parameter(torch.zeros(h, dh))
            self.b_V = nn.Parameter(torch.zeros(h, dh))
            self.b_O = nn.Parameter(torch.zeros(d))
        else:
            self.b_Q = self.b_K = self.b_V = self.b_O = None
        mask = torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool))
        self.mask: torch.Tensor
        self.register_buffer("mask", mask, persistent=False)
        self.scale = 1.0 / math.sqrt(dh)
        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, head, q_pos, k_pos], masked, pre-softmax
        self.hook_pattern = HookPoint()  # [batch, head, q_pos, k_pos]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, pos, d_model] -> attention output [batch, pos, d_model]."""
        n = x.shape[1]
        q = torch.einsum("bpd,hde->bphe", x, self.W_Q)
        k = torch.einsum("bpd,hde->bphe", x, self.W_K)
        v = torch.einsum("bpd,hde->bphe", x, self.W_V)
        if self.b_Q is not None and self.b_K is not None and self.b_V is not None:
            q, k, v = q + self.b_Q, k + self.b_K, v + self.b_V
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) * self.scale
        scores = scores.masked_fill(~self.mask[:n, :n], float("-inf"))
        scores = self.hook_attn_scores(scores)
        pattern = self.hook_pattern(scores.softmax(dim=-1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))
        out = torch.einsum("bqhe,hed->bqd", z, self.W_O)
        return out + self.b_O if self.b_O is not None else out

    def forward_last(self, x: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        """``resid + forward(x)[:, -1]`` without the HookPoints: x [batch, pos, d_model], resid
        [batch, d_model] -> [batch, d_model]. Only for ``TinyTransformer``'s hook-free fast path.

        The query of the last position only (it sees every position: no mask); q, k and v each
        one ``mm`` with the weight viewed as ``[d_model, n_heads * d_head]``; scores and the
        weighted sum of values elementwise over ``[batch, pos, head, d_head]`` (one query: a
        batched matmul of 1-row matrices is slower on CPU); ``W_O`` and the residual one ``addmm``.
        """
        b, n, d = x.shape
        h, _, e = self.W_Q.shape
        flat = x.reshape(b * n, d)

        def project(inp: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            w2 = w.transpose(0, 1).reshape(d, h * e)  # [h, d, e] -> [d, h*e]
            return inp @ w2 if bias is None else torch.addmm(bias.reshape(h * e), inp, w2)

        q = project(x[:, -1], self.W_Q, self.b_Q).view(b, 1, h, e)
        k = project(flat, self.W_K, self.b_K).view(b, n, h, e)
        v = project(flat, self.W_V, self.b_V).view(b, n, h, e)
        pattern = ((q * k).sum(-1) * self.scale).softmax(dim=1)  # [b, n, h]
        z = (pattern.unsqueeze(-1) * v).sum(1)  # [b, h, e]
        out = torch.addmm(resid, z.reshape(b, h * e), self.W_O.reshape(h * e, d))
        return out + self.b_O if self.b_O is not None else out


class MLP(nn.Module):
    def __init__(self, cfg: TinyTransformerConfig) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.randn(cfg.d_model, cfg.d_mlp) / math.sqrt(cfg.d_model))
        # std 1/sqrt(d_model), not 1/sqrt(d_mlp): as the official code does
        self.W_out = nn.Parameter(torch.randn(cfg.d_mlp, cfg.d_model) / math.sqrt(cfg.d_model))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp)) if cfg.mlp_bias else None
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model)) if cfg.mlp_bias else None
        self.act = F.relu if cfg.act == "relu" else F.gelu
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, pos, d_model] -> [batch, pos, d_model]."""
        pre = x @ self.W_in
        if self.b_in is not None:
            pre = pre + self.b_in
        post = self.hook_post(self.act(self.hook_pre(pre)))
        out = post @ self.W_out
        return out + self.b_out if self.b_out is not None else out

    def forward_fast(self, x: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        """``resid + forward(x)`` without the HookPoints, for 2-D x and resid [batch, d_model]:
        ``addmm`` with the biases and the residual, the ReLU in place on a fresh tensor. Only for
        ``TinyTransformer``'s hook-free fast path."""
        pre = x @ self.W_in if self.b_in is None else torch.addmm(self.b_in, x, self.W_in)
        post = pre.relu_() if self.act is F.relu else self.act(pre)
        out = torch.addmm(resid, post, self.W_out)
        return out + self.b_out if self.b_out is not None else out


class TransformerBlock(nn.Module):
    def __init__(self, cfg: TinyTransformerConfig) -> None:
        super().__init__()
        self.ln1 = LayerNorm(cfg.d_model) if cfg.layernorm else None
        self.ln2 = LayerNorm(cfg.d_model) if cfg.layernorm and cfg.d_mlp > 0 else None
        self.attn = Attention(cfg)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.mlp: MLP | None = None
        if cfg.d_mlp > 0:  # attention-only blocks have no MLP and no resid_mid / mlp_out hooks
            self.mlp = MLP(cfg)
            self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
            self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        """resid: [batch, pos, d_model] -> [batch, pos, d_model]."""
        resid = self.hook_resid_pre(resid)
        attn_in = self.ln1(resid) if self.ln1 is not None else resid
        resid = resid + self.hook_attn_out(self.attn(attn_in))
        if self.mlp is None:
            return self.hook_resid_post(resid)
        resid = self.hook_resid_mid(resid)
        mlp_in = self.ln2(resid) if self.ln2 is not None else resid
        return self.hook_resid_post(resid + self.hook_mlp_out(self.mlp(mlp_in)))

    def forward_last(self, resid: torch.Tensor) -> torch.Tensor:
        """``forward(resid)[:, -1]`` without the HookPoints: [batch, pos, d_model] ->
        [batch, d_model]. Only for ``TinyTransformer``'s hook-free fast path."""
        attn_in = self.ln1.forward_fast(resid) if self.ln1 is not None else resid
        resid = self.attn.forward_last(attn_in, resid[:, -1])
        if self.mlp is None:
            return resid
        mlp_in = self.ln2.forward_fast(resid) if self.ln2 is not None else resid
        return self.mlp.forward_fast(mlp_in, resid)


class Embed(nn.Module):
    def __init__(self, d_vocab: int, d_model: int) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.randn(d_vocab, d_model) / math.sqrt(d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, pos] -> [batch, pos, d_model].

        ``F.embedding``, not ``W_E[tokens]``: on CPU the backward of advanced indexing accumulates
        in a nondeterministic order (different weights from the same seed); ``embedding_backward``
        is bit-stable and ~4x faster here.
        """
        return F.embedding(tokens, self.W_E)


class PosEmbed(nn.Module):
    def __init__(self, n_ctx: int, d_model: int) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.randn(n_ctx, d_model) / math.sqrt(d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_pos[: tokens.shape[1]].expand(tokens.shape[0], -1, -1)


class Unembed(nn.Module):
    def __init__(self, d_model: int, d_vocab_out: int, bias: bool, d_vocab: int) -> None:
        super().__init__()
        # std 1/sqrt(d_vocab) (the input vocabulary), as the official code does
        self.W_U = nn.Parameter(torch.randn(d_model, d_vocab_out) / math.sqrt(d_vocab))
        self.b_U = nn.Parameter(torch.zeros(d_vocab_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.W_U
        return out + self.b_U if self.b_U is not None else out


class TinyTransformer(HookedRootModule):
    """Decoder-only transformer. ``forward(tokens [batch, pos]) -> logits [batch, pos, d_vocab_out]``.

    Build it from a config (``TinyTransformer(TinyTransformerConfig(...))``) or from keyword
    arguments (what Hydra's ``model.net`` node passes): an argument left ``None`` takes the
    config's value; ``d_vocab_out=None`` means ``d_vocab`` and ``d_head=None`` means
    ``d_model // n_heads``.
    """

    def __init__(
        self,
        cfg: TinyTransformerConfig | None = None,
        *,
        d_vocab: int | None = None,
        n_ctx: int | None = None,
        d_vocab_out: int | None = None,
        n_layers: int | None = None,
        d_model: int | None = None,
        n_heads: int | None = None,
        d_head: int | None = None,
        d_mlp: int | None = None,
        act: str | None = None,
        layernorm: bool | None = None,
        attn_bias: bool | None = None,
        mlp_bias: bool | None = None,
        unembed_bias: bool | None = None,
    ) -> None:
        super().__init__()
        given = {
            "d_vocab": d_vocab, "n_ctx": n_ctx, "d_vocab_out": d_vocab_out, "n_layers": n_layers,
            "d_model": d_model, "n_heads": n_heads, "d_head": d_head, "d_mlp": d_mlp, "act": act,
            "layernorm": layernorm, "attn_bias": attn_bias, "mlp_bias": mlp_bias,
            "unembed_bias": unembed_bias,
        }  # fmt: skip
        cfg = config_from_args(cfg, given)
        self.cfg = cfg
        self.embed = Embed(cfg.d_vocab, cfg.d_model)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.pos_embed = PosEmbed(cfg.n_ctx, cfg.d_model)
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_final = LayerNorm(cfg.d_model) if cfg.layernorm else None
        self.unembed = Unembed(cfg.d_model, cfg.d_vocab_out, cfg.unembed_bias, cfg.d_vocab)
        self.setup_hooks()

    @classmethod
    def estimate_params(cls, **kwargs: Any) -> int:
        """Parameters ``TinyTransformer(**kwargs)`` would have, without allocating anything
        (the config's own checks run): the preflight's memory check for huge configs."""
        return config_from_args(None, kwargs).n_params()

    def hooks_attached(self) -> bool:
        """True when any submodule (a HookPoint or any other) carries a forward or backward hook,
        or a global module hook is registered (``torch.nn.modules.module.register_module_*``):
        then ``forward(tokens, last_only=True)`` runs the hooked forward, not the fast path that
        skips those module calls. A few microseconds (dict checks on ~25 modules)."""
        if (
            _module._global_forward_hooks
            or _module._global_forward_pre_hooks
            or _module._global_backward_hooks
            or _module._global_backward_pre_hooks
        ):
            return True
        return any(
            m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
            for m in self.modules()
            if m is not self
        )

    def forward(self, tokens: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """tokens: [batch, pos] (int64) -> logits [batch, pos, d_vocab_out].

        ``last_only=True`` returns the logits of the last position only, ``[batch, 1, d_vocab_out]``:
        with a one-position answer (``[a, b, =]``) that is all the loss needs. With no hook
        attached (``hooks_attached()``) it runs a fast path: the last layer's query, MLP and
        unembed on the last position only, no HookPoint calls, plain ``mm``/``addmm`` projections
        with the weights viewed as matrices, attention scores elementwise (the issue #24
        training speed-up); the result equals ``forward(tokens)[:, -1:]`` within float32
        rounding, gradients too (``tests/core/test_fast_path.py``). When any hook is attached the
        full, hooked forward runs (hooks always see full activations) and is sliced.
        """
        if last_only:
            if self.hooks_attached():
                return self.forward(tokens)[:, -1:]
            return self._forward_last_fast(tokens)
        resid = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(tokens))
        for block in self.blocks:
            resid = block(resid)
        if self.ln_final is not None:
            resid = self.ln_final(resid)
        return self.unembed(resid)

    def _forward_last_fast(self, tokens: torch.Tensor) -> torch.Tensor:
        """``forward(tokens)[:, -1:]`` with no hook attached (the caller checked): earlier blocks
        as usual, the last block on the last position only, no HookPoint calls."""
        resid = self.embed(tokens) + self.pos_embed.W_pos[: tokens.shape[1]]
        for block in self.blocks[:-1]:
            resid = block(resid)
        last = self.blocks[-1]
        assert isinstance(last, TransformerBlock)
        resid = last.forward_last(resid)  # [batch, d_model]
        if self.ln_final is not None:
            resid = self.ln_final.forward_fast(resid)
        return self.unembed(resid).unsqueeze(1)
