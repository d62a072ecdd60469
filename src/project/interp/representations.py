"""Group representations as progress measures (Chughtai, Chan & Nanda 2023, "A toy model of
universality"): which irreducible representations a net trained on ``[g, h, =] -> g·h`` uses.

Irreps are built from the group's multiplication table ``table [n, n]`` (``table[g, h] = g·h``,
as ``project.data.groups.group_table``): for ``C_n`` the real irreps (trivial; a 2-d rotation by
``2 pi k e(x) / n`` per frequency k, where ``e(x)`` is the exponent of x in a generator found from
the table (x itself for the data module's numbering); the sign ``(-1)^e(x)`` for k = n/2); for
``S_n`` (n <= 5, elements as ``symmetric_group(n)``) the trivial, sign, standard (natural
permutation matrices on the complement of the all-ones vector), their sign twists, the exterior
square of the standard, and the part of its symmetric square left after the trivial and standard
ones are removed (by the projector built from that part's character), deduplicated by character.
``check_irreps`` verifies the homomorphism property against the table, orthogonality of the
characters and ``sum d^2 = |G|``.

Measures, on the ``|G|^2`` grid (g-major; ``=`` is token ``|G|``), all float64:

- the matrix-element subspace of an irrep ρ: the span of ``g -> ρ(g)_ij`` in R^|G| (``d^2`` dims;
  2 for a rotation irrep of C_n, whose matrix elements are cos and sin). These subspaces are
  orthogonal and together span R^|G|. ``embed_shares`` / ``unembed_shares``: the share of
  ``|W_E[:|G|]|^2`` / ``|W_U[:, :|G|]|^2`` (over the element axis) in each irrep's subspace.
- logit attribution: the share of the logits' variance (centred over the answer c) along the
  character term ``chi_ρ(g h c^-1) = tr ρ(g) ρ(h) ρ(c^-1)``; terms of different irreps are
  orthogonal, so the shares add up. Key irreps: those standing out of these shares.
- restricted / excluded logits: for each answer c the logits as a function of (g, h) projected on
  (restricted: plus the constant) / with removed the functions ``(g, h) -> f(g·h)``, f in the key
  irreps' matrix-element subspaces. For C_n these are exactly the Fourier tools' directions
  ``cos, sin(w_k (a + b))`` (``project.interp.fourier.sum_directions``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from project.interp.fourier import grid_forward


@dataclass
class Irrep:
    """A real irreducible representation: ``matrices [|G|, d, d]`` (orthogonal), ``character [|G|]``."""

    name: str
    matrices: torch.Tensor

    @property
    def dim(self) -> int:
        return int(self.matrices.shape[1])

    @property
    def character(self) -> torch.Tensor:
        return torch.diagonal(self.matrices, dim1=1, dim2=2).sum(-1)


def identity_element(table: torch.Tensor) -> int:
    """The e with ``e·g = g`` for every g."""
    n = table.shape[0]
    rows = (table == torch.arange(n)[None, :]).all(dim=1).nonzero()
    if len(rows) != 1:
        raise ValueError("table is not a group's multiplication table (no unique identity)")
    return int(rows[0])


def inverses(table: torch.Tensor) -> torch.Tensor:
    """``inv [|G|]`` with ``table[g, inv[g]] = e``."""
    return (table == identity_element(table)).long().argmax(dim=1)


def _cyclic_irreps(table: torch.Tensor) -> list[Irrep]:
    n = table.shape[0]
    e = identity_element(table)
    exponent = None
    for gen in range(n):  # the first element of order n (element 1 in the data's numbering)
        power, exps = e, torch.full((n,), -1, dtype=torch.long)
        for j in range(n):
            exps[power] = j
            power = int(table[power, gen])
        if (exps >= 0).all():
            exponent = exps
            break
    if exponent is None:
        raise ValueError("table is not cyclic: no element of order |G|")
    theta = 2 * math.pi * exponent.double() / n
    irreps = [Irrep("trivial", torch.ones(n, 1, 1, dtype=torch.float64))]
    for k in range(1, n // 2 + 1):
        c, s = torch.cos(k * theta), torch.sin(k * theta)
        if 2 * k == n:
            irreps.append(Irrep(f"k{k}", c.round()[:, None, None]))
        else:
            rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
            irreps.append(Irrep(f"k{k}", rot))
    return irreps


def _orthonormal_complement_of_ones(n: int) -> torch.Tensor:
    """``Q [n, n-1]``: orthonormal columns orthogonal to the all-ones vector."""
    a = torch.eye(n, dtype=torch.float64) - 1.0 / n
    q, _ = torch.linalg.qr(a[:, : n - 1])
    return q


def _restrict(mats: torch.Tensor, projector: torch.Tensor) -> torch.Tensor:
    """Representation ``mats [|G|, D, D]`` restricted to the image of an orthogonal ``projector``."""
    vals, vecs = torch.linalg.eigh(projector)
    basis = vecs[:, vals > 0.5]
    return basis.T @ mats @ basis


def _symmetric_irreps(perms: torch.Tensor, table: torch.Tensor) -> list[Irrep]:
    order, n = perms.shape
    eye = torch.eye(n, dtype=torch.float64)
    natural = eye[perms].transpose(1, 2)  # P(g) e_x = e_{g(x)}: [|G|, n, n]
    sign = torch.linalg.det(natural).round()[:, None, None]
    q = _orthonormal_complement_of_ones(n)
    std = q.T @ natural @ q  # [|G|, n-1, n-1]
    d = std.shape[1]
    kron = torch.einsum("gij,gkl->gikjl", std, std).reshape(order, d * d, d * d)
    swap = torch.eye(d * d, dtype=torch.float64).reshape(d, d, d, d).transpose(0, 1)
    swap = swap.reshape(d * d, d * d)
    ident = torch.eye(d * d, dtype=torch.float64)
    wedge = _restrict(kron, (ident - swap) / 2)
    sym2 = _restrict(kron, (ident + swap) / 2)
    chi_std = std.diagonal(dim1=1, dim2=2).sum(-1)
    chi_rest = torch.diagonal(sym2, dim1=1, dim2=2).sum(-1) - 1 - chi_std
    rest_dim = int(round(float(chi_rest[identity_element(table)])))
    candidates = [Irrep("trivial", torch.ones(order, 1, 1, dtype=torch.float64)),
                  Irrep("sign", sign), Irrep("standard", std), Irrep("sign_standard", sign * std),
                  Irrep("wedge2_standard", wedge)]  # fmt: skip
    if rest_dim > 0:
        proj = rest_dim / order * torch.einsum("g,gij->ij", chi_rest, sym2)
        rest = _restrict(sym2, proj)
        candidates += [Irrep("sym2_rest", rest), Irrep("sign_sym2_rest", sign * rest)]
    irreps: list[Irrep] = []
    for rep in candidates:
        chi = rep.character
        if rep.dim == 0 or abs(float(chi @ chi) / order - 1) > 1e-6:  # S_n: all absolutely irred.
            continue  # empty or reducible
        if any(torch.allclose(chi, other.character, atol=1e-6) for other in irreps):
            continue
        irreps.append(rep)
    return irreps


def group_irreps(table: torch.Tensor, perms: torch.Tensor | None = None) -> list[Irrep]:
    """All real irreps of the group of ``table``: C_n if it is cyclic, else S_n from ``perms``
    (``[|G|, n]``, the elements as permutations, row i = element i; n <= 5). Raises if the irreps
    found do not account for the whole group (``sum d^2 != |G|``)."""
    table = table.long()
    commutative = bool((table == table.T).all())
    irreps = _cyclic_irreps(table) if commutative else None
    if irreps is None:
        if perms is None:
            raise ValueError("a non-abelian group needs its elements as permutations (perms)")
        if perms.shape[1] > 5:
            raise ValueError(
                f"S{perms.shape[1]} is not supported: the irreps built here cover S_n, n <= 5"
            )
        irreps = _symmetric_irreps(perms.long(), table)
    check_irreps(irreps, table)
    return irreps


def check_irreps(irreps: list[Irrep], table: torch.Tensor, atol: float = 1e-8) -> None:
    """Raise unless each is a homomorphism (``ρ(g)ρ(h) = ρ(g·h)``), the characters are orthogonal
    (``<chi_i, chi_j> = (1/|G|) sum_g chi_i(g) chi_j(g) = 0`` for i != j) with ``<chi, chi>`` = 1
    (absolutely irreducible: every S_n irrep) or 2 (a real irrep of complex type: C_n's rotations,
    two complex characters), and ``sum d^2 / <chi, chi> = |G|`` (every irrep found)."""
    n = table.shape[0]
    for rep in irreps:
        prod = torch.einsum("gij,hjk->ghik", rep.matrices, rep.matrices)
        if not torch.allclose(prod, rep.matrices[table], atol=atol):
            raise ValueError(f"irrep {rep.name} is not a homomorphism of the table")
    chars = torch.stack([rep.character for rep in irreps])
    gram = chars @ chars.T / n
    norms = gram.diagonal().round()
    if not torch.allclose(gram, torch.diag(norms), atol=1e-6) or not (norms >= 1).all():
        raise ValueError(f"characters are not orthogonal: gram {gram}")
    total = sum(rep.dim**2 / float(c) for rep, c in zip(irreps, norms, strict=True))
    if abs(total - n) > 1e-6:
        raise ValueError(f"irreps found account for sum d^2/<chi, chi> = {total:g} of |G| = {n}")


def matrix_element_basis(rep: Irrep) -> torch.Tensor:
    """Orthonormal basis of ρ's matrix-element subspace of R^|G|: ``[r, |G|]`` (r = d^2, or 2 for a
    C_n rotation irrep)."""
    vectors = rep.matrices.reshape(rep.matrices.shape[0], -1).T  # [d^2, |G|]
    u, s, _ = torch.linalg.svd(vectors.T, full_matrices=False)
    return u[:, s > 1e-8 * s.max()].T


def subspace_shares(weights: torch.Tensor, irreps: list[Irrep]) -> dict[str, float]:
    """Share of ``|weights|^2`` (``[|G|, k]``, element axis first) in each irrep's subspace."""
    w = weights.double()
    total = float(w.pow(2).sum())
    return {
        rep.name: float((matrix_element_basis(rep) @ w).pow(2).sum()) / total if total else 0.0
        for rep in irreps
    }


