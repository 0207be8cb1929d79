"""BPR-MF (Rendle et al., 2009): matrix factorisation trained with the BPR pairwise loss.

The representation is the user's embedding; items are scored by dot product with the item
table. Negatives are drawn uniformly from the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from recsae.models.base import GeneralConfig, GeneralRecommender


@dataclass(frozen=True)
class BPRConfig(GeneralConfig):
    """BPR-MF options (see GeneralConfig)."""


class BPR(GeneralRecommender):
    """Matrix factorisation; represent = user embedding."""

    name = "bpr"
    config_class = BPRConfig

    def __init__(self, cfg: BPRConfig, n_users: int, n_items: int) -> None:
        super().__init__(cfg, n_users, n_items)
        self.users = nn.Embedding(n_users + 1, cfg.dim)
        self.items = nn.Embedding(n_items + 1, cfg.dim)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def ego_tables(self) -> tuple[Tensor, Tensor]:
        return self.users.weight, self.items.weight

    def tables(self) -> tuple[Tensor, Tensor]:
        return self.users.weight, self.items.weight
