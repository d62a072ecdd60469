"""Fourier progress measures of Nanda et al. (2023) for models trained on arithmetic mod p.

Basis convention (the paper's): row 0 is the constant vector, row ``2k - 1`` is ``cos(2 pi k x / p)``
and row ``2k`` is ``sin(2 pi k x / p)`` for k = 1 .. p // 2, each scaled to unit norm, so the rows
of ``fourier_basis(p)`` are p orthonormal vectors. (For even p the last frequency p/2 has a cos row
only: its sine is zero.) Everything indexed "by frequency" has length ``p // 2 + 1`` with index k =
frequency k and index 0 = the constant.

Functions work on any ``HookedRootModule`` with TransformerLens parameter and hook names
(``embed.W_E``, ``blocks.{i}.mlp.W_out``, ``unembed.W_U``, ``blocks.{i}.mlp.hook_post``) whose
input is ``[a, b, =]`` and whose answer is read at the last position. All analysis runs in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BASIS_CONVENTION = "row 0 = constant; row 2k-1 = cos(2 pi k x/p); row 2k = sin(2 pi k x/p)"
SUM_OPERATIONS = {"add": 1, "sub": -1}  # operations whose answer is a + s*b: restricted loss works


def n_frequencies(p: int) -> int:
    """Number of non-constant frequencies: ``p // 2``."""
    return p // 2


