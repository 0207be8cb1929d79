"""Full-ranking evaluation (docs/method.md §3.3): every item scored, the user's history masked,
pessimistic ties. Memory stays bounded for large catalogues: a chunk of users × items holds at
most ``SCORE_BUDGET_BYTES`` of scores and ranking temporaries. Chunks of users come first; when
even a few users' full rows exceed the budget and the scores are a dot product (``DotScores``),
the items are cut into chunks too, and each target's pessimistic rank (the candidates scoring at
least as high) is summed over the item chunks: the same ranks as one pass over all items.

Sampled-negative ranking is available on request only, and its metric names then carry the
label (``sampled100:ndcg@10``) so that they can never be mistaken for full-ranking figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from recsae.data.dataset import Ragged, SplitData, SplitName, input_sequences
from recsae.errors import ConfigError
from recsae.eval.metrics import METRICS

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score_fn(users (B,), seqs (B x L) left-padded history) -> scores (B x (n_items + 1))``."""

DEFAULT_KS = (5, 10, 20, 50)

EVAL_PROTOCOLS = ("per-user", "rechorus")
"""per-user: each user's held-out items ranked together (the default); rechorus: each held-out
row its own next-item prediction, as the RecSAE reference evaluates (``recsae.eval.rows``)."""


SCORE_BUDGET_BYTES = 256 * 2**20
"""Most bytes a chunk of scores (users × items) and its ranking temporaries may take."""
BYTES_PER_SCORE = 24
"""What ranking holds per score: the float32 score, its sorted copy (float32) and sort index (int64)
or comparison masks, and the masking's temporaries."""
MIN_USER_CHUNK = 64
"""Fewest users per chunk before the items are chunked instead (smaller matrix products are slow)."""


@dataclass(frozen=True)
class DotScores:
    """A ``ScoreFn`` that is a dot product, ``represent(users, seqs) @ items().T`` (the probe
    contract's ``Recommender.score``): the evaluator can then score a chunk of the items at a time."""

    represent: Callable[[Tensor, Tensor], Tensor]
    """users (B,), seqs (B x L) -> representations (B x d)."""
    items: Callable[[], Tensor]
    """The item table ((n_items + 1) x d, row 0 padding)."""

    def __call__(self, users: Tensor, seqs: Tensor) -> Tensor:
        return self.represent(users, seqs) @ self.items().T


