"""Full-ranking evaluation (docs/method.md §3.3): every item scored, the user's history masked,
pessimistic ties, chunked over users so memory stays bounded for large catalogues.

Sampled-negative ranking is available on request only, and its metric names then carry the
label (``sampled100:ndcg@10``) so that they can never be mistaken for full-ranking figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
) -> Tensor:
    """Set the padding item and every history item to -inf, in place; items of ``keep`` (the
    targets, for datasets with repeat consumption) stay scored. ``lengths``: mask only the first
    ``lengths[b]`` items of each history (the prefix a harvested row was computed from)."""
    scores[:, 0] = -torch.inf
    b, _, items = history.flat_pairs(users, lengths)
    if len(items):
        dev = scores.device
        bt, it = torch.from_numpy(b).to(dev), torch.from_numpy(items).to(dev)
        saved = None
        if keep is not None:
            kb, _, ki = keep.flat_pairs(users)
            kbt, kit = torch.from_numpy(kb).to(dev), torch.from_numpy(ki).to(dev)
            saved = (kbt, kit, scores[kbt, kit].clone())
        scores[bt, it] = -torch.inf
        if saved is not None:
            scores[saved[0], saved[1]] = saved[2]
    return scores


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
    # rank = number of candidates scoring >= the target (itself included): ties count against it.
    filled = target_scores.nan_to_num(torch.inf)
    if width <= 8:  # one pass over the scores per target: cheaper than sorting them
        ranks = torch.stack([(scores >= filled[:, j : j + 1]).sum(dim=1) for j in range(width)], dim=1)
    else:
        below = torch.searchsorted(scores.sort(dim=1).values, filled, side="left")
        ranks = scores.shape[1] - below
    ranks = ranks.to(torch.float64)
    ranks = torch.where(torch.isnan(target_scores), torch.inf, ranks)
    return ranks, n_targets


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
) -> EvalResult:
    """Rank the held-out targets of ``which`` for ``users`` (default: all users with targets).

    ``score_fn`` receives the users and their left-padded history (the model input) and
    returns scores for all items; the history and the padding item are masked before ranking.
    With ``num_negatives`` each target competes only with that many sampled unseen items.
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
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        seqs = input_sequences(history, batch, max_len)
        user_t = torch.from_numpy(batch)
        if device is not None:
            seqs, user_t = seqs.to(device), user_t.to(device)
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
