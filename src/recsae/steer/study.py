"""The intervention stage of ``recsae run``: an ablation study of the most confident latents,
steering curves toward studied concepts, and popularity debiasing, all against random controls.

``run_steer`` returns a ``SteerResult``; ``SteerResult.to_dict()`` is ``steer.json`` and
``steer_summary(result)`` the ``steer`` entry of ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsae.data.dataset import SplitData, SplitName
from recsae.errors import ConfigError
from recsae.io import FORMAT_VERSION, write_json
from recsae.rundir import RunDir
from recsae.steer.edit import AddDirection, Edit, Mix, Scale
from recsae.steer.effects import (
    SteerContext,
    ablation_study,
    best_strength,
    dose_response,
    mean_effect,
    measure,
    random_control_draws,
)
from recsae.steer.targets import (
    LATENT_SOURCES,
    ConceptItems,
    concept_latents,
    decoder_selectivity,
    most_confident,
    popularity_association,
    popularity_latents,
    selective_latents,
)
from recsae.utils import environment_info, log, progress

if TYPE_CHECKING:
    import pandas as pd

    from recsae.models.base import Recommender
    from recsae.sae.model import TopKSAE

METHODS = ("add", "mix")


@dataclass(frozen=True)
class SteerConfig:
    """Options of the intervention stage."""

    k: int = 10
    """Length of the recommendation lists measured (top-k share, HR/NDCG@k)."""
    which: SplitName = "test"
    """Held-out split whose targets give the personal accuracy."""
    max_users: int | None = 2000
    """Users measured (a seeded sample of the evaluation users); None = all."""
    batch_size: int = 512
    """Users per scoring batch."""
    max_len: int = 200
    """Longest history fed to sequential models (as in evaluation)."""
    concepts: tuple[str, ...] = ()
    """Concepts to steer toward (e.g. 'genre=Horror'); empty = chosen automatically."""
    n_auto_concepts: int = 3
    """How many concepts to choose when ``concepts`` is empty."""
    latent_source: str = "decoder"
    """How a concept resolves to the latents it is steered through: 'decoder' (the latents whose
    decoder directions most selectively raise its items' scores) or 'rules' (the most confident
    interpretable latents whose rule names it). On ML-1M SASRec with a plain TopK SAE, 'decoder'
    beat 'rules' for 16 of 18 genres; with the load-balanced SAE the two are close."""
    latents_per_concept: int = 16
    """Latents per concept, at most this many."""
    add_alphas: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    """Strengths α of the decoder-direction steering curve (h' = h + α‖h‖ Σ W_dec[j])."""
    mix_alphas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
    """Strengths α of the mass-preserving mix curve."""
    ndcg_tolerance: float = 0.05
    """Relative NDCG@k loss allowed when choosing the reported steering strength."""
    select_on: SplitName | None = "valid"
    """Split whose held-out items the steering strength is chosen on (the curves are measured
    there); the chosen strength is then measured once on ``which``, and that is what is reported.
    None: choose and report on ``which`` (the best of the curve's points, an optimistic figure)."""
    refine_steps: int = 3
    """Bisections of the strength at the edge of the NDCG tolerance (extra curve points)."""
    n_random: int = 3
    """Random-latent control draws averaged per measurement."""
    n_ablation: int = 20
    """Most confident latents in the ablation study."""
    min_active_users: int = 50
    """Users a latent must be active for to enter the ablation study: a drop measured on a handful
    of users is noise, and their lists are often saturated with the concept (ML-1M SASRec, 20
    latents: Wilcoxon p = 0.35 with 20 users, 8e-5 with 50, < 1e-4 with 100)."""
    ablation_min_items: int = 5
    """Items a latent's concept must have to enter the ablation study (a rule about the last
    item itself names items that sit in the history, masked from the top-k)."""
    n_debias_latents: int = 5
    """Latents most associated with popularity, damped for debiasing."""
    debias_min_frequency: float = 0.02
    """Only latents active for at least this share of the users are debiasing candidates
    (damping a latent that rarely fires cannot change many lists)."""
    debias_factors: tuple[float, ...] = (0.5, 0.0)
    """Scale factors s applied to those latents (the last one is reported in the summary)."""
    head_fraction: float = 0.2
    """Share of the catalogue (most popular first) forming the head; the rest is the long tail."""
    max_auto_share: float = 0.25
    """Automatic concept choice: largest unedited top-k share (so that a 3x rise is possible)."""
    min_auto_share: float = 0.005
    """Automatic concept choice: smallest unedited top-k share."""
    min_auto_items: int = 10
    """Automatic concept choice: fewest items a concept must have (no single-item concepts)."""
    seed: int = 0
    """Seed of the user sample and of the random controls."""

    def __post_init__(self) -> None:
        if self.k < 1 or self.latents_per_concept < 1 or self.n_random < 1:
            raise ConfigError("steer: k, latents_per_concept and n_random must be >= 1")
        if self.latent_source not in LATENT_SOURCES:
            raise ConfigError(f"steer: latent_source must be one of {LATENT_SOURCES}, got {self.latent_source!r}")
        if not 0 <= self.ndcg_tolerance < 1:
            raise ConfigError(f"steer: ndcg_tolerance must be in [0, 1), got {self.ndcg_tolerance}")
        if self.select_on not in (None, "valid", "test"):
            raise ConfigError(f"steer: select_on must be 'valid', 'test' or None, got {self.select_on!r}")
        if any(not 0 <= a <= 1 for a in self.mix_alphas):
            raise ConfigError("steer: mix_alphas must lie in [0, 1]")


def sample_users(split: SplitData, which: SplitName, max_users: int | None, seed: int) -> np.ndarray:
    """A seeded sample of the evaluation users (sorted), or all of them."""
    users = split.eval_users(which)
    if max_users is None or len(users) <= max_users:
        return users
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(users, size=max_users, replace=False))


