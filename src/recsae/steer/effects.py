"""Measured effects of edits, each beside a random-latent control of the same size (docs/method.md §5.4).

A ``SteerContext`` holds the frozen model, the SAE, the users under study and their unedited
representations h (computed once; every edit starts from them). On top of it:

- ``measure``: top-k concept shares, mean rank of the concept's unseen items, item coverage,
  Gini index, long-tail share, and personal HR/NDCG@k ranked as ``recsae.eval.evaluate`` ranks them, from the same scores;
- ``compare``: an edit vs the unedited model vs the same edit on random latents (several
  seeded draws, averaged);
- ``dose_response``: the same over a grid of strengths;
- ``ablation_study``: ablate each of the most confident latents and measure the drop of its
  own concept's top-k share on the users where it is active, against ablating a random active
  latent of the same users; Wilcoxon signed-rank test across the studied latents.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from recsae.data.dataset import SplitData, SplitName, input_sequences, item_popularity
from recsae.errors import ConfigError
from recsae.eval import mask_history, target_ranks
from recsae.eval.evaluator import METRICS, add_metrics, gather_metrics
from recsae.eval.rows import held_out_rows, row_ranks
from recsae.steer.edit import Ablate, AblateRandomActive, Edit, apply
from recsae.steer.metrics import (
    concept_share,
    coverage,
    gini,
    long_tail_mask,
    long_tail_share,
    recommendation_counts,
)
from recsae.steer.targets import ConceptItems, most_confident, random_latents

if TYPE_CHECKING:
    import pandas as pd

    from recsae.models.base import Recommender
    from recsae.sae.model import TopKSAE


def _model_device(model: Recommender) -> torch.device:
    return model.item_embeddings().device


CODE_CACHE_BATCHES = 64
"""Batches of rows whose SAE codes a ``SteerContext`` keeps (each B x k values and indices)."""


class SteerContext:
    """The users an intervention is measured on, with their unedited representations.

    ``eval_protocol`` per-user: a row per user, the representation of their history, accuracy
    from their held-out items. rechorus: a row per held-out interaction of those users (as
    ``recsae.eval.evaluate_rows`` ranks), the representation of everything before it, accuracy
    from that one item. ``users`` holds the user of each row; ``history`` the items masked
    from each user's rankings."""

    def __init__(
        self,
        model: Recommender,
        sae: TopKSAE,
        split: SplitData,
        which: SplitName = "test",
        users: np.ndarray | None = None,
        k: int = 10,
        batch_size: int = 512,
        max_len: int = 200,
        popularity: np.ndarray | None = None,
        head_fraction: float = 0.2,
        eval_protocol: str = "per-user",
    ) -> None:
        self.model, self.sae, self.split, self.which = model, sae, split, which
        self.k, self.batch_size, self.max_len = k, batch_size, max_len
        self.eval_protocol = eval_protocol
        users = split.eval_users(which) if users is None else np.asarray(users, dtype=np.int64)
        self._row_target: np.ndarray | None = None
        if eval_protocol == "per-user":
            self.history = self._inputs = split.history(which)
            self.users = self._input_keys = users
        elif eval_protocol == "rechorus":  # a row per held-out interaction of these users
            rows = held_out_rows(split, which, max_len, users)
            self.history, self._inputs = rows.timeline, rows.history
            self.users, self._input_keys, self._row_target = rows.user, np.arange(len(rows.user)), rows.target
        else:
            raise ConfigError(f"steer: eval_protocol must be per-user or rechorus, got {eval_protocol!r}")
        if len(self.users) == 0:
            raise ConfigError(f"no users with held-out {which} items to measure edits on")
        self.device = _model_device(model)
        self.n_items = split.n_items
        if popularity is None:
            popularity = item_popularity(split.train.values, self.n_items)
        self.popularity = popularity
        self.tail = long_tail_mask(popularity, head_fraction)
        self._row_of = np.full(split.n_users + 1, -1, dtype=np.int64)
        self._row_of[self.users] = np.arange(len(self.users))
        self.h = self._represent()
        with torch.no_grad():
            enc = sae.encode(self.h)
        active = enc.top_acts > 0
        self.top_indices = enc.top_indices.masked_fill(~active, -1).cpu().numpy()
        """Per user, the SAE's active latents (-1 where a top-k slot is not positive)."""
        counts = np.bincount(self.top_indices[self.top_indices >= 0], minlength=sae.cfg.m)
        self.frequency = counts / len(self.users)
        """Per latent, the share of the users for whom it is active."""
        self.alive = np.flatnonzero(counts > 0)
        """Latents active for at least one of the users: the pool random controls draw from."""
        self._codes: dict[bytes, tuple[Tensor, Tensor]] = {}

    def _represent(self) -> Tensor:
        parts = []
        with torch.no_grad():
            for start in range(0, len(self.users), self.batch_size):
                batch = slice(start, start + self.batch_size)
                seqs = input_sequences(self._inputs, self._input_keys[batch], self.max_len).to(self.device)
                parts.append(self.model.represent(torch.from_numpy(self.users[batch]).to(self.device), seqs))
        return torch.cat(parts)

    def active_rows(self, latent: int) -> np.ndarray:
        """Rows (indices into ``users``) where ``latent`` is active."""
        return np.flatnonzero((self.top_indices == latent).any(axis=1))

    def score_fn(self, edit: Edit | None) -> Callable[[Tensor, Tensor], Tensor]:
        """A ``score_fn`` for ``evaluate`` that ranks with the edited cached representations
        (the same h the model computes from these users' histories)."""

        if self._row_target is not None:
            raise ConfigError("score_fn ranks per user; this context measures held-out rows (rechorus protocol)")

        def score(users: Tensor, seqs: Tensor) -> Tensor:
            rows = self._row_of[users.cpu().numpy()]
            if (rows < 0).any():
                raise ConfigError("score_fn called for users outside this steering context")
            with torch.no_grad():
                return self.model.score(self.edited(rows, edit))

        return score

    def accuracy_ranks(self, scores: Tensor, rows: np.ndarray) -> tuple[Tensor, Tensor]:
        """Pessimistic ranks (rows x T, inf-padded) of the held-out items of ``rows`` and their
        number per row, ranked as the model was evaluated: per user, the user's targets among
        the items outside their history; per held-out row (rechorus), its target among the items
        outside the user's whole time line. Masks ``scores`` in place."""
        users = self.users[rows]
        if self._row_target is None:  # held-out items that are also in the history (repeat consumption) stay ranked
            targets = self.split.targets(self.which)
            return target_ranks(mask_history(scores, self.history, users, keep=targets), targets, users)
        ranks = row_ranks(scores, self._row_target[rows], self.history, users)
        return ranks, torch.ones(len(rows), dtype=torch.int64, device=scores.device)

    def edited(self, rows: np.ndarray, edit: Edit | None) -> Tensor:
        """The representations of ``rows`` (indices into ``users``) under ``edit``. Their SAE
        codes are kept per batch of rows: a dose-response edits the same users many times."""
        h = self.h[torch.from_numpy(rows).to(self.h.device)]
        if edit is None:
            return h
        key = rows.tobytes()
        codes = self._codes.get(key)
        if codes is None:
            if len(self._codes) >= CODE_CACHE_BATCHES:
                self._codes.pop(next(iter(self._codes)))
            with torch.no_grad():
                codes = self._codes[key] = tuple(self.sae.encode(h))[:2]  # type: ignore[assignment]
        return apply(self.sae, h, edit, codes)

    def batches(self, rows: np.ndarray | None) -> Iterator[np.ndarray]:
        rows = np.arange(len(self.users)) if rows is None else np.asarray(rows, dtype=np.int64)
        for start in range(0, len(rows), self.batch_size):
            yield rows[start : start + self.batch_size]


