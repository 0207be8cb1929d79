"""The one interface every recommender in recsae implements: the probe contract (METHOD.md §1).

A recommender ranks items by ``score(h) = h @ E.T`` where ``h`` (B x d) is the representation it
feeds into its prediction layer and ``E`` the item table. recsae's SAE reads ``h``, splices a
reconstruction in its place, and edits it; so ``score`` must depend on ``h`` alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn


class HiddenStates(NamedTuple):
    """All-position states of a sequential model."""

    states: Tensor
    """B x L x d, the representation at every position (position t = prefix ending at t)."""
    mask: Tensor
    """B x L bool, True at valid (non-padding) positions."""


class Recommender(nn.Module, ABC):
    """A dot-product recommender exposing its representation.

    Inputs are always ``users`` (B,) internal user ids and ``seqs`` (B x L) left-padded item
    histories (0 = padding, latest item last). General models ignore ``seqs``; sequential models
    ignore ``users``.
    """

    name: ClassVar[str] = "custom"
    sequential: ClassVar[bool] = False

    @abstractmethod
    def represent(self, users: Tensor, seqs: Tensor) -> Tensor:
        """The representation h (B x d) fed into the prediction layer."""

    @abstractmethod
    def item_embeddings(self) -> Tensor:
        """The item table E ((n_items + 1) x d); row 0 is padding and is never recommended."""

    def score(self, reps: Tensor) -> Tensor:
        """Scores of every item for each representation: B x (n_items + 1)."""
        return reps @ self.item_embeddings().T

    def hidden_states(self, users: Tensor, seqs: Tensor) -> HiddenStates:
        """States at every position; general models have one position (the user vector)."""
        h = self.represent(users, seqs)
        return HiddenStates(h[:, None, :], torch.ones(h.shape[0], 1, dtype=torch.bool, device=h.device))

    @property
    def dim(self) -> int:
        return int(self.item_embeddings().shape[1])


class DotProductModel(Recommender):
    """Wrap any PyTorch dot-product model in a few lines (the probe contract for your own model).

    Example::

        wrapped = DotProductModel(
            module=my_model,
            represent=lambda m, users, seqs: m.user_tower(users),
            item_embeddings=lambda m: m.item_tower.weight,
        )
    """

    name: ClassVar[str] = "custom"

    def __init__(self, module: nn.Module, represent, item_embeddings, sequential: bool = False) -> None:
        super().__init__()
        self.module = module
        self._represent = represent
        self._item_embeddings = item_embeddings
        self.is_sequential = sequential

    def represent(self, users: Tensor, seqs: Tensor) -> Tensor:
        return self._represent(self.module, users, seqs)

    def item_embeddings(self) -> Tensor:
        return self._item_embeddings(self.module)