def make_context(
    model: Recommender, sae: TopKSAE, split: SplitData, cfg: SteerConfig, which: SplitName | None = None,
    eval_protocol: str = "per-user",
) -> SteerContext:
    """The measured users of ``which`` (default ``cfg.which``); under ``eval_protocol``
    rechorus, every held-out row of theirs."""
    which = which or cfg.which
    return SteerContext(
        model, sae, split, which=which, users=sample_users(split, which, cfg.max_users, cfg.seed),
        k=cfg.k, batch_size=cfg.batch_size, max_len=cfg.max_len, head_fraction=cfg.head_fraction,
        eval_protocol=eval_protocol,
    )  # fmt: skip


def selection_context(ctx: SteerContext, cfg: SteerConfig) -> SteerContext:
    """The context steering strengths are chosen on: ``cfg.select_on``'s held-out items, or
    ``ctx`` itself."""
    if cfg.select_on is None or cfg.select_on == ctx.which:
        return ctx
    return make_context(ctx.model, ctx.sae, ctx.split, cfg, which=cfg.select_on, eval_protocol=ctx.eval_protocol)


def steer_edit(method: str, latents: Sequence[int], alpha: float) -> Edit:
    """The steering edit of a method name: 'add' (decoder direction) or 'mix'."""
    if method == "add":
        return AddDirection(tuple(latents), alpha)
    if method == "mix":
        return Mix(tuple(latents), alpha)
    raise ConfigError(f"steering method must be one of {METHODS}, got {method!r}")


def choose_concepts(
    ctx: SteerContext, interpretation: pd.DataFrame, items: ConceptItems, cfg: SteerConfig
) -> list[str]:
    """Concepts of the most confident interpretable latents with a single-concept rule, an item
    set of at least ``min_auto_items`` items, and an unedited top-k share in
    [min_auto_share, max_auto_share]."""
    ranked = most_confident(interpretation, len(interpretation))
    candidates: list[str] = []
    for concept in ranked["concept"]:
        single = " AND " not in concept and " OR " not in concept
        if single and concept not in candidates and items.resolvable(concept) and items.mask(concept).sum() >= cfg.min_auto_items:
            candidates.append(concept)
    if not candidates:
        return []
    shares = measure(ctx, None, {c: items.mask(c) for c in candidates}, accuracy=False, ranks=False).share
    ok = [c for c in candidates if cfg.min_auto_share <= shares[c] <= cfg.max_auto_share]
    return ok[: cfg.n_auto_concepts]


