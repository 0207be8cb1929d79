"""Ranking metrics from target ranks: one small function per metric, edge cases explicit.

Every function takes ``ranks``: a float tensor (B x T) of 1-based ranks of each user's held-out
targets (``inf`` for padding slots of users with fewer than T targets), and ``n_targets`` (B,)
the number of real targets per user (>= 1). Ranks are pessimistic: a target's rank counts every
candidate scoring at least as high as it (itself included), so ties never flatter a model.
"""

from __future__ import annotations

import torch
from torch import Tensor


def hits(ranks: Tensor, k: int) -> Tensor:
    """Number of targets ranked in the top k, per user."""
    return (ranks <= k).sum(dim=1).to(torch.float64)


def hit_rate(ranks: Tensor, n_targets: Tensor, k: int) -> Tensor:
    """1 if any target is in the top k, else 0."""
    return (hits(ranks, k) > 0).to(torch.float64)


def recall(ranks: Tensor, n_targets: Tensor, k: int) -> Tensor:
    """Share of the user's targets in the top k (hits / number of targets)."""
    return hits(ranks, k) / n_targets.to(torch.float64)


def ndcg(ranks: Tensor, n_targets: Tensor, k: int) -> Tensor:
    """DCG of the targets in the top k over the ideal DCG of min(n_targets, k) targets."""
    in_top = ranks <= k
    gains = torch.where(in_top, 1.0 / torch.log2(ranks.clamp(min=1).to(torch.float64) + 1.0), 0.0)
    dcg = gains.sum(dim=1)
    positions = torch.arange(1, k + 1, dtype=torch.float64, device=ranks.device)
    discounts = torch.cumsum(1.0 / torch.log2(positions + 1.0), dim=0)
    ideal = discounts[(n_targets.clamp(max=k) - 1).long()]
    return dcg / ideal


def mrr(ranks: Tensor, n_targets: Tensor, k: int) -> Tensor:
    """Reciprocal rank of the best-ranked target if it is in the top k, else 0."""
    best = ranks.min(dim=1).values.to(torch.float64)
    return torch.where(best <= k, 1.0 / best, 0.0)


METRICS = {"hr": hit_rate, "ndcg": ndcg, "mrr": mrr, "recall": recall}
"""Metric name -> function; results are keyed ``f"{name}@{k}"``."""