class EditEffect(NamedTuple):
    """What the recommendations of a set of users look like under one edit."""

    share: dict[str, float]
    """Concept -> mean share of the top-k items carrying it."""
    mean_rank: dict[str, float]
    """Concept -> mean 1-based rank of the concept's items outside each user's history."""
    hr: float
    """HR@k on the held-out items (nan when accuracy was not measured)."""
    ndcg: float
    """NDCG@k on the held-out items (nan when accuracy was not measured)."""
    coverage: float
    """Share of the catalogue in at least one top-k list."""
    gini: float
    """Gini index of the items' top-k counts."""
    long_tail_share: float
    """Share of top-k slots taken by long-tail items."""
    n_users: int
    ndcg_per_user: np.ndarray | None = None
    """NDCG@k per measured user (None when accuracy was not measured); not in ``to_dict``."""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self._asdict().items() if k != "ndcg_per_user"}


class _Pass(NamedTuple):
    top: np.ndarray
    mean_rank: dict[str, float]
    accuracy: dict[str, np.ndarray] | None
    """Per user, HR@k and NDCG@k of the held-out items (``recsae.eval.evaluate``'s protocol)."""


def concept_rank_sum(scores: Tensor, items: Tensor) -> tuple[float, int]:
    """Sum and number of the 1-based ranks (1 + items scoring strictly higher) of ``items`` in
    every row, skipping masked (-inf) entries. Counts each item against the row's sorted
    concept scores (a searchsorted) instead of sorting the whole catalogue."""
    cs = scores[:, items]
    valid = torch.isfinite(cs)
    ordered = cs.masked_fill(~valid, torch.inf).sort(dim=1).values
    # for every item j: how many valid concept items score strictly below it
    below = torch.searchsorted(ordered, scores.contiguous(), side="left")
    n_valid = int(valid.sum())
    return float(n_valid + below.sum().item()), n_valid