def character_directions(rep: Irrep, table: torch.Tensor) -> torch.Tensor:
    """``chi_ρ(g h c^-1)`` over the grid: ``[|G|^2, |G|]`` (rows g-major (g, h), columns c)."""
    gh = table.reshape(-1)
    return rep.character[table[gh[:, None], inverses(table)[None, :]]]


def logit_attribution(logits: torch.Tensor, irreps: list[Irrep], table: torch.Tensor) -> dict:
    """Per irrep, the share of the variance of ``logits [|G|^2, |G|]`` (centred over c) along its
    character term, and the term's least-squares coefficient: ``{name: (share, coef)}``."""
    x = logits.double() - logits.double().mean(dim=1, keepdim=True)
    total = float(x.pow(2).sum())
    out = {}
    for rep in irreps:
        d = character_directions(rep, table)
        d = d - d.mean(dim=1, keepdim=True)
        norm = float(d.pow(2).sum())
        dot = float((x * d).sum())
        share = dot * dot / (norm * total) if norm > 0 and total > 0 else 0.0
        out[rep.name] = (share, dot / norm if norm > 0 else 0.0)
    return out


def key_irreps_from_shares(shares: dict[str, float], min_share: float = 0.05) -> list[str]:
    """Irreps standing out of the logit shares: sorted in decreasing order, cut at the largest
    ratio between consecutive shares among those >= ``min_share``; none if all are below it."""
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    vals = [v for _, v in ranked]
    n_cand = sum(v >= min_share for v in vals)
    if n_cand == 0:
        return []
    nxt = [*vals[1:], 0.0]
    ratios = [vals[i] / max(nxt[i], 1e-12 * vals[0]) for i in range(n_cand)]
    cut = max(range(n_cand), key=lambda i: ratios[i]) + 1
    return [name for name, _ in ranked[:cut]]


