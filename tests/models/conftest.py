"""Tiny hand-built splits for the model tests (no dataset loader needed)."""

from __future__ import annotations

import numpy as np
import pytest

from recsae.data.dataset import InteractionDataset, ItemMeta, Ragged, SplitData


def make_split(n_users: int = 40, n_items: int = 30, length: int = 12, seed: int = 0) -> SplitData:
    """Users walk the catalogue in steps of 1 from a random start (a learnable next-item rule);
    leave-one-out: last item test, second-to-last valid, varying history lengths."""
    rng = np.random.default_rng(seed)
    rows: list[list[int]] = [[]]
    for u in range(1, n_users + 1):
        n = int(rng.integers(4, length + 1)) if u % 3 else length
        start = int(rng.integers(0, n_items))
        rows.append([(start + t) % n_items + 1 for t in range(n)])
    seqs = Ragged.from_lists([np.array(r, dtype=np.int64) for r in rows])
    user = seqs.row_ids()
    ds = InteractionDataset(
        name="tiny",
        user=user,
        item=seqs.values,
        time=np.arange(len(user), dtype=np.float64),
        user_ids=np.array([""] + [f"u{u}" for u in range(1, n_users + 1)]),
        item_ids=np.array([""] + [f"i{i}" for i in range(1, n_items + 1)]),
        item_meta=ItemMeta(title=[""] + [f"item {i}" for i in range(1, n_items + 1)]),
    )
    train = Ragged.from_lists([r[:-2] for r in rows])
    valid = Ragged.from_lists([r[-2:-1] for r in rows])
    test = Ragged.from_lists([r[-1:] for r in rows])
    return SplitData(ds, train, valid, test, "leave-one-out")


@pytest.fixture
def split() -> SplitData:
    return make_split()
