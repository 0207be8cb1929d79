"""Edits of SAE latents at the probe site, with the reconstruction error kept (docs/method.md §5.1).

With z the dense top-k latents of h and z' the edited latents, the edited representation is

    h' = h + W_decᵀ (z' − z)

so only the edited part of h changes: the SAE's reconstruction error (h − x̂) and every latent the
edit leaves alone pass through untouched. Each edit is a small frozen dataclass that maps z to z'
(``edit_latents``); ``apply(sae, h, edit)`` does the rest. Rows whose latents the edit leaves
unchanged come back bit for bit, so an edit that changes nothing returns the original scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from recsae.errors import ConfigError

if TYPE_CHECKING:
    from recsae.models.base import Recommender
    from recsae.sae.model import TopKSAE


class Edit(Protocol):
    """Anything that maps the dense latents z (B x m) and h (B x d) to edited latents z'."""

    def edit_latents(self, z: Tensor, h: Tensor) -> Tensor: ...


def _latent_ids(latents: Sequence[int], what: str) -> tuple[int, ...]:
    ids = tuple(int(j) for j in latents)
    if not ids:
        raise ConfigError(f"{what}: needs at least one latent")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{what}: latent ids must be distinct, got {list(ids)}")
    return ids


def _check_range(latents: tuple[int, ...], m: int, what: str) -> None:
    bad = [j for j in latents if not 0 <= j < m]
    if bad:
        raise ConfigError(f"{what}: latent id(s) {bad} out of range; this SAE has latents 0..{m - 1}")


def _index(latents: tuple[int, ...], z: Tensor) -> Tensor:
    return torch.tensor(latents, dtype=torch.long, device=z.device)


def _check_finite(value: float, what: str, name: str) -> None:
    # a NaN or infinite strength makes every score NaN: all users get the same arbitrary list
    if not math.isfinite(value):
        raise ConfigError(f"{what}: {name} must be a finite number, got {value}")