def product_directions(irreps: list[Irrep], table: torch.Tensor) -> torch.Tensor:
    """Unit directions ``(g, h) -> f(g·h) / sqrt|G|``, f in the irreps' matrix-element bases:
    ``[r, |G|^2]`` (orthonormal rows)."""
    n = table.shape[0]
    gh = table.reshape(-1)
    rows = [matrix_element_basis(rep)[:, gh] for rep in irreps]
    if not rows:
        return torch.zeros(0, n * n, dtype=torch.float64)
    return torch.cat(rows) / math.sqrt(n)


def _by_name(irreps: list[Irrep], names: list[str]) -> list[Irrep]:
    return [rep for rep in irreps if rep.name in names and rep.name != "trivial"]


def restricted_logits(
    logits: torch.Tensor, irreps: list[Irrep], table: torch.Tensor, keys: list[str]
) -> torch.Tensor:
    """Grid logits ``[|G|^2, c]`` kept along the constant and the key irreps' product directions."""
    v = product_directions(_by_name(irreps, keys), table).to(logits.device)
    x = logits.double()
    return x.mean(0, keepdim=True) + v.T @ (v @ x)


def excluded_logits(
    logits: torch.Tensor, irreps: list[Irrep], table: torch.Tensor, keys: list[str]
) -> torch.Tensor:
    """Grid logits ``[|G|^2, c]`` with the key irreps' product directions removed."""
    v = product_directions(_by_name(irreps, keys), table).to(logits.device)
    x = logits.double()
    return x - v.T @ (v @ x)


