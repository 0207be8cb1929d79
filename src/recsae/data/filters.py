"""Interaction filters: rating threshold (implicit positives) and iterative k-core.

Every filter re-indexes users and items to 1..n (dropping those left without interactions,
keeping the relative order of ids and the row-alignment of metadata) and records itself in
``ds.info['filters']`` and ``ds.info['counts']``.
"""

from __future__ import annotations

import numpy as np

from recsae.data.dataset import InteractionDataset
from recsae.errors import ConfigError, DataError


def counts(ds: InteractionDataset) -> dict[str, int]:
    """Interactions, users and items of a dataset (as recorded in ``info['counts']``)."""
    return {"interactions": ds.n_interactions, "users": ds.n_users, "items": ds.n_items}


def subset(ds: InteractionDataset, keep: np.ndarray, step: str) -> InteractionDataset:
    """The interactions where ``keep`` is true, re-indexed; ``step`` names the filter in ``info``."""
    keep = np.asarray(keep, dtype=bool)
    if not keep.any():
        raise DataError(
            f"no interactions left after {step} (from {ds.n_interactions:,}); loosen the filter "
            "(e.g. a lower --min-rating or --k-core)",
            path=ds.info.get("path"),  # type: ignore[arg-type]
        )
    users = ds.user[keep]
    items = ds.item[keep]
    used_users = np.unique(users)
    used_items = np.unique(items)
    user_map = np.zeros(ds.n_users + 1, dtype=np.int64)
    user_map[used_users] = np.arange(1, len(used_users) + 1)
    item_map = np.zeros(ds.n_items + 1, dtype=np.int64)
    item_map[used_items] = np.arange(1, len(used_items) + 1)
    user_rows = np.concatenate([[0], used_users])
    item_rows = np.concatenate([[0], used_items])

    info = dict(ds.info)
    info["filters"] = [*ds.info.get("filters", []), step]  # type: ignore[misc]
    out = InteractionDataset(
        name=ds.name,
        user=user_map[users],
        item=item_map[items],
        time=ds.time[keep],
        user_ids=ds.user_ids[user_rows],
        item_ids=ds.item_ids[item_rows],
        item_meta=ds.item_meta.select(item_rows),
        rating=None if ds.rating is None else ds.rating[keep],
        user_meta={k: [v[r] for r in user_rows.tolist()] for k, v in ds.user_meta.items()},
        info=info,
        row_split=None if ds.row_split is None else ds.row_split[keep],
    )
    info["counts"] = {**ds.info.get("counts", {}), step: counts(out)}  # type: ignore[dict-item]
    return out


def min_rating(ds: InteractionDataset, threshold: float) -> InteractionDataset:
    """Keep interactions with rating >= ``threshold`` (implicit positives)."""
    if ds.rating is None:
        raise ConfigError(
            f"dataset '{ds.name}' has no ratings, so --min-rating {threshold:g} cannot apply; omit it"
        )
    return subset(ds, ds.rating >= threshold, f"rating>={threshold:g}")


def k_core(ds: InteractionDataset, k: int) -> InteractionDataset:
    """Iteratively drop users and items with fewer than ``k`` interactions until none is left.

    ``k <= 1`` is a no-op (every present user and item has at least one interaction).
    """
    if k < 0:
        raise ConfigError(f"--k-core must be >= 0, got {k}")
    if k <= 1:
        return ds
    keep = np.ones(ds.n_interactions, dtype=bool)
    while True:
        user_counts = np.bincount(ds.user[keep], minlength=ds.n_users + 1)
        item_counts = np.bincount(ds.item[keep], minlength=ds.n_items + 1)
        new = keep & (user_counts[ds.user] >= k) & (item_counts[ds.item] >= k)
        if new.sum() == keep.sum():
            break
        keep = new
    return subset(ds, keep, f"{k}-core")

