"""Most-popular baseline: every user gets the items ranked by their training interaction count.

Written as a one-dimensional dot-product model (h = 1, E = counts) so it goes through the same
evaluation code as every other recommender.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from recsae.data.dataset import SplitData, item_popularity
from recsae.models.base import Recommender


class MostPopular(Recommender):
    """Scores item i by its number of training interactions; padding (item 0) scores -1."""

    name: ClassVar[str] = "pop"
    sequential = False
    counts: Tensor
    """(n_items + 1) x 1 training counts, the item table E."""

    def __init__(self, n_items: int) -> None:
        super().__init__()
        counts = torch.zeros(n_items + 1, 1)
        counts[0] = -1.0
        self.register_buffer("counts", counts)

    @classmethod
    def fit(cls, split: SplitData) -> MostPopular:
        """Count each item's occurrences in ``split.train``."""
        model = cls(split.n_items)
        counts = item_popularity(split.train.values, split.n_items).astype(np.float32)
        counts[0] = -1.0  # below every real item, so padding never outranks one
        model.counts.copy_(torch.from_numpy(counts)[:, None])
        return model

    def represent(self, users: Tensor, seqs: Tensor) -> Tensor:
        return torch.ones(users.shape[0], 1, dtype=self.counts.dtype, device=self.counts.device)

    def item_embeddings(self) -> Tensor:
        return self.counts
