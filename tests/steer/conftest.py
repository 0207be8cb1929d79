"""A small hand-made world for the steering tests.

Three concepts of 10 items each (``genre=A`` items 1-10, ``genre=B`` 11-20, ``genre=C`` 21-30);
an item's embedding is 2 · e_concept + noise. Each user prefers one concept, their vector is
e_concept + noise and their history, validation and test items come from that concept. The SAE
is random except latents 0, 1, 2, whose encoder and decoder rows are e_A, e_B, e_C: latent 0
fires for A-lovers and its decoder direction pushes A items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from recsae.data.dataset import InteractionDataset, ItemMeta, Ragged, SplitData
from recsae.models.base import DotProductModel
from recsae.sae.config import SaeConfig
from recsae.sae.model import TopKSAE
from recsae.steer.targets import ConceptItems

D, M, K = 8, 32, 4
N_ITEMS, N_USERS = 30, 60
CONCEPTS = ("A", "B", "C")


@dataclass
class World:
    model: DotProductModel
    sae: TopKSAE
    split: SplitData
    items: ConceptItems
    preference: np.ndarray
    """Concept index preferred by each user (row 0 = padding)."""
    interpretation: pd.DataFrame


class _Tables(nn.Module):
    def __init__(self, users: torch.Tensor, items: torch.Tensor) -> None:
        super().__init__()
        self.users = nn.Embedding.from_pretrained(users)
        self.items = nn.Embedding.from_pretrained(items)


def make_world(seed: int = 0) -> World:
    rng = np.random.default_rng(seed)
    basis = np.eye(D, dtype=np.float32)[: len(CONCEPTS)]
    item_concept = np.repeat(np.arange(len(CONCEPTS)), N_ITEMS // len(CONCEPTS))
    items = np.zeros((N_ITEMS + 1, D), dtype=np.float32)
    items[1:] = 2 * basis[item_concept] + 0.5 * rng.standard_normal((N_ITEMS, D)).astype(np.float32)
    preference = np.concatenate([[0], rng.integers(0, len(CONCEPTS), N_USERS)])
    users = np.zeros((N_USERS + 1, D), dtype=np.float32)
    users[1:] = basis[preference[1:]] + 0.3 * rng.standard_normal((N_USERS, D)).astype(np.float32)

    train, valid, test = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for u in range(1, N_USERS + 1):
        own = np.flatnonzero(item_concept == preference[u]) + 1
        picks = rng.choice(own, size=5, replace=False)
        train.append(picks[:3])
        valid.append(picks[3:4])
        test.append(picks[4:5])
    seqs = [np.concatenate([t, v, s]) for t, v, s in zip(train, valid, test, strict=True)]
    user_col = np.concatenate([np.full(len(s), u) for u, s in enumerate(seqs)]).astype(np.int64)
    item_col = np.concatenate(seqs).astype(np.int64)
    meta = ItemMeta(
        title=[""] + [f"item {i}" for i in range(1, N_ITEMS + 1)],
        multi={"genre": [()] + [(CONCEPTS[c],) for c in item_concept]},
        categorical={"kind": [""] + ["even" if i % 2 == 0 else "odd" for i in range(1, N_ITEMS + 1)]},
    )
    ds = InteractionDataset(
        name="steer-world",
        user=user_col,
        item=item_col,
        time=np.arange(len(user_col), dtype=np.float64),
        user_ids=np.array([""] + [str(u) for u in range(1, N_USERS + 1)]),
        item_ids=np.array([""] + [str(i) for i in range(1, N_ITEMS + 1)]),
        item_meta=meta,
    )
    split = SplitData(ds, Ragged.from_lists(train), Ragged.from_lists(valid), Ragged.from_lists(test), "leave-one-out")

    tables = _Tables(torch.from_numpy(users), torch.from_numpy(items))
    model = DotProductModel(
        tables,
        represent=lambda m, u, s: m.users(u),
        item_embeddings=lambda m: m.items.weight,
    )
    sae = TopKSAE(SaeConfig(d_in=D, n_latents=M, k=K), seed=seed)
    with torch.no_grad():
        sae.W_enc[: len(CONCEPTS)] = 3 * torch.from_numpy(basis)
        sae.W_dec[: len(CONCEPTS)] = torch.from_numpy(basis)
    interpretation = pd.DataFrame(
        {
            "latent": [0, 1, 2, 5, 6],
            # the interpretation stage's layout: rule text, its concepts and operator
            "rule": [
                "genre=A in top-5 recs", "last item has genre=B", "≥50% of last 3 items have genre=C",
                "genre=A in top-5 recs AND kind=even in top-5 recs", "kind=odd in top-5 recs",
            ],
            "rule_concepts": [["genre=A"], ["genre=B"], ["genre=C"], ["genre=A", "kind=even"], ["kind=odd"]],
            "op": ["", "", "", "AND", ""],
            "confidence": [0.95, 0.9, 0.85, 0.7, 0.6],
            "interpretable": [True, True, True, False, False],
        }
    )
    return World(model, sae, split, ConceptItems(meta, N_ITEMS), preference, interpretation)


@pytest.fixture
def world() -> World:
    return make_world()
