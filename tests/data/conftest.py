"""Fixtures for the data tests: a builder of tiny datasets from internal ids."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from recsae.data.dataset import InteractionDataset, ItemMeta


def _tiny(
    user: list[int], item: list[int], time: list[float] | None = None, rating: list[float] | None = None
) -> InteractionDataset:
    n_users, n_items = max(user), max(item)
    return InteractionDataset(
        name="tiny",
        user=np.asarray(user, dtype=np.int64),
        item=np.asarray(item, dtype=np.int64),
        time=np.asarray(time if time is not None else range(len(user)), dtype=np.float64),
        user_ids=np.array([""] + [f"u{u}" for u in range(1, n_users + 1)]),
        item_ids=np.array([""] + [f"i{i}" for i in range(1, n_items + 1)]),
        item_meta=ItemMeta(
            title=[""] + [f"item {i}" for i in range(1, n_items + 1)],
            multi={"genre": [(), *[(f"g{i % 2}",) for i in range(1, n_items + 1)]]},
            numeric={"year": np.arange(n_items + 1, dtype=np.float64)},
        ),
        rating=None if rating is None else np.asarray(rating, dtype=np.float64),
    )


@pytest.fixture
def tiny() -> Callable[..., InteractionDataset]:
    """``tiny(user, item, time=None, rating=None)``: a dataset from internal ids sorted by user."""
    return _tiny