def steering_targets(
    ctx: SteerContext, interpretation: pd.DataFrame | None, items: ConceptItems, concept: str, cfg: SteerConfig
) -> tuple[int, ...]:
    """The latents a concept is steered through, by ``cfg.latent_source``. Decoder-selected
    latents come from those alive on the measured users, at most half of them, so that a disjoint
    random control of the same size exists."""
    if cfg.latent_source == "decoder":
        n = min(cfg.latents_per_concept, max(len(ctx.alive) // 2, 1))
        return selective_latents(decoder_selectivity(ctx.model, ctx.sae, items.mask(concept)), n, pool=ctx.alive)
    if interpretation is None:
        raise ConfigError("steering through rules needs the run's interpretation.parquet (run `recsae run`)")
    return tuple(concept_latents(interpretation, concept, cfg.latents_per_concept))


def refine_curve(
    ctx: SteerContext,
    make_edit: Callable[[float], Edit],
    curve: list[dict[str, Any]],
    concept: str,
    mask: np.ndarray,
    cfg: SteerConfig,
) -> list[dict[str, Any]]:
    """Bisect the strength between the strongest step whose NDCG stays within tolerance and the
    next one (``cfg.refine_steps`` times), so the operating point is not limited by the grid."""
    curve = sorted(curve, key=lambda r: r["strength"])
    for _ in range(cfg.refine_steps):
        kept = best_strength(curve, cfg.ndcg_tolerance)
        lo = 0.0 if kept is None else kept["strength"]
        above = [r["strength"] for r in curve if r["strength"] > lo]
        if not above:
            break
        mid = (lo + min(above)) / 2
        curve += dose_response(ctx, make_edit, [mid], concept, mask, cfg.n_random, cfg.seed)
        curve.sort(key=lambda r: r["strength"])
    return curve


def steer_concept(
    ctx: SteerContext,
    concept: str,
    latents: Sequence[int],
    items: ConceptItems,
    cfg: SteerConfig,
    report_ctx: SteerContext | None = None,
) -> dict[str, Any]:
    """Steering curves (both methods) toward one concept, measured on ``ctx``, and the operating
    point chosen on them: the strongest whose NDCG stays within tolerance (else the weakest
    ``add`` step). With ``report_ctx`` (other held-out items), the chosen point is measured again
    there and that measurement is reported as ``chosen`` (``selection`` keeps the curve's row)."""
    mask = items.mask(concept)
    curves = {}
    for method, alphas in (("add", cfg.add_alphas), ("mix", cfg.mix_alphas)):
        make_edit = partial(steer_edit, method, latents)
        curve = dose_response(ctx, make_edit, alphas, concept, mask, cfg.n_random, cfg.seed)
        curves[method] = refine_curve(ctx, make_edit, curve, concept, mask, cfg)
    best: dict[str, Any] | None = None
    for method, curve in curves.items():
        row = best_strength(curve, cfg.ndcg_tolerance)
        if row is not None and (best is None or row["share"] > best["share"]):
            best = {"method": method, **row, "within_tolerance": True}
    if best is None:
        steps = [r for r in curves["add"] if r["strength"] != 0] or curves["add"]
        best = {"method": "add", **steps[0], "within_tolerance": False}
    out = {"concept": concept, "latents": [int(j) for j in latents], "n_items": int(mask.sum()),
           "curves": curves, "curves_on": ctx.which, "chosen": best}
    if report_ctx is not None and report_ctx is not ctx:
        make_edit = partial(steer_edit, best["method"], latents)
        row = dose_response(report_ctx, make_edit, [best["strength"]], concept, mask, cfg.n_random, cfg.seed)[0]
        within = row["ndcg"] >= (1 - cfg.ndcg_tolerance) * row["ndcg_before"]
        out["chosen"] = {"method": best["method"], **row, "within_tolerance": bool(within), "measured_on": report_ctx.which}
        out["selection"] = best
    return out


def debias_study(ctx: SteerContext, sae: TopKSAE, cfg: SteerConfig) -> dict[str, Any]:
    """Damp the latents most associated with popularity; coverage, Gini and long-tail share
    over the damping factors, beside damping random latents of the same number."""
    assoc = popularity_association(ctx.model, sae, ctx.popularity)
    frequent = np.flatnonzero(ctx.frequency >= cfg.debias_min_frequency)
    latents = popularity_latents(assoc, cfg.n_debias_latents, pool=frequent if len(frequent) else ctx.alive)
    draws = random_control_draws(ctx, latents, cfg.n_random, cfg.seed + 1)
    names = ("coverage", "gini", "long_tail_share", "ndcg", "hr")
    base = measure(ctx, None, {})
    table = []
    for s in cfg.debias_factors:
        eff = measure(ctx, Scale(latents, s), {})
        rand = mean_effect([measure(ctx, Scale(d, s), {}) for d in draws])
        row: dict[str, Any] = {"scale": float(s)}
        for name in names:
            row[name] = getattr(eff, name)
            row[f"{name}_random"] = getattr(rand, name)
        table.append(row)
    return {
        "latents": list(latents),
        "association": [float(assoc[j]) for j in latents],
        "frequency": [float(ctx.frequency[j]) for j in latents],
        "head_fraction": cfg.head_fraction,
        "before": {name: getattr(base, name) for name in names},
        "table": table,
    }



@dataclass
class SteerResult:
    """Everything the intervention stage measured (JSON-serialisable through ``to_dict``)."""

    config: dict[str, Any]
    """The SteerConfig (seed included)."""
    n_users: int
    """Users measured."""
    ablation: dict[str, Any]
    """``AblationStudy.to_dict()``: per-latent rows and the paired test."""
    concepts: list[dict[str, Any]]
    """Per studied concept: latents, item count, steering curves per method, chosen point."""
    debias: dict[str, Any]
    """Popularity latents, their association, before figures and the table over scales."""
    environment: dict[str, Any]
    """Versions (``recsae.utils.environment_info``)."""
    n_rows: int | None = None
    """Under the rechorus protocol, the held-out rows measured (each its own prediction; the
    ablation's and debiasing's counts are rows too); None when a row is a user."""

    def to_dict(self) -> dict[str, Any]:
        d = {"format_version": FORMAT_VERSION, **asdict(self)}
        if self.n_rows is None:
            del d["n_rows"]
        return d


def write_steer(result: SteerResult, out_dir: str | Path) -> Path:
    """Write ``steer.json`` (atomically) into ``out_dir``; returns its path."""
    path = RunDir(out_dir).steer
    write_json(path, result.to_dict())
    return path


def run_steer(
    model: Recommender,
    sae: TopKSAE,
    split: SplitData,
    interpretation: pd.DataFrame,
    items: ConceptItems,
    cfg: SteerConfig = SteerConfig(),
    eval_protocol: str = "per-user",
) -> SteerResult:
    """Ablation study, steering curves and debiasing for ``recsae run``, with accuracy ranked
    in the model's ``eval_protocol``."""
    ctx = make_context(model, sae, split, cfg, eval_protocol=eval_protocol)
    select = selection_context(ctx, cfg)
    concepts = list(cfg.concepts) or choose_concepts(select, interpretation, items, cfg)
    if not concepts:
        log.warning("steer: no interpretable latent names a concept that qualifies for automatic steering; "
                    "name one (recsae run --concept ATTRIBUTE=VALUE)")
    # resolve every concept first, so a typo fails before the long measurements
    targets = {c: steering_targets(select, interpretation, items, c, cfg) for c in concepts}
    for c in concepts:
        items.mask(c)
    ablation = ablation_study(
        ctx, interpretation, items, cfg.n_ablation, cfg.n_random, cfg.min_active_users, cfg.seed, cfg.ablation_min_items
    )
    studied = [steer_concept(select, c, latents, items, cfg, report_ctx=ctx)
               for c, latents in progress(list(targets.items()), desc="steer concepts")]
    return SteerResult(
        config=asdict(cfg),
        n_users=len(np.unique(ctx.users)),
        n_rows=len(ctx.users) if eval_protocol != "per-user" else None,
        ablation=ablation.to_dict(),
        concepts=studied,
        debias=debias_study(ctx, sae, cfg),
        environment=environment_info(),
    )


def steer_summary(result: SteerResult) -> dict[str, Any]:
    """The ``steer`` entry of summary.json (docs/summary.md): per studied concept the unedited
    and steered top-k share and NDCG@k, with the random control at the chosen strength. The
    ablation test and the debiasing table are in steer.json."""
    out: dict[str, Any] = {}
    for c in result.concepts:
        chosen = c["chosen"]  # steer_concept: never None, within_tolerance always set
        out[c["concept"]] = {
            "share_before": chosen["share_before"],
            "share_after": chosen["share"],
            "random_control_share_after": chosen["share_random"],
            "ndcg_before": chosen["ndcg_before"],
            "ndcg_after": chosen["ndcg"],
            "ndcg_ratio_ci": chosen.get("ndcg_ratio_ci"),
            "random_control_ndcg_after": chosen["ndcg_random"],
            "share_ratio": chosen["share_ratio"],
            "method": chosen["method"],
            "alpha": chosen["strength"],
            "latents": c["latents"],
            "within_tolerance": chosen["within_tolerance"],
            "chosen_on": c["curves_on"],
        }
    return out