def fourier_basis(
    p: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> tuple[torch.Tensor, list[str]]:
    """Orthonormal real Fourier basis of Z_p: ``(basis [p, p] with one vector per row, names)``."""
    if p < 2:
        raise ValueError(f"p must be an integer >= 2, got {p!r}")
    x = torch.arange(p, dtype=torch.float64)
    rows, names = [torch.ones(p, dtype=torch.float64)], ["const"]
    for k in range(1, n_frequencies(p) + 1):
        rows.append(torch.cos(2 * math.pi * k * x / p))
        names.append(f"cos {k}")
        if 2 * k != p:
            rows.append(torch.sin(2 * math.pi * k * x / p))
            names.append(f"sin {k}")
    basis = torch.stack(rows)
    basis = basis / basis.norm(dim=1, keepdim=True)
    return basis.to(device=device, dtype=dtype), names


def basis_frequencies(p: int) -> torch.Tensor:
    """Frequency of each basis row, ``[p]`` (0 for the constant): ``[0, 1, 1, 2, 2, ...]``."""
    return torch.div(torch.arange(p) + 1, 2, rounding_mode="floor")


def frequency_norms(coeffs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Per-frequency norm of Fourier coefficients: cos and sin combined, all other dims summed.

    ``coeffs`` has the Fourier axis (length p, basis order) at ``dim``; returns ``[p // 2 + 1]``.
    """
    energy = coeffs.double().pow(2).movedim(dim, 0).reshape(coeffs.shape[dim], -1).sum(1)
    p = energy.shape[0]
    out = torch.zeros(n_frequencies(p) + 1, dtype=torch.float64, device=energy.device)
    return out.index_add_(0, basis_frequencies(p).to(energy.device), energy).sqrt()


def embedding_fourier(model: nn.Module, p: int) -> torch.Tensor:
    """Embedding of the p residue tokens in the Fourier basis: ``basis @ W_E[:p]`` [p, d_model]."""
    w_e = model.get_parameter("embed.W_E").detach().double()[:p]
    return fourier_basis(p, device=w_e.device)[0] @ w_e


def embedding_frequency_norms(model: nn.Module, p: int) -> torch.Tensor:
    """Norm of the embedding per frequency, ``[p // 2 + 1]`` (index 0 = constant)."""
    return frequency_norms(embedding_fourier(model, p))


KEY_RULE = (
    "cut the sorted norms where log(n_c / n_c+1) * log(n_c / median) is largest, n_c >= 2 x median"
)


NEURON_KEY_RULE = (
    "neuron clusters: the distinct best frequencies of the MLP neurons whose best frequency explains "
    ">= 85% of their variance over the (a, b) grid"
)


def key_rule(measures: dict[str, Any]) -> str:
    """The rule that gave ``progress_measures``' ``key_freqs_found``: neuron clusters where the model
    has MLP neurons (``neuron_explained_frac`` measured), else the embedding-spectrum rule."""
    return NEURON_KEY_RULE if "neuron_explained_frac" in measures else KEY_RULE


def key_frequencies_from_norms(norms: torch.Tensor, min_ratio: float = 2.0) -> list[int]:
    """Frequencies that stand out of a spectrum ``norms [p // 2 + 1]`` (index 0 = constant, ignored).

    Sort the norms of frequencies 1.. in decreasing order, ``n_1 >= n_2 >= ...``; a cut keeps the
    top ``c``. Candidate cuts have ``n_c >= min_ratio * median`` (well above the bulk); the cut
    with the largest ``log(n_c / n_{c+1}) * log(n_c / median)`` wins: a clear gap *and* far above
    the bulk. None for a flat spectrum (``n_1 < min_ratio * median``). Unlike a single "largest
    gap" rule this keeps all the main peaks when weaker secondary peaks exist: peaks of norm 5-6
    over secondary ones <= 3 over a bulk ~1 give exactly the 5 main peaks.
    """
    vals = norms[1:].double()
    if vals.numel() < 2:
        return []
    order = torch.argsort(vals, descending=True)
    ranked = vals[order]
    top = float(ranked[0])
    if top <= 0:
        return []
    median = max(float(vals.median()), 1e-12 * top)
    if top < min_ratio * median:
        return []
    n_cand = int((ranked >= min_ratio * median).sum())
    below = torch.cat([ranked[1:], ranked.new_zeros(1)])[:n_cand]  # the next norm down
    tiny = 1e-12 * top
    gap = torch.log(ranked[:n_cand] / below.clamp_min(tiny))
    height = torch.log(ranked[:n_cand] / median)
    cut = int(torch.argmax(gap * height)) + 1
    return sorted(int(k) + 1 for k in order[:cut])


def fourier_component_norms(coeffs: torch.Tensor) -> torch.Tensor:
    """Norm of each basis row of Fourier coefficients ``[p, ...]`` (cos and sin apart): ``[p]``."""
    return coeffs.double().reshape(coeffs.shape[0], -1).norm(dim=1)


def split_cos_sin(component_norms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[p]`` values in basis order -> ``(cos [p // 2], sin [p // 2])`` by frequency 1 .. p // 2
    (sin of k = p/2 for even p is 0)."""
    p = component_norms.shape[0]
    k = n_frequencies(p)
    cos = component_norms[1 : 2 * k : 2]
    sin = torch.zeros(k, dtype=component_norms.dtype, device=component_norms.device)
    sin[: len(component_norms[2 : 2 * k + 1 : 2])] = component_norms[2 : 2 * k + 1 : 2]
    return cos, sin


def grid_tokens(p: int, device: torch.device | str | None = None) -> torch.Tensor:
    """All p^2 inputs ``[a, b, =]`` (``=`` is token p) in a-major order: ``[p * p, 3]``."""
    idx = torch.arange(p * p, device=device)
    return torch.stack([idx // p, idx % p, torch.full_like(idx, p)], dim=1)


@torch.no_grad()
def grid_forward(
    model: nn.Module, p: int, layer: int = -1
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One no-grad forward over the p^2 grid.

    Returns ``(logits [p * p, p] float64 at the last position over the p residues,
    neuron activations [p, p, d_mlp] at the last position of block ``layer``'s MLP, or None if the
    model has no such hook)``.
    """
    device = next(model.parameters()).device
    n_layers = len(getattr(model, "blocks", ()))
    name = f"blocks.{layer % n_layers}.mlp.hook_post" if n_layers else ""
    store: dict[str, torch.Tensor] = {}

    def keep_last(act: torch.Tensor, hook: Any) -> None:
        store["post"] = act[:, -1].detach()

    was_training = model.training
    model.eval()
    try:
        hooks = [(name, keep_last)] if name in getattr(model, "hook_dict", {}) else []
        run_with_hooks: Any = getattr(model, "run_with_hooks")  # noqa: B009 (any HookedRootModule)
        logits = run_with_hooks(grid_tokens(p, device), fwd_hooks=hooks)
    finally:
        model.train(was_training)
    post = store.get("post")
    acts = post.double().reshape(p, p, -1) if post is not None else None
    return logits[:, -1, :p].double(), acts


def fourier_2d(x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """2-D Fourier transform over the (a, b) axes: ``x [p, p, ...]`` -> coefficients ``[p, p, ...]``."""
    p, rest = x.shape[0], x.shape[2:]
    basis = fourier_basis(p, dtype=dtype, device=x.device)[0]
    over_a = (basis @ x.to(dtype).reshape(p, -1)).reshape(p, p, -1)  # [i, b, n]
    return torch.matmul(basis, over_a).reshape(p, p, *rest)  # [i, j, n]: basis[j, b] over_a[i, b]


def neuron_frequency_shares(acts: torch.Tensor) -> torch.Tensor:
    """Share of each neuron's variance over the (a, b) grid in each frequency's block.

    ``acts [p, p, d_mlp]`` -> ``shares [d_mlp, p // 2 + 1]``: for frequency k, the energy of the
    centred activations in the 2-D basis block {const, cos k, sin k} x {const, cos k, sin k},
    divided by the neuron's total variance (column 0 is 0; dead neurons get all zeros).
    """
    p = acts.shape[0]
    centred = acts.double() - acts.double().mean(dim=(0, 1), keepdim=True)
    energy = (
        fourier_2d(centred.float(), torch.float32).double().pow(2)
    )  # [p, p, n]; fp32 = 2x faster
    freq = basis_frequencies(p).to(acts.device)
    k = n_frequencies(p) + 1
    by_a = energy.new_zeros(k, p, energy.shape[-1]).index_add_(0, freq, energy)
    binned = energy.new_zeros(k, k, energy.shape[-1]).index_add_(1, freq, by_a)  # [k_a, k_b, n]
    diag = torch.diagonal(binned, dim1=0, dim2=1).T  # [k, n]: energy at (k, k)
    blocks = binned[0, 0] + binned[0, :] + binned[:, 0] + diag  # [k, n]
    blocks[0] = 0.0
    total = energy.sum(dim=(0, 1))
    alive = total > 1e-12 * total.max().clamp_min(1e-300)
    shares = (blocks / total.clamp_min(1e-300)).T  # [n, k]
    return torch.where(alive[:, None], shares, 0.0)


def neuron_clusters(
    acts: torch.Tensor, threshold: float = 0.85
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster neurons by frequency, as the paper's code does.

    ``acts [p, p, d_mlp]`` -> ``(freq [d_mlp] long, share [d_mlp])``: each neuron's best frequency
    and the share of its variance it explains; ``freq`` is -1 where the share is below ``threshold``
    (the "unexplained" cluster) or the neuron is dead.
    """
    return _clusters(neuron_frequency_shares(acts), threshold)


def _clusters(shares: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    share, freq = shares.max(dim=1)
    return torch.where(share >= threshold, freq, -1), share


def _distinct(freq: torch.Tensor, min_neurons: int = 1) -> list[int]:
    values, counts = torch.unique(freq[freq > 0], return_counts=True)
    return sorted(int(v) for v, c in zip(values, counts, strict=True) if c >= min_neurons)


def key_frequencies_from_neurons(
    acts: torch.Tensor, threshold: float = 0.85, min_neurons: int = 1
) -> list[int]:
    """Key frequencies = distinct frequencies of neuron clusters with >= ``min_neurons`` members."""
    return _distinct(neuron_clusters(acts, threshold)[0], min_neurons)


def key_frequencies(model: nn.Module, p: int, threshold: float = 0.85) -> list[int]:
    """The model's key frequencies, found from its MLP neurons over the (a, b) grid."""
    _, acts = grid_forward(model, p)
    if acts is None:
        raise ValueError("model has no blocks.{i}.mlp.hook_post: cannot cluster neurons")
    return key_frequencies_from_neurons(acts, threshold)


def sum_directions(
    p: int, freqs: list[int], operation: str = "add", device: torch.device | str | None = None
) -> torch.Tensor:
    """Unit directions cos(w_k(a + s b)), sin(w_k(a + s b)) over the a-major grid, ``[2 |freqs|, p*p]``.

    ``s`` = +1 for ``add``, -1 for ``sub``; w_k = 2 pi k / p. Zero vectors (sin at k = p/2) are
    dropped, so the rows are orthonormal.
    """
    if operation not in SUM_OPERATIONS:
        raise ValueError(f"operation must be one of {sorted(SUM_OPERATIONS)}, got {operation!r}")
    idx = torch.arange(p * p, dtype=torch.float64, device=device)
    z = idx.div(p, rounding_mode="floor") + SUM_OPERATIONS[operation] * (idx % p)
    rows = []
    for k in freqs:
        for fn in (torch.cos, torch.sin):
            v = fn(2 * math.pi * k * z / p)
            if v.norm() > 1e-6:
                rows.append(v / v.norm())
    return torch.stack(rows) if rows else torch.zeros(0, p * p, dtype=torch.float64, device=device)


def _project(logits: torch.Tensor, p: int, freqs: list[int], operation: str) -> torch.Tensor:
    dirs = sum_directions(p, freqs, operation, device=logits.device)
    return dirs.T @ (dirs @ logits.double())


def restricted_logits(
    logits: torch.Tensor, p: int, freqs: list[int], operation: str = "add"
) -> torch.Tensor:
    """Grid logits ``[p*p, c]`` kept only along the constant and the key cos/sin(w_k(a+b)) directions."""
    return logits.double().mean(0, keepdim=True) + _project(logits, p, freqs, operation)


def excluded_logits(
    logits: torch.Tensor, p: int, freqs: list[int], operation: str = "add"
) -> torch.Tensor:
    """Grid logits ``[p*p, c]`` with the key cos/sin(w_k(a+b)) components removed."""
    return logits.double() - _project(logits, p, freqs, operation)


def _loss(logits: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor | None) -> float:
    if idx is not None:
        logits, labels = logits[idx], labels[idx]
    return float(F.cross_entropy(logits.double(), labels.to(logits.device)))


def restricted_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    p: int,
    freqs: list[int],
    idx: torch.Tensor | None = None,
    operation: str = "add",
) -> float:
    """Cross-entropy of the restricted grid logits (``[p*p, c]``, labels ``[p*p]``) on ``idx`` (all)."""
    return _loss(restricted_logits(logits, p, freqs, operation), labels, idx)


def excluded_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    p: int,
    freqs: list[int],
    idx: torch.Tensor | None = None,
    operation: str = "add",
) -> float:
    """Cross-entropy of the excluded grid logits on ``idx`` (the paper uses the train set)."""
    return _loss(excluded_logits(logits, p, freqs, operation), labels, idx)


def _acc(logits: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor | None) -> float:
    if idx is not None:
        logits, labels = logits[idx], labels[idx]
    return float((logits.argmax(-1) == labels.to(logits.device)).double().mean())


def restricted_accuracy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    p: int,
    freqs: list[int],
    idx: torch.Tensor | None = None,
    operation: str = "add",
) -> float:
    """Accuracy of the restricted grid logits on ``idx`` (all pairs by default)."""
    return _acc(restricted_logits(logits, p, freqs, operation), labels, idx)


def excluded_accuracy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    p: int,
    freqs: list[int],
    idx: torch.Tensor | None = None,
    operation: str = "add",
) -> float:
    """Accuracy of the excluded grid logits on ``idx`` (the train set in the paper)."""
    return _acc(excluded_logits(logits, p, freqs, operation), labels, idx)


def logit_trig_coefficients(
    logits: torch.Tensor, p: int, freqs: list[int], operation: str = "add"
) -> dict[int, float]:
    """Coefficient ``alpha_k`` of ``cos(w_k(a + s b - c))`` in the grid logits ``[p*p, p]``.

    The least-squares coefficient of the centred logits along that single direction (over all
    a, b, c): the paper's ``logits ~ sum_k alpha_k cos(w_k(a + b - c))`` (``s`` = -1 for ``sub``).
    """
    if operation not in SUM_OPERATIONS:
        raise ValueError(f"operation must be one of {sorted(SUM_OPERATIONS)}, got {operation!r}")
    x = logits.double()
    x = x - x.mean(dim=1, keepdim=True)
    idx = torch.arange(p * p, dtype=torch.float64, device=x.device)
    z = idx.div(p, rounding_mode="floor") + SUM_OPERATIONS[operation] * (idx % p)
    c = torch.arange(x.shape[1], dtype=torch.float64, device=x.device)
    out = {}
    for k in freqs:
        d = torch.cos(2 * math.pi * k * (z[:, None] - c[None, :]) / p)
        out[int(k)] = float((x * d).sum() / d.pow(2).sum())
    return out


def neuron_fourier_2d_norms(acts: torch.Tensor) -> torch.Tensor:
    """Norm over neurons of the centred activations' 2-D Fourier coefficients: ``[p, p]``
    (rows = basis of a, columns = basis of b, basis order; ``[0, 0]`` = 0 after centring)."""
    centred = acts.double() - acts.double().mean(dim=(0, 1), keepdim=True)
    return fourier_2d(centred).pow(2).sum(-1).sqrt()


def logit_weights_fourier_norms(model: nn.Module, p: int) -> torch.Tensor:
    """Norm over neurons of ``W_L`` in the Fourier basis of the output residue: ``[p]``
    (basis order: const, cos 1, sin 1, ...)."""
    w_l = logit_weights(model, p)
    return fourier_component_norms(fourier_basis(p, device=w_l.device)[0] @ w_l.T)


def parameter_sq_norms(model: nn.Module) -> dict[str, float]:
    """Sum of squared weights of each parameter, by name."""
    return {n: float(w.detach().double().pow(2).sum()) for n, w in model.named_parameters()}


def gini(x: torch.Tensor) -> float:
    """Gini coefficient (Hurley & Rickard 2009) of ``|x|`` flattened: 0 = uniform, 1 - 1/N = one-hot."""
    c = x.detach().double().abs().flatten().sort().values
    n = c.numel()
    if n == 0 or float(c.sum()) == 0.0:
        return 0.0
    k = torch.arange(1, n + 1, dtype=torch.float64, device=c.device)
    return float(1 - 2 * ((c / c.sum()) * (n - k + 0.5) / n).sum())


def embedding_gini(model: nn.Module, p: int) -> float:
    """Gini of the norms of the p Fourier components of ``W_E[:p]``."""
    return gini(embedding_fourier(model, p).norm(dim=1))


def logit_weights(model: nn.Module, p: int) -> torch.Tensor:
    """``W_L = W_out @ W_U`` of the last block, over the p residues: ``[d_mlp, p]`` float64."""
    last = len(getattr(model, "blocks", ())) - 1
    w_out = model.get_parameter(f"blocks.{last}.mlp.W_out").detach().double()
    return w_out @ model.get_parameter("unembed.W_U").detach().double()[:, :p]


def logit_weights_gini(model: nn.Module, p: int) -> float:
    """Gini of the norms of the p Fourier components (over the output residue) of ``W_L``."""
    w_l = logit_weights(model, p)
    return gini((fourier_basis(p, device=w_l.device)[0] @ w_l.T).norm(dim=1))


def total_weight_sq_sum(model: nn.Module) -> float:
    """The total sum of squared weights over every parameter (the paper's measure; not a norm)."""
    return float(sum(param.detach().double().pow(2).sum() for param in model.parameters()))


def key_fraction(norms: torch.Tensor, freqs: list[int]) -> float:
    """Share of a spectrum's non-constant energy (``norms [p // 2 + 1]``) in the frequencies given."""
    energy = norms[1:].double().pow(2)
    total = float(energy.sum())
    return float(energy[[k - 1 for k in freqs]].sum()) / total if freqs and total > 0 else 0.0


def neuron_key_fraction(
    acts: torch.Tensor, freqs: list[int], shares: torch.Tensor | None = None
) -> float:
    """Share of the neurons' total centred variance (``acts [p, p, d_mlp]``) in the key blocks.

    ``shares`` = ``neuron_frequency_shares(acts)`` if already computed.
    """
    shares = neuron_frequency_shares(acts) if shares is None else shares
    centred = acts.double() - acts.double().mean(dim=(0, 1), keepdim=True)
    var = centred.pow(2).sum(dim=(0, 1))
    if not freqs or float(var.sum()) == 0.0:
        return 0.0
    return float((shares[:, freqs].sum(1) * var).sum() / var.sum())


def logit_key_fraction(
    logits: torch.Tensor, p: int, freqs: list[int], operation: str = "add"
) -> float:
    """Share of the grid logits' variance over inputs explained by the key (a+b) directions."""
    centred = logits.double() - logits.double().mean(0, keepdim=True)
    total = float(centred.pow(2).sum())
    if not freqs or total == 0.0:
        return 0.0
    return float(_project(centred, p, freqs, operation).pow(2).sum()) / total


def progress_measures(
    model: nn.Module,
    p: int,
    tokens: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    train_idx: torch.Tensor | None = None,
    val_idx: torch.Tensor | None = None,
    operation: str = "add",
    key_freqs: list[int] | Callable[[list[int]], list[int]] | None = None,
    threshold: float = 0.85,
) -> dict[str, Any]:
    """Every progress measure from one no-grad forward over the p^2 grid.

    ``tokens [n, 3]`` / ``labels [n]`` are the dataset (any subset of the grid, e.g. ``div`` skips
    b = 0) and ``train_idx`` / ``val_idx`` index into it. Key frequencies are found from the neurons
    unless ``key_freqs`` is given (a list, or a function of the found list returning the keys to
    use, e.g. a live rule that fixes them once stable). ``key_freqs_found`` is always the found set. Restricted loss (all pairs) and excluded loss (train pairs) need
    ``operation`` in ``add`` / ``sub`` and the full grid as data. Returns floats plus ``key_freqs``.
    """
    logits, acts = grid_forward(model, p)
    emb_norms = embedding_frequency_norms(model, p)
    out: dict[str, Any] = {
        "weight_sq_sum": total_weight_sq_sum(model),
        "embed_gini": gini(embedding_fourier(model, p).norm(dim=1)),
    }
    if hasattr(model, "blocks") and hasattr(model, "unembed"):
        out["logit_weights_gini"] = logit_weights_gini(model, p)
    shares = neuron_frequency_shares(acts) if acts is not None else None
    if shares is not None:
        freq, _ = _clusters(shares, threshold)
        out["neuron_explained_frac"] = float((freq > 0).double().mean())
        found = _distinct(freq)
    else:
        found = key_frequencies_from_norms(emb_norms)
    if callable(key_freqs):
        chosen = key_freqs(list(found))
    else:
        chosen = key_freqs if key_freqs is not None else found
    keys = sorted(int(k) for k in chosen)
    out["key_freqs"] = keys
    out["key_freqs_found"] = list(found)
    out["n_key_freqs"] = len(keys)
    out["embed_key_frac"] = key_fraction(emb_norms, keys)
    if acts is not None:
        out["neuron_key_frac"] = neuron_key_fraction(acts, keys, shares)
    if operation in SUM_OPERATIONS:
        out["logit_key_frac"] = logit_key_fraction(logits, p, keys, operation)
    if tokens is None or labels is None:
        return out
    labels = labels.to(logits.device)
    gidx = (tokens[:, 0] * p + tokens[:, 1]).to(logits.device)
    for split, idx in (("train", train_idx), ("val", val_idx)):
        if idx is not None and len(idx) > 0:
            split_logits, split_labels = logits[gidx[idx]], labels[idx]
            out[f"{split}_loss"] = float(F.cross_entropy(split_logits, split_labels))
            out[f"{split}_acc"] = float((split_logits.argmax(-1) == split_labels).double().mean())
    if operation in SUM_OPERATIONS and len(labels) == p * p:
        grid_labels = torch.empty_like(labels)
        grid_labels[gidx] = labels
        out["restricted_loss"] = restricted_loss(logits, grid_labels, p, keys, None, operation)
        out["restricted_acc"] = restricted_accuracy(logits, grid_labels, p, keys, None, operation)
        if train_idx is not None:
            out["excluded_loss"] = excluded_loss(
                logits, grid_labels, p, keys, gidx[train_idx], operation
            )
            out["excluded_acc"] = excluded_accuracy(
                logits, grid_labels, p, keys, gidx[train_idx], operation
            )
    return out
