"""Effect metrics of an edit on top-k lists: concept share, item coverage, Gini, long-tail share.

``top`` is always an int array (n_users x k) of recommended item ids; item-aligned arrays have
the padding row 0, like everywhere in recsae.
"""

from __future__ import annotations

import numpy as np


def concept_share(top: np.ndarray, concept_mask: np.ndarray) -> np.ndarray:
    """Per user, the share of the top-k items that carry the concept (``concept_mask[item]``)."""
    if top.shape[0] == 0:
        return np.zeros(0)
    return np.asarray(concept_mask, dtype=bool)[top].mean(axis=1)


def recommendation_counts(top: np.ndarray, n_items: int) -> np.ndarray:
    """How often each item 1..n_items appears in the top-k lists (length n_items)."""
    return np.bincount(top.ravel(), minlength=n_items + 1)[1 : n_items + 1]


def coverage(top: np.ndarray, n_items: int) -> float:
    """Share of the catalogue (items 1..n_items) recommended to at least one user."""
    return float((recommendation_counts(top, n_items) > 0).mean()) if n_items else 0.0


def gini(counts: np.ndarray) -> float:
    """Gini index of non-negative counts over all items (0 = every item equally often,
    (n − 1) / n = one item takes every recommendation)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def long_tail_mask(popularity: np.ndarray, head_fraction: float = 0.2) -> np.ndarray:
    """Items outside the head: the ``head_fraction`` most popular items (ties broken by id) form
    the head. ``popularity`` is item-aligned (row 0 = padding, never in the tail)."""
    pop = np.asarray(popularity, dtype=np.float64)
    n_items = len(pop) - 1
    n_head = round(head_fraction * n_items)
    order = np.argsort(-pop[1:], kind="stable") + 1
    tail = np.ones(len(pop), dtype=bool)
    tail[0] = False
    tail[order[:n_head]] = False
    return tail


def long_tail_share(top: np.ndarray, tail_mask: np.ndarray) -> float:
    """Share of all recommended slots taken by long-tail items."""
    return float(np.asarray(tail_mask, dtype=bool)[top].mean()) if top.size else 0.0