def _top_lists(
    ctx: SteerContext, edit: Edit | None, rows: np.ndarray | None, concepts: Mapping[str, np.ndarray],
    ranks: bool = True, accuracy: bool = False,
) -> _Pass:
    """One scoring pass over the users ``rows``: their top-k lists, the concepts' mean ranks and,
    with ``accuracy``, the held-out items' HR/NDCG@k ranked exactly as ``evaluate`` does."""
    tops = []
    rank_sum = dict.fromkeys(concepts, 0.0)
    rank_n = dict.fromkeys(concepts, 0)
    index = {c: torch.from_numpy(np.flatnonzero(m)).to(ctx.device) for c, m in concepts.items()} if ranks else {}
    per_user: dict[str, list[np.ndarray]] = {f"{m}@{ctx.k}": [] for m in METRICS}
    with torch.no_grad():
        for batch in ctx.batches(rows):
            scores = ctx.model.score(ctx.edited(batch, edit)).float()
            if accuracy:
                add_metrics(per_user, *ctx.accuracy_ranks(scores, batch), (ctx.k,), "")
            scores = mask_history(scores, ctx.history, ctx.users[batch])
            tops.append(scores.topk(ctx.k, dim=1).indices.cpu().numpy())
            for c, items in index.items():
                total, n = concept_rank_sum(scores, items)
                rank_sum[c] += total
                rank_n[c] += n
    top = np.concatenate(tops) if tops else np.zeros((0, ctx.k), dtype=np.int64)
    mean_rank = {c: rank_sum[c] / rank_n[c] if rank_n[c] else math.nan for c in concepts}
    return _Pass(top, mean_rank, gather_metrics(per_user, None)[0] if accuracy else None)


def recommendations(ctx: SteerContext, edit: Edit | None, rows: np.ndarray | None = None) -> np.ndarray:
    """The top-k items (rows x k) of the users ``rows`` (default all) under ``edit``."""
    return _top_lists(ctx, edit, rows, {}, ranks=False).top


