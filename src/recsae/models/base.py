"""The one interface every recommender in recsae implements: the probe contract (docs/method.md §1.1).

A recommender ranks items by ``score(h) = h @ E.T`` where ``h`` (B x d) is the representation it
feeds into its prediction layer and ``E`` the item table. recsae's SAE reads ``h``, splices a
reconstruction in its place, and edits it; so ``score`` must depend on ``h`` alone.

A general model may also say how its user vector follows from a set of items:
``history_states(users, seqs)`` (the shape of ``hidden_states``), the vector at every prefix of
``seqs``; the harvest then takes a row at every prefix of a history, as for sequential models.

Below the contract sit the two training families of the built-in models: sequential models
(next-item prediction at every position of a left-padded sequence) and general models (BPR over
user-item pairs). The trainer only talks to :class:`TrainableRecommender`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsae.data.dataset import Ragged, SplitData, input_sequences
from recsae.errors import ConfigError


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
    sequential: bool = False
    """True for models whose representation is the state at the last position of ``seqs``;
    a plain attribute so that a wrapper (``DotProductModel``) can set it per instance."""

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


RepresentFn = Callable[[nn.Module, Tensor, Tensor], Tensor]
ItemsFn = Callable[[nn.Module], Tensor]
StatesFn = Callable[[nn.Module, Tensor, Tensor], HiddenStates]


class DotProductModel(Recommender):
    """Wrap any PyTorch dot-product model in a few lines (the probe contract for your own model).

    A general (user-tower) model::

        wrapped = DotProductModel(
            module=my_model,
            represent=lambda m, users, seqs: m.user_tower(users),
            item_embeddings=lambda m: m.item_tower.weight,
        )

    A sequential model must also say where its all-position states are; ``represent`` is then
    the state at the last position (inputs are left-padded, so that is the last column)::

        wrapped = DotProductModel(
            module=my_gru_model,
            represent=lambda m, users, seqs: m.encode(seqs)[:, -1],
            item_embeddings=lambda m: m.items.weight,
            sequential=True,
            hidden_states=lambda m, users, seqs: HiddenStates(m.encode(seqs), seqs > 0),
        )

    The item table must have the padding row 0, and the model must score ``h @ E.T``.
    """

    name: ClassVar[str] = "custom"

    def __init__(
        self,
        module: nn.Module,
        represent: RepresentFn,
        item_embeddings: ItemsFn,
        sequential: bool = False,
        hidden_states: StatesFn | None = None,
    ) -> None:
        super().__init__()
        if sequential and hidden_states is None:
            raise ConfigError("a sequential DotProductModel needs hidden_states= (all-position states and mask)")
        self.module = module
        self._represent = represent
        self._item_embeddings = item_embeddings
        self._hidden_states = hidden_states
        self.sequential = sequential

    def represent(self, users: Tensor, seqs: Tensor) -> Tensor:
        return self._represent(self.module, users, seqs)

    def item_embeddings(self) -> Tensor:
        return self._item_embeddings(self.module)

    def hidden_states(self, users: Tensor, seqs: Tensor) -> HiddenStates:
        if self._hidden_states is None:
            return super().hidden_states(users, seqs)
        return self._hidden_states(self.module, users, seqs)


class TrainableRecommender(Recommender):
    """A built-in model: built from its config and the catalogue size, trained by the trainer.

    The trainer asks for ``training_tensors`` once (all tensors share the first dimension), then
    for every shuffled row batch calls ``loss(batch, generator)``; ``generator`` is a CPU torch
    generator for any sampling, so training is reproducible and resumable.
    """

    config_class: ClassVar[type]
    default_batch_size: ClassVar[int] = 1024

    def __init__(self, cfg: Any, n_users: int, n_items: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_users = n_users
        self.n_items = n_items

    @classmethod
    def build(cls, cfg: Any, n_users: int, n_items: int, train: Ragged) -> TrainableRecommender:
        """The untrained model for a training set (graph models read ``train``)."""
        return cls(cfg, n_users, n_items)

    @classmethod
    def from_tensors(cls, cfg: Any, n_users: int, n_items: int, tensors: dict[str, Tensor]) -> TrainableRecommender:
        """Rebuild a saved model from its config and its state dict."""
        model = cls(cfg, n_users, n_items)
        model.load_state_dict(tensors)
        return model

    @abstractmethod
    def training_tensors(self, split: SplitData) -> tuple[Tensor, ...]:
        """The training examples as tensors sharing the first dimension (built once)."""

    def batches(self, tensors: tuple[Tensor, ...], batch_size: int, generator: torch.Generator) -> list[Tensor]:
        """Row indices of each batch of one epoch: a random permutation cut into batches."""
        return list(torch.randperm(len(tensors[0]), generator=generator).split(batch_size))

    @abstractmethod
    def loss(self, batch: tuple[Tensor, ...], generator: torch.Generator) -> Tensor:
        """Mean training loss of a batch of rows of ``training_tensors`` (on the model's device)."""


@dataclass(frozen=True)
class SequentialConfig:
    """Options shared by the sequential models."""

    dim: int = 64
    """Width of item embeddings and hidden states."""
    max_len: int = 200
    """Longest history the model reads; longer ones keep their latest items."""
    dropout: float = 0.2
    """Dropout on embeddings and inside the encoder while training."""
    loss: str = "ce"
    """'ce' (softmax cross-entropy over the whole catalogue) or 'bce' (sampled negatives)."""
    n_negatives: int = 1
    """Uniformly sampled negatives per position for the 'bce' loss."""
    label_smoothing: float = 0.0
    """Share of the 'ce' target spread evenly over the catalogue: a regulariser for small data."""

    def __post_init__(self) -> None:
        if self.loss not in ("ce", "bce"):
            raise ConfigError(f"loss must be 'ce' or 'bce', got {self.loss!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing and self.loss != "ce":
            raise ConfigError("label_smoothing applies to the 'ce' loss only")
        if self.dim < 1 or self.max_len < 1 or self.n_negatives < 1:
            raise ConfigError("dim, max_len and n_negatives must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


class SequentialRecommender(TrainableRecommender):
    """Next-item models: subclasses implement ``hidden_states``; the state at the last column
    (inputs are left-padded) is the representation. Trained on every position of the shifted
    training sequence."""

    sequential = True
    default_batch_size = 128

    def __init__(self, cfg: SequentialConfig, n_users: int, n_items: int) -> None:
        super().__init__(cfg, n_users, n_items)
        self.items = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
        """The item table, read as input and scored against as output (row 0: padding)."""

    def _init_embeddings(self, *others: nn.Embedding) -> None:
        """Draw the item table and ``others`` (created after it) from N(0, 1/dim); the padding row
        is zero. Subclasses call this once their embedding tables exist."""
        for table in (self.items, *others):
            nn.init.normal_(table.weight, std=self.cfg.dim**-0.5)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def item_embeddings(self) -> Tensor:
        return self.items.weight

    def represent(self, users: Tensor, seqs: Tensor) -> Tensor:
        return self.hidden_states(users, seqs).states[:, -1]

    def _clip(self, seqs: Tensor) -> Tensor:
        """Keep the last ``max_len`` columns (inputs are left-padded)."""
        return seqs[:, -self.cfg.max_len :]

    def training_tensors(self, split: SplitData) -> tuple[Tensor, ...]:
        users = np.flatnonzero(split.train.lengths() >= 2)
        padded = input_sequences(split.train, users, self.cfg.max_len + 1)
        inputs, targets = padded[:, :-1], padded[:, 1:].clone()
        targets[inputs == 0] = 0
        return torch.from_numpy(users), inputs, targets

    def batches(self, tensors: tuple[Tensor, ...], batch_size: int, generator: torch.Generator) -> list[Tensor]:
        """Batches of similar lengths in random order: less padding to run through the encoder.
        Rows are sorted by length with random tie-breaking, cut, and the batches shuffled."""
        lengths = (tensors[1] > 0).sum(1)
        noise = torch.rand(len(lengths), generator=generator)
        order = torch.argsort(lengths.double() + noise.double())
        chunks = order.split(batch_size)
        return [chunks[i] for i in torch.randperm(len(chunks), generator=generator).tolist()]

    def loss(self, batch: tuple[Tensor, ...], generator: torch.Generator) -> Tensor:
        users, inputs, targets = batch
        first = int((inputs > 0).any(0).int().argmax())  # drop columns that are padding in every row
        inputs, targets = inputs[:, first:], targets[:, first:]
        hs = self.hidden_states(users, inputs)
        valid = targets > 0
        h, pos = hs.states[valid], targets[valid]
        items = self.item_embeddings()
        if self.cfg.loss == "ce":
            # the padding row 0 is left out of the softmax
            return F.cross_entropy(h @ items[1:].T, pos - 1, label_smoothing=self.cfg.label_smoothing)
        neg = torch.randint(1, self.n_items + 1, (len(pos), self.cfg.n_negatives), generator=generator)
        neg = neg.to(pos.device)
        pos_logit = (h * items[pos]).sum(-1)
        neg_logit = torch.einsum("nd,nkd->nk", h, items[neg])
        return -(F.logsigmoid(pos_logit).mean() + F.logsigmoid(-neg_logit).sum(-1).mean())


@dataclass(frozen=True)
class GeneralConfig:
    """Options shared by the general (user-embedding) models."""

    dim: int = 64
    """Width of user and item embeddings."""
    reg: float = 1e-4
    """L2 penalty on the embeddings of each batch's users, positives and negatives."""

    def __post_init__(self) -> None:
        if self.dim < 1 or self.reg < 0:
            raise ConfigError("dim must be positive and reg non-negative")


class GeneralRecommender(TrainableRecommender):
    """User-vector models trained with BPR on (user, item) pairs and uniform negatives.
    Subclasses implement ``tables`` (final user and item tables) and ``ego_tables`` (the raw
    parameters that the L2 penalty acts on)."""

    sequential = False
    default_batch_size = 4096

    @abstractmethod
    def tables(self) -> tuple[Tensor, Tensor]:
        """Final user ((n_users + 1) x d) and item ((n_items + 1) x d) tables."""

    @abstractmethod
    def ego_tables(self) -> tuple[Tensor, Tensor]:
        """The user and item parameters before any propagation."""

    def represent(self, users: Tensor, seqs: Tensor) -> Tensor:
        return self.tables()[0][users]

    def item_embeddings(self) -> Tensor:
        return self.tables()[1]

    def training_tensors(self, split: SplitData) -> tuple[Tensor, ...]:
        return torch.from_numpy(split.train.row_ids()), torch.from_numpy(split.train.values.copy())

    def loss(self, batch: tuple[Tensor, ...], generator: torch.Generator) -> Tensor:
        users, pos = batch
        neg = torch.randint(1, self.n_items + 1, pos.shape, generator=generator).to(pos.device)
        u_tab, i_tab = self.tables()
        u, p, n = u_tab[users], i_tab[pos], i_tab[neg]
        bpr = -F.logsigmoid((u * p).sum(-1) - (u * n).sum(-1)).mean()
        u0, i0 = self.ego_tables()
        l2 = (u0[users].pow(2).sum() + i0[pos].pow(2).sum() + i0[neg].pow(2).sum()) / (2 * len(users))
        return bpr + self.cfg.reg * l2
