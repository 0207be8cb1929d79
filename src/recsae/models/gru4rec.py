"""GRU4Rec (Hidasi et al., 2016) as a next-item model over user histories.

A GRU over item embeddings; the hidden state at each position, mapped back to the embedding
width, scores the catalogue with the shared item table. Trained with softmax cross-entropy on
every position (``loss='bce'`` for sampled negatives). Sequences are packed, so a state never
depends on the left padding before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recsae.errors import ConfigError
from recsae.models.base import HiddenStates, SequentialConfig, SequentialRecommender


@dataclass(frozen=True)
class GRU4RecConfig(SequentialConfig):
    """GRU4Rec options (plus the shared sequential ones)."""

    n_layers: int = 1
    """Stacked GRU layers."""
    hidden: int = 128
    """GRU state width (projected to ``dim`` before scoring)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_layers < 1 or self.hidden < 1:
            raise ConfigError("n_layers and hidden must be positive")


class GRU4Rec(SequentialRecommender):
    """Recurrent sequential recommendation; represent = projected state at the last position."""

    name = "gru4rec"
    config_class = GRU4RecConfig

    def __init__(self, cfg: GRU4RecConfig, n_users: int, n_items: int) -> None:
        super().__init__(cfg, n_users, n_items)
        self._init_embeddings()
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.dim, cfg.hidden, num_layers=cfg.n_layers, batch_first=True)
        self.proj = nn.Linear(cfg.hidden, cfg.dim)

    def hidden_states(self, users: Tensor, seqs: Tensor) -> HiddenStates:
        seqs = self._clip(seqs)
        length = seqs.shape[1]
        mask = seqs > 0
        lens = mask.sum(1)
        # left-padded -> right-padded (rotate each row) so the GRU starts at the first item
        cols = torch.arange(length, device=seqs.device)
        shift = (length - lens)[:, None]
        right = seqs.gather(1, (cols + shift) % length)
        packed = pack_padded_sequence(
            self.drop(self.items(right)), lens.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)
        states = self.proj(self.drop(out))
        left = states.gather(1, ((cols - shift) % length)[:, :, None].expand_as(states))
        return HiddenStates(left, mask)
