"""LightGCN (He et al., 2020): embeddings smoothed over the normalised user-item graph.

``E^(k+1) = D^-1/2 A D^-1/2 E^(k)`` over the bipartite training graph; the final tables are the
mean of layers 0..K. Trained with BPR on the propagated tables and L2 on the raw ones. The
representation is the propagated user vector. It is a sum over the user's items, so the user's
vector after any prefix of its history follows from the item layers (``history_states``). The training edges are saved with the model, so a
checkpoint is self-contained; the sparse matrix is rebuilt per device with torch sparse ops.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from recsae.data.dataset import Ragged
from recsae.errors import ConfigError
from recsae.models.base import GeneralConfig, GeneralRecommender, HiddenStates


@dataclass(frozen=True)
class LightGCNConfig(GeneralConfig):
    """LightGCN options (plus the shared general ones)."""

    n_layers: int = 3
    """Propagation layers K."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_layers < 0:
            raise ConfigError(f"n_layers must be >= 0, got {self.n_layers}")


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse A: the gradient is ``A @ grad``, which avoids the slow
    transpose torch would build for a sparse backward (10x faster on CPU)."""

    @staticmethod
    def forward(ctx: Any, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:
        return None, ctx.adj @ grad


class LightGCN(GeneralRecommender):
    """Graph collaborative filtering; represent = propagated user vector."""

    name = "lightgcn"
    config_class = LightGCNConfig
    edge_users: Tensor
    edge_items: Tensor

    def __init__(self, cfg: LightGCNConfig, n_users: int, n_items: int, edges: tuple[Tensor, Tensor] | None = None) -> None:
        super().__init__(cfg, n_users, n_items)
        self.users = nn.Embedding(n_users + 1, cfg.dim)
        self.items = nn.Embedding(n_items + 1, cfg.dim)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)
        empty = torch.zeros(0, dtype=torch.int64)
        eu, ei = edges if edges is not None else (empty, empty)
        self.register_buffer("edge_users", eu.clone())
        self.register_buffer("edge_items", ei.clone())
        self._adj: Tensor | None = None

    @classmethod
    def build(cls, cfg: LightGCNConfig, n_users: int, n_items: int, train: Ragged) -> LightGCN:
        edges = (torch.from_numpy(train.row_ids()), torch.from_numpy(train.values.copy()))
        return cls(cfg, n_users, n_items, edges)

    @classmethod
    def from_tensors(cls, cfg: LightGCNConfig, n_users: int, n_items: int, tensors: dict[str, Tensor]) -> LightGCN:
        model = cls(cfg, n_users, n_items, (tensors["edge_users"], tensors["edge_items"]))
        model.load_state_dict(tensors)
        return model

    def adjacency(self) -> Tensor:
        """The symmetric-normalised (users + items) square adjacency as a sparse CSR tensor."""
        if self._adj is None or self._adj.device != self.edge_users.device:
            n_u = self.n_users + 1
            n = n_u + self.n_items + 1
            rows = torch.cat([self.edge_users, self.edge_items + n_u])
            cols = torch.cat([self.edge_items + n_u, self.edge_users])
            deg = torch.bincount(rows, minlength=n).to(self.users.weight.dtype)
            inv = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
            vals = inv[rows] * inv[cols]
            coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n), check_invariants=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "CSR support is in beta"
                self._adj = coo.coalesce().to_sparse_csr()
        return self._adj

    def ego_tables(self) -> tuple[Tensor, Tensor]:
        return self.users.weight, self.items.weight

    def history_states(self, users: Tensor, seqs: Tensor) -> HiddenStates:
        """The propagated user vector with the user's edges replaced by the first t items of
        ``seqs``, at every position t: layer k + 1 of a user is the sum over its items i of
        ``x_i^(k) / sqrt(t * deg_i)``, the other nodes' layers kept as propagated on the training
        graph, and layer 0 is the user's own embedding. On the user's training items it is
        exactly ``represent``."""
        n_u = self.n_users + 1
        x = torch.cat([self.users.weight, self.items.weight])
        adj = self.adjacency()
        deg = torch.bincount(self.edge_items, minlength=self.n_items + 1).to(x.dtype)
        inv = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
        carried = torch.zeros_like(self.items.weight)  # sum of the item layers 0..K-1
        for _ in range(self.cfg.n_layers):
            carried = carried + x[n_u:]
            x = adj @ x
        mask = seqs > 0
        terms = (carried * inv[:, None])[seqs]  # B x L x d, zero at padding (degree 0)
        seen = mask.cumsum(1).clamp(min=1).to(x.dtype)
        states = self.users.weight[users][:, None, :] + terms.cumsum(1) / seen.sqrt()[..., None]
        return HiddenStates(states / (self.cfg.n_layers + 1), mask)

    def tables(self) -> tuple[Tensor, Tensor]:
        x = torch.cat([self.users.weight, self.items.weight])
        total = x
        adj = self.adjacency()
        for _ in range(self.cfg.n_layers):
            x = _SymmetricSpMM.apply(adj, x)
            total = total + x
        total = total / (self.cfg.n_layers + 1)
        return total[: self.n_users + 1], total[self.n_users + 1 :]
