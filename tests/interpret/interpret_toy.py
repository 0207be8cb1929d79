"""Small hand-made interpretation data where the right rule per latent is known."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from recsae.data.dataset import ItemMeta, Ragged
from recsae.interpret import RowContext

GENRES = ("Horror", "Comedy", "Drama", "Western")


class Toy(NamedTuple):
    meta: ItemMeta
    counts: np.ndarray
    ctx: RowContext
    acts: sp.csr_matrix
    """Latent 0: fires iff the prefix's last item is Horror; latent 1: random noise;
    latent 2: fires iff at least 60 % of the recommendations are Comedy; latent 3: dead."""
    reps: np.ndarray


def make_toy(n_users: int = 300, seed: int = 0) -> Toy:
    rng = np.random.default_rng(seed)
    n_items = 40
    genre = [()] + [(GENRES[(i - 1) // 10],) for i in range(1, n_items + 1)]
    titles = [""] + [f"{g[0]} film {i}" for i, g in enumerate(genre[1:], start=1)]
    meta = ItemMeta(title=titles, multi={"genre": genre}, numeric={"year": np.r_[np.nan, 1950 + np.arange(n_items)]})
    seqs = [np.zeros(0, dtype=np.int64)] + [
        rng.integers(1, n_items + 1, size=int(rng.integers(8, 25))) for _ in range(n_users)
    ]
    hist = Ragged.from_lists(seqs)
    lengths = hist.lengths()
    users = np.repeat(np.arange(len(lengths)), lengths)
    positions = np.concatenate([np.arange(1, n + 1) for n in lengths]).astype(np.int64)
    last = hist.values[hist.indptr[users] + positions - 1]
    comedy_heavy = rng.random(len(users)) < 0.3
    recs = rng.integers(1, n_items + 1, size=(len(users), 10))
    recs[comedy_heavy, :7] = rng.integers(11, 21, size=(int(comedy_heavy.sum()), 7))
    recs[~comedy_heavy, :7] = np.where(
        rng.random((int((~comedy_heavy).sum()), 7)) < 0.5,
        rng.integers(1, 11, size=(int((~comedy_heavy).sum()), 7)),
        rng.integers(21, 41, size=(int((~comedy_heavy).sum()), 7)),
    )
    is_comedy_recs = ((recs >= 11) & (recs <= 20)).mean(axis=1) >= 0.6
    acts = np.zeros((len(users), 4), dtype=np.float32)
    acts[:, 0] = np.where(last <= 10, 1.0 + rng.random(len(users)), 0.0)
    acts[:, 1] = np.where(rng.random(len(users)) < 0.2, rng.random(len(users)) + 0.1, 0.0)
    acts[:, 2] = np.where(is_comedy_recs, 0.5 + rng.random(len(users)), 0.0)
    reps = rng.normal(size=(len(users), 6)).astype(np.float32)
    counts = np.bincount(hist.values, minlength=n_items + 1)
    return Toy(meta, counts, RowContext(users, positions, hist, recs), sp.csr_matrix(acts), reps)
