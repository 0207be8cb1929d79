"""A tiny sequential model and a hand-built split (the ``tiny_model`` and ``tiny_split`` fixtures of
``tests/conftest.py``: the probe tests and the SAE stage's)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from recsae.data.dataset import InteractionDataset, ItemMeta, Ragged, SplitData
from recsae.models.base import HiddenStates, Recommender

N_ITEMS = 12


class AvgSeqModel(Recommender):
    """State at position t = W · mean(item embeddings of the window up to t), with dropout so
    that a forgotten eval() would show. No position dependence: the state at t equals
    ``represent`` of the window prefix ending at t."""

    name = "avg-seq"
    sequential = True

    def __init__(self, n_items: int = N_ITEMS, d: int = 8, max_len: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.max_len = max_len
        self.items = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.proj = nn.Linear(d, d)
        self.drop = nn.Dropout(0.5)

    def hidden_states(self, users: Tensor, seqs: Tensor) -> HiddenStates:
        seqs = seqs[:, -self.max_len :]
        mask = seqs > 0
        e = self.drop(self.items(seqs))
        csum = e.cumsum(1)
        count = mask.cumsum(1).clamp_min(1).unsqueeze(-1)
        return HiddenStates(self.proj(csum / count), mask)

    def represent(self, users: Tensor, seqs: Tensor) -> Tensor:
        return self.hidden_states(users, seqs).states[:, -1]

    def item_embeddings(self) -> Tensor:
        return self.items.weight


def make_split(train: list[list[int]], valid: list[list[int]], test: list[list[int]], n_items: int = N_ITEMS) -> SplitData:
    """A SplitData from per-user lists (user 0 is the empty padding row, added here)."""
    n_users = len(train)
    full = [t + v + s for t, v, s in zip(train, valid, test, strict=True)]
    user = np.concatenate([np.full(len(f), u + 1) for u, f in enumerate(full)]).astype(np.int64)
    item = np.concatenate([np.asarray(f, dtype=np.int64) for f in full])
    ds = InteractionDataset(
        name="tiny",
        user=user,
        item=item,
        time=np.arange(len(user), dtype=np.float64),
        user_ids=np.array([""] + [f"u{u}" for u in range(1, n_users + 1)]),
        item_ids=np.array([""] + [f"i{i}" for i in range(1, n_items + 1)]),
        item_meta=ItemMeta(title=[""] + [f"item {i}" for i in range(1, n_items + 1)]),
        info={"fingerprint": "tiny-fp"},
    )
    return SplitData(
        ds,
        Ragged.from_lists([[], *train]),
        Ragged.from_lists([[], *valid]),
        Ragged.from_lists([[], *test]),
        "leave-one-out",
    )


def tiny_split() -> SplitData:
    # user 1: short; user 2: longer than max_len (4); user 3: one train item;
    # user 4: no test target; user 5: everything empty (no rows at all)
    return make_split(
        train=[[1, 2], [3, 4, 5, 6, 7], [8], [9, 10], []],
        valid=[[3], [8], [9], [11], []],
        test=[[4], [9], [10], [], []],
    )