@dataclass(frozen=True)
class Ablate:
    """Switch latents off: z'_j = 0."""

    latents: tuple[int, ...]
    """Latent ids to ablate."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "latents", _latent_ids(self.latents, "ablate"))

    def edit_latents(self, z: Tensor, h: Tensor) -> Tensor:
        _check_range(self.latents, z.shape[1], "ablate")
        out = z.clone()
        out[:, _index(self.latents, z)] = 0.0
        return out


@dataclass(frozen=True)
class Scale:
    """Multiply latents by a factor: z'_j = factor · z_j (0 ablates, < 1 damps, > 1 boosts)."""

    latents: tuple[int, ...]
    """Latent ids to scale."""
    factor: float
    """The multiplier s."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "latents", _latent_ids(self.latents, "scale"))
        _check_finite(self.factor, "scale", "factor")

    def edit_latents(self, z: Tensor, h: Tensor) -> Tensor:
        _check_range(self.latents, z.shape[1], "scale")
        idx = _index(self.latents, z)
        out = z.clone()
        out[:, idx] = z[:, idx] * self.factor
        return out


@dataclass(frozen=True)
class Clamp:
    """Set latents to a fixed activation on every row: z'_j = value."""

    latents: tuple[int, ...]
    """Latent ids to clamp."""
    value: float
    """The activation they take."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "latents", _latent_ids(self.latents, "clamp"))
        _check_finite(self.value, "clamp", "value")

    def edit_latents(self, z: Tensor, h: Tensor) -> Tensor:
        _check_range(self.latents, z.shape[1], "clamp")
        out = z.clone()
        out[:, _index(self.latents, z)] = self.value
        return out


@dataclass(frozen=True)
class AddDirection:
    """Push h along the latents' decoder directions: h' = h + α·‖h‖·Σ_j W_dec[j].

    Written as an edit of z (z'_j = z_j + α·‖h‖), which gives exactly that h'. The push scales with
    ‖h‖ so that one α means the same relative strength for every user.
    """

    latents: tuple[int, ...]
    """Latent ids whose decoder rows are added (e.g. a concept's latents)."""
    alpha: float
    """Strength α relative to ‖h‖; negative values steer away."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "latents", _latent_ids(self.latents, "add-direction"))
        _check_finite(self.alpha, "add-direction", "alpha")

    def edit_latents(self, z: Tensor, h: Tensor) -> Tensor:
        _check_range(self.latents, z.shape[1], "add-direction")
        idx = _index(self.latents, z)
        out = z.clone()
        out[:, idx] = z[:, idx] + (self.alpha * h.norm(dim=1, keepdim=True)).to(z.dtype)
        return out


@dataclass(frozen=True)
class Mix:
    """Mass-preserving mix toward a concept (arXiv 2601.11182).

    With s = Σ_j z_j and N(c) the n concept latents:
    z' = s · [(1 − α) z / s + (α / n) Σ_{j∈N(c)} onehot_j] = (1 − α) z + (α s / n) Σ onehot_j,
    computed in the second form so that α = 0 returns z exactly and rows with s = 0 stay 0.
    Σ_j z'_j = s for every α.
    """

    latents: tuple[int, ...]
    """The concept's latents N(c)."""
    alpha: float
    """Mixing weight in [0, 1]: 0 keeps z, 1 puts all of the row's mass on the concept."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "latents", _latent_ids(self.latents, "mix"))
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"mix: alpha must be in [0, 1], got {self.alpha}")

    def edit_latents(self, z: Tensor, h: Tensor) -> Tensor:
        _check_range(self.latents, z.shape[1], "mix")
        mass = z.sum(dim=1, keepdim=True)
        out = z * (1.0 - self.alpha)
        idx = _index(self.latents, z)
        out[:, idx] = out[:, idx] + mass * (self.alpha / len(self.latents))
        return out


@dataclass(frozen=True)
class AblateRandomActive:
    """Control edit: in every row, ablate ``count`` latents drawn at random among that row's
    active latents (outside ``exclude``). Rows with fewer candidates lose all of them.

    Same size as ablating ``count`` active latents, but with no chosen meaning: the baseline an
    ablation of a specific latent is compared with. Draws depend on ``seed`` and the row order.
    """

    count: int
    """Latents to ablate per row."""
    exclude: tuple[int, ...] = ()
    """Latent ids never drawn (the latents under study)."""
    seed: int = 0
    """Seed of the draws."""

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"random ablation: count must be >= 1, got {self.count}")
        object.__setattr__(self, "exclude", tuple(int(j) for j in self.exclude))

    def edit_latents(self, z: Tensor, h: Tensor) -> Tensor:
        g = torch.Generator().manual_seed(self.seed)
        # random keys on the CPU so the draws are the same on every device
        keys = torch.rand(z.shape, generator=g).to(z.device)
        eligible = z > 0
        if self.exclude:
            _check_range(self.exclude, z.shape[1], "random ablation")
            eligible[:, _index(self.exclude, z)] = False
        keys = keys.masked_fill(~eligible, -1.0)
        top = keys.topk(min(self.count, z.shape[1]), dim=1)
        drop = torch.zeros_like(eligible).scatter_(1, top.indices, top.values >= 0)
        return z.masked_fill(drop, 0.0)


@dataclass(frozen=True)
class Chain:
    """Several edits applied one after the other to z."""

    edits: tuple[Edit, ...]
    """The edits, in order."""

    def edit_latents(self, z: Tensor, h: Tensor) -> Tensor:
        for e in self.edits:
            z = e.edit_latents(z, h)
        return z


def latent_delta(sae: TopKSAE, h: Tensor, edit: Edit, codes: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """z' − z for a batch of representations (B x m); ``codes``: ``sae.encode(h)`` when known."""
    acts, idx = sae.encode(h) if codes is None else codes
    z = acts.new_zeros(h.shape[0], sae.cfg.m).scatter_(1, idx, acts)
    return edit.edit_latents(z, h) - z


def apply(sae: TopKSAE, h: Tensor, edit: Edit | None, codes: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """The edited representation h' = h + W_decᵀ (z' − z) (B x d); ``None`` returns h.
    ``codes`` (``sae.encode(h)``, when the caller keeps them) spare encoding ``h`` again.

    Only rows whose latents change are touched, so unchanged rows are bitwise equal to h.
    """
    if edit is None:
        return h
    with torch.no_grad():
        delta = latent_delta(sae, h, edit, codes)
        rows = delta.ne(0).any(dim=1)
        out = h.clone()
        if bool(rows.any()):
            out[rows] = h[rows] + (delta[rows] @ sae.W_dec).to(h.dtype)
        return out


def steered_score_fn(
    model: Recommender, sae: TopKSAE, edit: Edit | None
) -> Callable[[Tensor, Tensor], Tensor]:
    """A ``score_fn(users, seqs)`` for ``recsae.eval.evaluate``: the model ranks with h'."""

    def score_fn(users: Tensor, seqs: Tensor) -> Tensor:
        with torch.no_grad():
            return model.score(apply(sae, model.represent(users, seqs), edit))

    return score_fn