def measure(
    ctx: SteerContext,
    edit: Edit | None,
    concepts: Mapping[str, np.ndarray],
    rows: np.ndarray | None = None,
    accuracy: bool = True,
    ranks: bool = True,
) -> EditEffect:
    """Effects of ``edit`` (``None`` = unedited) on the users ``rows`` (default all); without
    ``accuracy`` HR/NDCG are nan, without ``ranks`` the concepts' mean ranks are."""
    p = _top_lists(ctx, edit, rows, concepts, ranks, accuracy)
    share = {c: float(concept_share(p.top, m).mean()) if len(p.top) else math.nan for c, m in concepts.items()}
    hr = ndcg = math.nan
    per_user = None
    if p.accuracy is not None:
        hr, ndcg = (float(a.mean()) if len(a) else math.nan for a in (p.accuracy[f"{m}@{ctx.k}"] for m in ("hr", "ndcg")))
        per_user = p.accuracy[f"ndcg@{ctx.k}"]
    return EditEffect(
        share=share,
        mean_rank=p.mean_rank,
        hr=hr,
        ndcg=ndcg,
        coverage=coverage(p.top, ctx.n_items),
        gini=gini(recommendation_counts(p.top, ctx.n_items)),
        long_tail_share=long_tail_share(p.top, ctx.tail),
        n_users=len(p.top),
        ndcg_per_user=per_user if accuracy else None,
    )


def mean_effect(effects: Sequence[EditEffect]) -> EditEffect:
    """Average of several effects (e.g. the draws of a random control)."""
    if not effects:
        raise ValueError("no effects to average")

    def avg(values: list[float]) -> float:
        return float(np.mean(values))

    first = effects[0]
    per_user = [e.ndcg_per_user for e in effects if e.ndcg_per_user is not None]
    return EditEffect(
        share={c: avg([e.share[c] for e in effects]) for c in first.share},
        mean_rank={c: avg([e.mean_rank[c] for e in effects]) for c in first.mean_rank},
        hr=avg([e.hr for e in effects]),
        ndcg=avg([e.ndcg for e in effects]),
        coverage=avg([e.coverage for e in effects]),
        gini=avg([e.gini for e in effects]),
        long_tail_share=avg([e.long_tail_share for e in effects]),
        n_users=first.n_users,
        ndcg_per_user=np.mean(per_user, axis=0) if len(per_user) == len(effects) else None,
    )


def random_control_draws(ctx: SteerContext, latents: Sequence[int], n_draws: int, seed: int) -> list[tuple[int, ...]]:
    """``n_draws`` seeded sets of random alive latents, each as large as ``latents`` and disjoint from it."""
    rng = np.random.default_rng(seed)
    return [random_latents(rng, ctx.alive, len(latents), exclude=latents) for _ in range(n_draws)]


def with_latents(edit: Edit, latents: tuple[int, ...]) -> Edit:
    """The same edit acting on other latents (for random controls)."""
    if not dataclasses.is_dataclass(edit) or not hasattr(edit, "latents"):
        raise ConfigError(f"{type(edit).__name__} has no latents to replace for a random control")
    return dataclasses.replace(edit, latents=latents)


class Comparison(NamedTuple):
    """An edit beside the unedited model and the random-latent control."""

    before: EditEffect
    after: EditEffect
    random: EditEffect
    """Mean over the random draws."""
    random_latents: list[tuple[int, ...]]

    def table(self, k: int = 10) -> list[dict[str, Any]]:
        """One row per measured quantity: before / after / random control."""
        rows = []
        for c in self.before.share:
            rows.append(_row(f"share@{k}[{c}]", self.before.share[c], self.after.share[c], self.random.share[c]))
            rows.append(
                _row(f"mean rank[{c}]", self.before.mean_rank[c], self.after.mean_rank[c], self.random.mean_rank[c])
            )
        for name, label in (("hr", f"hr@{k}"), ("ndcg", f"ndcg@{k}"), ("coverage", f"coverage@{k}"),
                            ("gini", f"gini@{k}"), ("long_tail_share", f"long_tail_share@{k}")):  # fmt: skip
            rows.append(_row(label, getattr(self.before, name), getattr(self.after, name), getattr(self.random, name)))
        return rows

    def text(self, k: int = 10) -> str:
        """The table as aligned text: metric, before, after, random control."""
        def num(x: float) -> str:
            return "-" if x != x else f"{x:.4f}"

        lines = [f"  {'metric':<40} {'before':>10} {'after':>10} {'random':>10}"]
        lines += [f"  {r['metric'][:40]:<40} {num(r['before']):>10} {num(r['after']):>10} {num(r['random_control']):>10}"
                  for r in self.table(k)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "random": self.random.to_dict(),
            "random_latents": [list(r) for r in self.random_latents],
            "table": self.table(),
        }


