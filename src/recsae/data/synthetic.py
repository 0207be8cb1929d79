"""Synthetic interactions with planted concepts: the built-in default dataset (docs/method.md §6).

Real data has no answer key; this generator plants one. Items belong to named, overlapping
concepts; each user prefers a few concepts (Dirichlet weights) and occasionally swaps one for a
new one (drift); within a concept, item popularity follows a Zipf law. A user's sequence is a
sticky walk over their concepts: the next item usually stays in the current concept, so the
recent items predict the next one and a sequential model's hidden state has to encode the
concepts of its prefix — which is what lets SAE latents line up with the planted concepts.

The concepts are exported exactly like real genres (``item_meta.multi["concept"]``), and items
get titles such as ``"Noir #12 / Space-opera"``, so the pipeline treats the data like any
catalogue. The same config (seed included) gives the same arrays byte for byte.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from recsae.data.dataset import InteractionDataset, ItemMeta, Ragged
from recsae.errors import ConfigError
from recsae.io import FORMAT_VERSION, write_json

CONCEPT_NAMES: tuple[str, ...] = (
    "space-opera", "noir", "cooking", "jazz", "true-crime", "anime", "gardening", "horror",
    "romance", "western", "cyberpunk", "travel", "history", "sports", "fantasy", "documentary",
    "comedy", "classical", "kids", "thriller", "poetry", "science", "hip-hop", "fashion",
)  # fmt: skip
"""Human-readable concept names; the first ``n_concepts`` are used."""

GROUND_TRUTH_FILE = "ground_truth.json"


@dataclass(frozen=True)
class SyntheticConfig:
    """How the synthetic catalogue and its users are generated."""

    seed: int = 0
    """Seed of the generator; the same config gives identical arrays."""
    n_users: int = 1500
    """Number of users."""
    n_items: int = 1000
    """Number of items (spread evenly over the concepts by their first concept)."""
    n_concepts: int = 20
    """Number of planted concepts (at most len(CONCEPT_NAMES) = 24)."""
    p_second_concept: float = 0.1
    """Probability that an item carries a second concept (overlap). Kept low: the more items
    sit in two concepts, the less the last item tells which concept a user is in."""
    p_third_concept: float = 0.3
    """Probability that an item with a second concept also carries a third."""
    min_user_concepts: int = 2
    """Fewest concepts a user prefers."""
    max_user_concepts: int = 4
    """Most concepts a user prefers."""
    dirichlet_alpha: float = 1.0
    """Concentration of the Dirichlet prior over a user's concept weights."""
    concept_skew: float = 0.0
    """Zipf exponent of the concepts' global popularity (how often users pick each concept);
    0 = all concepts equally common, so that every planted concept has enough rows to recover."""
    zipf_exponent: float = 1.2
    """Zipf exponent of item popularity within a concept."""
    min_seq_len: int = 30
    """Fewest interactions per user."""
    max_seq_len: int = 60
    """Most interactions per user."""
    stickiness: float = 0.9
    """Probability that the next item stays in the current concept (else a switch to another
    preferred one): the sequential signal a model has to pick up from the recent items."""
    drift_rate: float = 0.015
    """Per-interaction probability that a user swaps one of their concepts for a new one."""
    start_time: float = 1.6e9
    """Earliest first timestamp (Unix seconds)."""
    start_spread: float = 3.0e7
    """Users' first timestamps are spread uniformly over this many seconds."""
    mean_gap: float = 86_400.0
    """Mean gap in seconds between a user's consecutive interactions (exponential)."""


class SyntheticData(NamedTuple):
    """A generated dataset with its answer key."""

    dataset: InteractionDataset
    item_concepts: Ragged
    """Planted concept ids per item (indices into ``concept_names``; row 0 empty)."""
    concept_names: list[str]
    user_weights: np.ndarray
    """(n_users + 1) x n_concepts float64: each user's initial concept preferences (row 0 zero)."""
    final_user_weights: np.ndarray
    """(n_users + 1) x n_concepts float64: the preferences after drift (row 0 zero)."""


