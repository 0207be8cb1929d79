"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence.

Pre-norm transformer blocks over item + learned position embeddings, with the input item table
shared as the output table. Trained on every position of the shifted sequence; by default with
full softmax cross-entropy over the catalogue (clearly better than the original one-negative
BCE, which stays available as ``loss='bce'``).

Position ids count from the end of the model's window, and padding keys are masked, so a
sequence's states do not depend on how much left padding it carries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsae.errors import ConfigError
from recsae.models.base import HiddenStates, SequentialConfig, SequentialRecommender


@dataclass(frozen=True)
class SASRecConfig(SequentialConfig):
    """SASRec options (plus the shared sequential ones)."""

    n_blocks: int = 2
    """Number of self-attention blocks."""
    n_heads: int = 1
    """Attention heads per block; must divide ``dim``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_blocks < 1 or self.n_heads < 1 or self.dim % self.n_heads:
            raise ConfigError(f"need n_blocks >= 1 and n_heads dividing dim ({self.dim}), got {self.n_heads}")


class _Block(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        # no dropout on the attention weights: it would force SDPA's slow unfused path on CPU
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, length, d)))
        return x + self.drop(self.ffn(self.norm2(x)))


class SASRec(SequentialRecommender):
    """Self-attentive sequential recommendation; represent = state at the last position."""

    name = "sasrec"
    config_class = SASRecConfig

    def __init__(self, cfg: SASRecConfig, n_users: int, n_items: int) -> None:
        super().__init__(cfg, n_users, n_items)
        self.positions = nn.Embedding(cfg.max_len, cfg.dim)
        self._init_embeddings(self.positions)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_blocks))
        self.norm = nn.LayerNorm(cfg.dim)

    def hidden_states(self, users: Tensor, seqs: Tensor) -> HiddenStates:
        seqs = self._clip(seqs)
        length = seqs.shape[1]
        mask = seqs > 0
        pos = torch.arange(self.cfg.max_len - length, self.cfg.max_len, device=seqs.device)
        x = self.drop(self.items(seqs) + self.positions(pos))
        # causal, padding keys hidden; every position sees itself so no softmax row is empty
        eye = torch.eye(length, dtype=torch.bool, device=seqs.device)
        causal = torch.ones(length, length, dtype=torch.bool, device=seqs.device).tril()
        attn_mask = (causal & mask[:, None, :]) | eye
        for block in self.blocks:
            x = block(x, attn_mask[:, None])
        return HiddenStates(self.norm(x), mask)