def rows_within_budget(n_cols: int, bytes_per_entry: int = BYTES_PER_SCORE, budget: int | None = None) -> int:
    """How many rows of ``n_cols`` entries fit in ``budget`` bytes (default ``SCORE_BUDGET_BYTES``)
    at ``bytes_per_entry`` each (>= 1)."""
    budget = SCORE_BUDGET_BYTES if budget is None else budget
    return max(1, budget // max(1, n_cols * bytes_per_entry))


class EvalResult(NamedTuple):
    """Ranking metrics of one evaluation, overall and per user."""

    metrics: dict[str, float]
    """Mean over evaluated users (held-out rows under the rechorus protocol), keyed like ``ndcg@10``."""
    per_user: dict[str, np.ndarray]
    """Metric name -> value per evaluated user, or per held-out row under the rechorus protocol
    (same order as ``users``)."""
    users: np.ndarray
    """The evaluated users (the user of each row under the rechorus protocol)."""
    protocol: dict[str, object]
    """How the ranking was done: ``{"ranking": "full"}`` or sampled with the number of negatives."""


def mask_history(
    scores: Tensor, history: Ragged, users: np.ndarray, keep: Ragged | None = None, lengths: np.ndarray | None = None,
    first_item: int = 0,
) -> Tensor:
    """Set the padding item and every history item to -inf, in place; items of ``keep`` (the
    targets, for datasets with repeat consumption) stay scored. ``lengths``: mask only the first
    ``lengths[b]`` items of each history (the prefix a harvested row was computed from).
    ``first_item``: the columns of ``scores`` are items ``first_item`` .. (a chunk of the items)."""
    if first_item == 0:
        scores[:, 0] = -torch.inf
    b, _, items = history.flat_pairs(users, lengths)
    b, items = _in_chunk(b, items, first_item, scores.shape[1])
    if len(items):
        dev = scores.device
        bt, it = torch.from_numpy(b).to(dev), torch.from_numpy(items).to(dev)
        saved = None
        if keep is not None:
            kb, _, ki = keep.flat_pairs(users)
            kb, ki = _in_chunk(kb, ki, first_item, scores.shape[1])
            kbt, kit = torch.from_numpy(kb).to(dev), torch.from_numpy(ki).to(dev)
            saved = (kbt, kit, scores[kbt, kit].clone())
        scores[bt, it] = -torch.inf
        if saved is not None:
            scores[saved[0], saved[1]] = saved[2]
    return scores


def _in_chunk(rows: np.ndarray, items: np.ndarray, first_item: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """The (row, item) pairs whose item lies in the columns ``first_item`` .. ``first_item + n_cols``,
    as (row, column)."""
    if first_item == 0 and (len(items) == 0 or int(items.max()) < n_cols):
        return rows, items
    inside = (items >= first_item) & (items < first_item + n_cols)
    return rows[inside], items[inside] - first_item


def topk_items(scores: Tensor, history: Ragged, users: np.ndarray, k: int = 10) -> Tensor:
    """The top-k recommended items (B x k) with the history and padding masked."""
    masked = mask_history(scores.clone(), history, users)
    return masked.topk(k, dim=1).indices


def target_ranks(scores: Tensor, targets: Ragged, users: np.ndarray) -> tuple[Tensor, Tensor]:
    """Pessimistic 1-based ranks (B x T, inf-padded) of each user's targets among all items."""
    b, slot, items = targets.flat_pairs(users)
    n_targets = torch.from_numpy(targets.lengths()[users]).to(scores.device)
    width = max(int(n_targets.max()), 1)
    dev = scores.device
    bt, it, st = (torch.from_numpy(a).to(dev) for a in (b, items, slot))
    target_scores = torch.full((len(users), width), torch.nan, dtype=scores.dtype, device=dev)
    target_scores[bt, st] = scores[bt, it]
    ranks = torch.where(torch.isnan(target_scores), torch.inf, _at_least(scores, target_scores).to(torch.float64))
    return ranks, n_targets


def _at_least(scores: Tensor, target_scores: Tensor) -> Tensor:
    """Per target (B x T), how many of the candidates ``scores`` (B x N) score at least as high
    as it: its pessimistic rank among them (ties count against it; a NaN target counts none)."""
    filled = target_scores.nan_to_num(torch.inf)
    if filled.shape[1] <= 8:  # one pass over the scores per target: cheaper than sorting them
        return torch.stack([(scores >= filled[:, j : j + 1]).sum(dim=1) for j in range(filled.shape[1])], dim=1)
    below = torch.searchsorted(scores.sort(dim=1).values, filled, side="left")
    return scores.shape[1] - below


def _chunked_ranks(
    scores: DotScores, user_t: Tensor, seqs: Tensor, history: Ragged, targets: Ragged, users: np.ndarray,
    item_chunk: int,
) -> tuple[Tensor, Tensor]:
    """``target_ranks`` of the masked full scores, computed over chunks of ``item_chunk`` items:
    a first pass reads each target's score in its chunk, a second counts per chunk the
    candidates scoring at least as high. No more than one chunk of scores is held at a time."""
    h, table = scores.represent(user_t, seqs), scores.items()
    n_cols = table.shape[0]
    b, slot, items = targets.flat_pairs(users)
    n_targets = torch.from_numpy(targets.lengths()[users]).to(h.device)
    width = max(int(n_targets.max()), 1)
    target_scores = torch.full((len(users), width), torch.nan, dtype=torch.float32, device=h.device)
    starts = range(0, n_cols, item_chunk)
    for lo in starts:
        chunk = (h @ table[lo : lo + item_chunk].T).float()
        inside = (items >= lo) & (items < lo + chunk.shape[1])
        bt, st, it = (torch.from_numpy(a[inside]).to(h.device) for a in (b, slot, items - lo))
        target_scores[bt, st] = chunk[bt, it]
    counts = torch.zeros(len(users), width, dtype=torch.int64, device=h.device)
    for lo in starts:
        chunk = (h @ table[lo : lo + item_chunk].T).float()
        counts += _at_least(mask_history(chunk, history, users, keep=targets, first_item=lo), target_scores)
    return torch.where(torch.isnan(target_scores), torch.inf, counts.to(torch.float64)), n_targets


def _sample_negatives(
    scores: Tensor, n_neg: int, rng: np.random.Generator
) -> Tensor:
    """Keep only ``n_neg`` random finite-scored candidates per row (others set to -inf)."""
    finite = torch.isfinite(scores).cpu().numpy()
    keep = np.zeros_like(finite)
    for row in range(finite.shape[0]):
        cand = np.flatnonzero(finite[row])
        chosen = rng.choice(cand, size=min(n_neg, len(cand)), replace=False)
        keep[row, chosen] = True
    return torch.from_numpy(keep).to(scores.device)


def evaluate(
    score_fn: ScoreFn,
    split: SplitData,
    which: SplitName = "test",
    ks: Sequence[int] = DEFAULT_KS,
    users: np.ndarray | None = None,
    batch_size: int = 1024,
    max_len: int = 200,
    num_negatives: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    eval_protocol: str = "per-user",
    memory_budget: int | None = None,
) -> EvalResult:
    """Rank the held-out targets of ``which`` for ``users`` (default: all users with targets).

    ``score_fn`` receives the users and their left-padded history (the model input) and
    returns scores for all items; the history and the padding item are masked before ranking.
    With ``num_negatives`` each target competes only with that many sampled unseen items.
    ``batch_size`` users at most are scored together, fewer when their scores would exceed
    ``memory_budget`` bytes (default ``SCORE_BUDGET_BYTES``); a ``DotScores`` is then also
    scored a chunk of items at a time.
    ``eval_protocol`` 'rechorus' ranks each held-out row on its own instead
    (``recsae.eval.rows.evaluate_rows``; ``per_user`` then holds one value per row).
    """
    if eval_protocol not in EVAL_PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {eval_protocol!r}; expected one of {', '.join(EVAL_PROTOCOLS)}")
    if eval_protocol == "rechorus":
        from recsae.eval.rows import evaluate_rows  # it builds on this module

        return evaluate_rows(score_fn, split, which, ks, users, batch_size, max_len, num_negatives, seed, device)
    history, targets = split.history(which), split.targets(which)
    users = split.eval_users(which) if users is None else np.asarray(users, dtype=np.int64)
    ks = tuple(sorted(set(int(k) for k in ks)))
    prefix = f"sampled{num_negatives}:" if num_negatives else ""
    names = [f"{prefix}{m}@{k}" for m in METRICS for k in ks]
    per_user: dict[str, list[np.ndarray]] = {n: [] for n in names}
    rng = np.random.default_rng(seed)
    n_cols = split.n_items + 1
    chunk_users = min(batch_size, rows_within_budget(n_cols, budget=memory_budget))
    item_chunk = n_cols
    if chunk_users < min(batch_size, MIN_USER_CHUNK) and isinstance(score_fn, DotScores) and not num_negatives:
        chunk_users = min(batch_size, MIN_USER_CHUNK)
        item_chunk = rows_within_budget(chunk_users, budget=memory_budget)
    for start in range(0, len(users), chunk_users):
        batch = users[start : start + chunk_users]
        seqs = input_sequences(history, batch, max_len)
        user_t = torch.from_numpy(batch)
        if device is not None:
            seqs, user_t = seqs.to(device), user_t.to(device)
        if item_chunk < n_cols:
            assert isinstance(score_fn, DotScores)
            with torch.no_grad():
                ranks, n_targets = _chunked_ranks(score_fn, user_t, seqs, history, targets, batch, item_chunk)
            add_metrics(per_user, ranks, n_targets, ks, prefix)
            continue
        with torch.no_grad():
            scores = score_fn(user_t, seqs).float()
        scores = mask_history(scores, history, batch, keep=targets)
        if num_negatives:
            tb, _, ti = targets.flat_pairs(batch)
            is_target = torch.zeros_like(scores, dtype=torch.bool)
            is_target[torch.from_numpy(tb).to(scores.device), torch.from_numpy(ti).to(scores.device)] = True
            sampled = _sample_negatives(scores.masked_fill(is_target, -torch.inf), num_negatives, rng)
            scores = scores.masked_fill(~(sampled | is_target), -torch.inf)
        ranks, n_targets = target_ranks(scores, targets, batch)
        add_metrics(per_user, ranks, n_targets, ks, prefix)
    arrays, metrics, protocol = gather_metrics(per_user, num_negatives)
    protocol.update(split=which, masked="history", ties="pessimistic", n_users=len(users))
    return EvalResult(metrics, arrays, users, protocol)


def add_metrics(out: dict[str, list[np.ndarray]], ranks: Tensor, n_targets: Tensor, ks: Sequence[int], prefix: str) -> None:
    """Append every metric at every cut-off of one batch of ranks to ``out`` (keyed ``prefix + ndcg@10``)."""
    for m, fn in METRICS.items():
        for k in ks:
            out[f"{prefix}{m}@{k}"].append(fn(ranks, n_targets, k).cpu().numpy())


def gather_metrics(
    values: dict[str, list[np.ndarray]], num_negatives: int | None
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, object]]:
    """The batches' values joined, their means (NaN where nothing was ranked), and the start of
    the protocol record (full ranking, or sampled with the number of negatives)."""
    arrays = {n: (np.concatenate(v) if v else np.zeros(0)) for n, v in values.items()}
    metrics = {n: float(a.mean()) if len(a) else float("nan") for n, a in arrays.items()}
    protocol: dict[str, object] = (
        {"ranking": "sampled", "negatives": num_negatives} if num_negatives else {"ranking": "full"}
    )
    return arrays, metrics, protocol