def _row(name: str, before: float, after: float, random: float) -> dict[str, Any]:
    return {"metric": name, "before": before, "after": after, "random_control": random}


def compare(
    ctx: SteerContext,
    edit: Edit,
    concepts: Mapping[str, np.ndarray],
    n_random: int = 5,
    seed: int = 0,
    rows: np.ndarray | None = None,
    accuracy: bool = True,
    before: EditEffect | None = None,
) -> Comparison:
    """``edit`` vs unedited vs the same edit on ``n_random`` random latent sets of the same size."""
    base = before if before is not None else measure(ctx, None, concepts, rows, accuracy)
    after = measure(ctx, edit, concepts, rows, accuracy)
    draws = random_control_draws(ctx, edit.latents, n_random, seed)  # type: ignore[attr-defined]
    rand = mean_effect([measure(ctx, with_latents(edit, d), concepts, rows, accuracy) for d in draws])
    return Comparison(base, after, rand, draws)


def dose_response(
    ctx: SteerContext,
    make_edit: Callable[[float], Edit],
    strengths: Sequence[float],
    concept: str,
    mask: np.ndarray,
    n_random: int = 5,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per strength: the concept's share, mean rank and HR/NDCG@k under the edit and
    under the same edit on random latents (draws fixed across strengths), plus the unedited
    figures and the ratios to them."""
    concepts = {concept: mask}
    base = measure(ctx, None, concepts)
    draws = random_control_draws(ctx, make_edit(float(strengths[0])).latents, n_random, seed)  # type: ignore[attr-defined]
    table = []
    for s in strengths:
        edit = make_edit(float(s))
        eff = measure(ctx, edit, concepts)
        rand = mean_effect([measure(ctx, with_latents(edit, d), concepts) for d in draws])
        table.append(
            {
                "strength": float(s),
                "share": eff.share[concept],
                "share_random": rand.share[concept],
                "ndcg": eff.ndcg,
                "ndcg_random": rand.ndcg,
                "share_before": base.share[concept],
                "ndcg_before": base.ndcg,
                "share_ratio": _ratio(eff.share[concept], base.share[concept]),
                "ndcg_ratio": _ratio(eff.ndcg, base.ndcg),
                "ndcg_ratio_ci": ratio_interval(eff.ndcg_per_user, base.ndcg_per_user, seed),
                "mean_rank_before": base.mean_rank[concept],
                "mean_rank": eff.mean_rank[concept],
                "mean_rank_random": rand.mean_rank[concept],
                "rank_shift": base.mean_rank[concept] - eff.mean_rank[concept],
                "rank_shift_random": base.mean_rank[concept] - rand.mean_rank[concept],
                "hr_before": base.hr,
                "hr": eff.hr,
                "hr_random": rand.hr,
                "coverage": eff.coverage,
                "gini": eff.gini,
                "long_tail_share": eff.long_tail_share,
            }
        )
    return table


def ratio_interval(
    after: np.ndarray | None, before: np.ndarray | None, seed: int = 0, n_boot: int = 2000, level: float = 0.95
) -> list[float] | None:
    """Paired bootstrap interval (percentile, over users) of mean(after) / mean(before): how
    sure a measured NDCG ratio is. With 1,000 users one run's NDCG@10 varies by several
    percent, as much as the tolerance it is judged against. None without per-user values."""
    if after is None or before is None or len(before) == 0:
        return None
    idx = np.random.default_rng(seed).integers(0, len(before), size=(n_boot, len(before)))
    num, den = after[idx].mean(axis=1), before[idx].mean(axis=1)
    ratios = np.divide(num, den, out=np.full(n_boot, np.nan), where=den > 0)
    tail = 100 * (1 - level) / 2
    return [float(x) for x in np.nanpercentile(ratios, [tail, 100 - tail])]


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else (math.inf if a > 0 else math.nan)


def best_strength(curve: Sequence[Mapping[str, Any]], tolerance: float = 0.05) -> dict[str, Any] | None:
    """The row with the highest concept share among positive strengths whose NDCG stays within
    ``tolerance`` (relative) of the unedited model; ``None`` when no row qualifies."""
    ok = [r for r in curve if r["strength"] != 0 and r["ndcg"] >= (1 - tolerance) * r["ndcg_before"]]
    return dict(max(ok, key=lambda r: (r["share"], -abs(r["strength"])))) if ok else None


class AblationStudy(NamedTuple):
    """Each studied latent ablated alone vs a random active latent of the same users."""

    rows: list[dict[str, Any]]
    """Per latent: latent, rule, concept (its item set), confidence, n_users (where it is active), share_before,
    share_after, share_random, drop, drop_random."""
    statistic: float
    """Wilcoxon signed-rank statistic of drop vs drop_random (one-sided: drop larger)."""
    p_value: float
    n_latents: int
    mean_drop: float
    mean_drop_random: float
    share_larger: float
    """Share of studied latents whose drop exceeds the random control's."""

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


def paired_test(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Wilcoxon signed-rank test of x > y (paired); nan when it is undefined (fewer than two
    pairs, or all differences zero)."""
    from scipy.stats import wilcoxon

    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    if len(d) < 2 or not np.any(d != 0):
        return math.nan, math.nan
    res = wilcoxon(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), alternative="greater")
    return float(res.statistic), float(res.pvalue)


def ablation_study(
    ctx: SteerContext,
    interpretation: pd.DataFrame,
    items: ConceptItems,
    n_latents: int = 20,
    n_random: int = 5,
    min_users: int = 10,
    seed: int = 0,
    min_items: int = 1,
) -> AblationStudy:
    """Ablate each of the ``n_latents`` most confident interpretable latents (whose rule names
    an item set of at least ``min_items`` items and which are active for at least ``min_users``
    users) and measure the drop of
    its own concept's top-k share on those users, vs ablating one random active latent per user
    (``n_random`` seeded draws, averaged)."""
    rows: list[dict[str, Any]] = []
    for cand in most_confident(interpretation, len(interpretation)).itertuples(index=False):
        if len(rows) >= n_latents:
            break
        latent, name = int(cand.latent), str(cand.concept)
        active = ctx.active_rows(latent)
        if len(active) < min_users or not items.resolvable(name) or items.mask(name).sum() < min_items:
            continue
        concept = {name: items.mask(name)}
        before = measure(ctx, None, concept, active, accuracy=False, ranks=False).share[name]
        after = measure(ctx, Ablate((latent,)), concept, active, accuracy=False, ranks=False).share[name]
        controls = [AblateRandomActive(1, (latent,), seed + 7919 * r) for r in range(n_random)]
        rand = float(np.mean([measure(ctx, e, concept, active, False, False).share[name] for e in controls]))
        rows.append(
            {
                "latent": latent,
                "rule": str(cand.rule),
                "concept": name,
                "confidence": float(cand.confidence),
                "n_users": len(active),
                "share_before": before,
                "share_after": after,
                "share_random": rand,
                "drop": before - after,
                "drop_random": before - rand,
            }
        )
    drops = [r["drop"] for r in rows]
    rand_drops = [r["drop_random"] for r in rows]
    stat, p = paired_test(drops, rand_drops)
    return AblationStudy(
        rows=rows,
        statistic=stat,
        p_value=p,
        n_latents=len(rows),
        mean_drop=float(np.mean(drops)) if rows else math.nan,
        mean_drop_random=float(np.mean(rand_drops)) if rows else math.nan,
        share_larger=float(np.mean(np.array(drops) > np.array(rand_drops))) if rows else math.nan,
    )