def _check(cfg: SyntheticConfig) -> None:
    problems = []
    if not 2 <= cfg.n_concepts <= len(CONCEPT_NAMES):
        problems.append(f"n_concepts must be in [2, {len(CONCEPT_NAMES)}], got {cfg.n_concepts}")
    if cfg.n_users < 1:
        problems.append(f"n_users must be >= 1, got {cfg.n_users}")
    if not 1 <= cfg.min_user_concepts <= cfg.max_user_concepts < cfg.n_concepts:
        problems.append(
            "need 1 <= min_user_concepts <= max_user_concepts < n_concepts, got "
            f"{cfg.min_user_concepts}, {cfg.max_user_concepts}, {cfg.n_concepts}"
        )
    if not 2 <= cfg.min_seq_len <= cfg.max_seq_len:
        problems.append(
            f"need 2 <= min_seq_len <= max_seq_len, got {cfg.min_seq_len}, {cfg.max_seq_len}"
        )
    if cfg.n_items < cfg.n_concepts or cfg.n_items < cfg.max_seq_len:
        problems.append(f"n_items ({cfg.n_items}) must be >= n_concepts and >= max_seq_len")
    for name in ("p_second_concept", "p_third_concept", "stickiness", "drift_rate"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            problems.append(f"{name} must be in [0, 1], got {getattr(cfg, name)}")
    if cfg.dirichlet_alpha <= 0 or cfg.mean_gap <= 0:
        problems.append("dirichlet_alpha and mean_gap must be > 0")
    if problems:
        raise ConfigError("invalid synthetic config: " + "; ".join(problems))


def _item_concepts(cfg: SyntheticConfig, rng: np.random.Generator) -> list[list[int]]:
    """Concepts of items 1..n_items: a balanced first concept, then random extra ones."""
    first = rng.permutation(np.arange(cfg.n_items) % cfg.n_concepts)
    extra = rng.random((cfg.n_items, 2))
    concepts = []
    for i in range(cfg.n_items):
        cs = [int(first[i])]
        n_extra = int(extra[i, 0] < cfg.p_second_concept)
        n_extra += int(n_extra == 1 and extra[i, 1] < cfg.p_third_concept)
        if n_extra:
            others = np.delete(np.arange(cfg.n_concepts), cs[0])
            cs += [int(c) for c in rng.choice(others, size=n_extra, replace=False)]
        concepts.append(cs)
    return concepts


class _Catalogue(NamedTuple):
    members: list[np.ndarray]
    """Items carrying each concept."""
    weights: list[np.ndarray]
    """Zipf popularity of each member within the concept (random ranks)."""


def _catalogue(
    cfg: SyntheticConfig, concepts: list[list[int]], rng: np.random.Generator
) -> _Catalogue:
    pairs = [(c, i + 1) for i, cs in enumerate(concepts) for c in cs]
    members, weights = [], []
    for c in range(cfg.n_concepts):
        items = np.array(sorted(i for cc, i in pairs if cc == c), dtype=np.int64)
        ranks = rng.permutation(len(items)) + 1
        members.append(items)
        weights.append(ranks.astype(np.float64) ** -cfg.zipf_exponent)
    return _Catalogue(members, weights)


def _pick(weights: np.ndarray, u: float) -> int:
    """Index drawn proportionally to ``weights`` (not all zero) with the uniform number ``u``."""
    cw = np.cumsum(weights)
    return min(int(np.searchsorted(cw, u * cw[-1], side="right")), len(weights) - 1)


def _user_sequence(
    cfg: SyntheticConfig,
    cat: _Catalogue,
    concept_pop: np.ndarray,
    prefs: np.ndarray,
    length: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One user's items: a sticky walk over their concepts, Zipf items, no repeats.

    ``prefs`` (n_concepts weights) is updated in place when the user drifts.
    """
    seen = np.zeros(cfg.n_items + 1, dtype=bool)
    draws = rng.random((length, 6))
    items = np.empty(length, dtype=np.int64)
    current = _pick(prefs, draws[0, 1])
    for t in range(length):
        d = draws[t]
        if t > 0 and d[0] < cfg.drift_rate:
            # Drift: one preferred concept is replaced by a new one, which the user starts on.
            held = np.flatnonzero(prefs > 0)
            old = int(held[_pick(np.ones(len(held)), d[3])])
            new = _pick(np.where(prefs > 0, 0.0, concept_pop), d[4])
            prefs[new], prefs[old] = prefs[old], 0.0
            current = new
        elif t > 0 and d[5] >= cfg.stickiness:
            # Switch to another preferred concept; otherwise stay in the current one.
            others = prefs.copy()
            others[current] = 0.0
            if others.sum() > 0:
                current = _pick(others, d[1])
        items[t] = _draw_item(cfg, cat, prefs, current, seen, d[2])
        seen[items[t]] = True
    return items


def _draw_item(
    cfg: SyntheticConfig,
    cat: _Catalogue,
    prefs: np.ndarray,
    concept: int,
    seen: np.ndarray,
    u: float,
) -> int:
    """A Zipf draw of an unseen item of ``concept``; if the user has exhausted it, the most
    preferred concept with unseen items, else any concept with unseen items."""
    w = cat.weights[concept] * ~seen[cat.members[concept]]
    if w.sum() > 0:
        return int(cat.members[concept][_pick(w, u)])
    for c in [*np.argsort(-prefs, kind="stable").tolist(), *range(cfg.n_concepts)]:
        w = cat.weights[c] * ~seen[cat.members[c]]
        if w.sum() > 0:
            return int(cat.members[c][_pick(w, u)])
    raise AssertionError("unreachable: n_items >= max_seq_len")


def generate_synthetic(cfg: SyntheticConfig = SyntheticConfig()) -> SyntheticData:
    """Generate the synthetic dataset and its ground truth (deterministic for ``cfg``)."""
    _check(cfg)
    rng = np.random.default_rng(cfg.seed)
    names = list(CONCEPT_NAMES[: cfg.n_concepts])
    concepts = _item_concepts(cfg, rng)
    cat = _catalogue(cfg, concepts, rng)
    concept_pop = rng.permutation(cfg.n_concepts) + 1.0
    concept_pop = concept_pop**-cfg.concept_skew
    concept_pop /= concept_pop.sum()

    initial = np.zeros((cfg.n_users + 1, cfg.n_concepts))
    final = np.zeros_like(initial)
    lengths = rng.integers(cfg.min_seq_len, cfg.max_seq_len + 1, size=cfg.n_users + 1)
    lengths[0] = 0
    seqs = [np.zeros(0, dtype=np.int64)]
    for u in range(1, cfg.n_users + 1):
        n = int(rng.integers(cfg.min_user_concepts, cfg.max_user_concepts + 1))
        chosen = rng.choice(cfg.n_concepts, size=n, replace=False, p=concept_pop)
        initial[u, chosen] = rng.dirichlet(np.full(n, cfg.dirichlet_alpha))
        final[u] = initial[u]
        seqs.append(_user_sequence(cfg, cat, concept_pop, final[u], int(lengths[u]), rng))

    gaps = np.maximum(1.0, np.ceil(rng.exponential(cfg.mean_gap, size=int(lengths.sum()))))
    starts = np.floor(cfg.start_time + rng.uniform(0, cfg.start_spread, size=cfg.n_users + 1))
    user = np.repeat(np.arange(cfg.n_users + 1, dtype=np.int64), lengths)
    # Per-user cumulative gaps: strictly increasing timestamps within each user.
    cum = np.cumsum(gaps)
    offsets = np.concatenate([[0.0], cum])[np.repeat(np.cumsum(lengths) - lengths, lengths)]
    time = starts[user] + cum - offsets

    titles = ["", *_titles(concepts, names)]
    meta = ItemMeta(
        title=titles,
        multi={"concept": [(), *(tuple(names[c] for c in cs) for cs in concepts)]},
        text={"title": list(titles)},
    )
    dataset = InteractionDataset(
        name="synthetic",
        user=user,
        item=np.concatenate(seqs),
        time=time.astype(np.float64),
        user_ids=np.array(["", *(f"u{u}" for u in range(1, cfg.n_users + 1))]),
        item_ids=np.array(["", *(f"i{i}" for i in range(1, cfg.n_items + 1))]),
        item_meta=meta,
        info={"format": "synthetic", "config": asdict(cfg), "seed": cfg.seed},
    )
    return SyntheticData(
        dataset=dataset,
        item_concepts=Ragged.from_lists([[], *concepts]),
        concept_names=names,
        user_weights=initial,
        final_user_weights=final,
    )


def _titles(concepts: list[list[int]], names: list[str]) -> list[str]:
    """Titles like "Noir #12 / Space-opera": first concept, serial number within it, others."""
    serial = [0] * len(names)
    titles = []
    for cs in concepts:
        serial[cs[0]] += 1
        parts = [f"{names[cs[0]].capitalize()} #{serial[cs[0]]}"]
        titles.append(" / ".join(parts + [names[c].capitalize() for c in cs[1:]]))
    return titles


def write_ground_truth(data: SyntheticData, out_dir: Path) -> None:
    """Write ``out_dir/ground_truth.json``: item -> concept names, user -> concept weights
    (initial and after drift), the config and seed (atomically)."""
    from recsae.utils import environment_info

    ds = data.dataset
    names = data.concept_names

    def weights(w: np.ndarray) -> dict[str, dict[str, float]]:
        return {
            str(ds.user_ids[u]): {names[c]: float(w[u, c]) for c in np.flatnonzero(w[u])}
            for u in range(1, ds.n_users + 1)
        }

    write_json(
        Path(out_dir) / GROUND_TRUTH_FILE,
        {
            "format": "recsae-synthetic-ground-truth",
            "format_version": FORMAT_VERSION,
            "seed": ds.info.get("seed"),
            "config": ds.info.get("config"),
            "versions": environment_info(),
            "concepts": names,
            "items": {
                str(ds.item_ids[i]): [names[c] for c in data.item_concepts[i]]
                for i in range(1, ds.n_items + 1)
            },
            "users": weights(data.user_weights),
            "users_final": weights(data.final_user_weights),
        },
    )
