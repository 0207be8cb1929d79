"""MostPopular ranks items by their training counts, through the Recommender interface."""

from __future__ import annotations

import numpy as np
import torch

from recsae.data.dataset import InteractionDataset, ItemMeta, Ragged, SplitData
from recsae.models.pop import MostPopular


def _split() -> SplitData:
    # 3 users, 5 items; training counts: item 2 x3, item 4 x2, item 1 x1, items 3 and 5 x0.
    train = Ragged.from_lists([[], [2, 4, 1], [2, 4], [2]])
    valid = Ragged.from_lists([[], [5], [5], [5]])  # held out: must not count
    test = Ragged.from_lists([[], [3], [3], [3]])
    ds = InteractionDataset(
        name="toy",
        user=np.zeros(0, dtype=np.int64),
        item=np.zeros(0, dtype=np.int64),
        time=np.zeros(0),
        user_ids=np.array(["", "a", "b", "c"]),
        item_ids=np.array(["", "1", "2", "3", "4", "5"]),
        item_meta=ItemMeta(title=[""] * 6),
    )
    return SplitData(ds, train, valid, test, protocol="leave-one-out")


def test_scores_are_training_counts_and_padding_scores_lowest() -> None:
    model = MostPopular.fit(_split())
    users = torch.tensor([1, 3])
    seqs = torch.zeros(2, 4, dtype=torch.long)
    scores = model.score(model.represent(users, seqs))
    assert scores.shape == (2, 6)
    expected = torch.tensor([-1.0, 1.0, 3.0, 0.0, 2.0, 0.0])
    assert torch.equal(scores[0], expected) and torch.equal(scores[1], expected)
    assert model.dim == 1 and not model.sequential


def test_ranking_follows_training_popularity() -> None:
    model = MostPopular.fit(_split())
    scores = model.score(model.represent(torch.tensor([2]), torch.zeros(1, 1, dtype=torch.long)))
    assert scores[0].argsort(descending=True, stable=True)[:3].tolist() == [2, 4, 1]


def test_fitted_counts_survive_a_state_dict_round_trip() -> None:
    model = MostPopular.fit(_split())
    fresh = MostPopular(n_items=5)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.item_embeddings(), model.item_embeddings())