def _loss_acc(logits: torch.Tensor, labels: torch.Tensor, idx: Any = None) -> tuple[float, float]:
    if idx is not None:
        logits, labels = logits[idx], labels[idx]
    loss = float(F.cross_entropy(logits.double(), labels))
    return loss, float((logits.argmax(-1) == labels).double().mean())


def representation_measures(
    model: nn.Module,
    table: torch.Tensor,
    irreps: list[Irrep],
    train_idx: torch.Tensor | None = None,
    val_idx: torch.Tensor | None = None,
    keys: list[str] | None = None,
    per_key: bool = False,
) -> dict[str, Any]:
    """Every measure from one no-grad forward over the ``|G|^2`` grid (dataset = the full grid,
    g-major, as ``GroupCompositionDataModule``; ``train_idx`` / ``val_idx`` index it).

    Returns ``embed_share_<irrep>``, ``unembed_share_<irrep>``, ``logit_share_<irrep>``,
    ``logit_coef_<irrep>``, ``key_irreps`` (found from the logit shares unless ``keys`` given),
    ``key_irreps_found``, ``restricted_loss`` / ``_acc`` (all pairs), ``excluded_loss`` / ``_acc``
    (train pairs), ``train_/val_loss`` / ``_acc``, ``logit_key_share``; with ``per_key``,
    ``excluded_loss_<irrep>`` (train, only that key irrep removed) for each key.
    """
    n = table.shape[0]
    logits, _ = grid_forward(model, n)
    logits = logits.cpu()
    labels = table.reshape(-1)
    out: dict[str, Any] = {}
    w_e = model.get_parameter("embed.W_E").detach().double().cpu()[:n]
    w_u = model.get_parameter("unembed.W_U").detach().double().cpu()[:, :n]
    for prefix, shares in (("embed", subspace_shares(w_e, irreps)),
                           ("unembed", subspace_shares(w_u.T, irreps))):  # fmt: skip
        out.update({f"{prefix}_share_{k}": v for k, v in shares.items()})
    attribution = logit_attribution(logits, irreps, table)
    logit_shares = {k: s for k, (s, _) in attribution.items()}
    out.update({f"logit_share_{k}": s for k, s in logit_shares.items()})
    out.update({f"logit_coef_{k}": c for k, (_, c) in attribution.items()})
    found = key_irreps_from_shares(logit_shares)
    chosen = list(keys) if keys is not None else found
    out["key_irreps"], out["key_irreps_found"] = chosen, found
    out["logit_key_share"] = sum(logit_shares.get(k, 0.0) for k in chosen)
    for split, idx in (("train", train_idx), ("val", val_idx)):
        if idx is not None and len(idx):
            out[f"{split}_loss"], out[f"{split}_acc"] = _loss_acc(logits, labels, idx.cpu())
    restricted = restricted_logits(logits, irreps, table, chosen)
    out["restricted_loss"], out["restricted_acc"] = _loss_acc(restricted, labels)
    if train_idx is not None:
        excluded = excluded_logits(logits, irreps, table, chosen)
        out["excluded_loss"], out["excluded_acc"] = _loss_acc(excluded, labels, train_idx.cpu())
        for k in chosen if per_key else []:
            one = excluded_logits(logits, irreps, table, [k])
            out[f"excluded_loss_{k}"] = _loss_acc(one, labels, train_idx.cpu())[0]
    return out
