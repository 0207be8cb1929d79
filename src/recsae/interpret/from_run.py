"""Inputs of ``interpret`` from a trained model, its SAE and activation store (``recsae run``).

Every row of the store is interpreted. Per row: the SAE's top-k activations (sparse), the
random-init SAE's (the splice stage's baseline, ``untrained_baseline``), the representation
itself (raw neurons and coherence), and the model's top-10 recommendations for the prefix with the prefix's items masked, as in ranking.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recsae.data.dataset import Ragged, SplitData, item_popularity
from recsae.interpret.features import RowContext


def sparse_codes(sae: Any, reps: np.ndarray, batch_size: int = 4096) -> sp.csr_matrix:
    """rows x m CSR of an SAE's top-k activations (exact zeros dropped)."""
    device = sae.device
    k = sae.cfg.k
    vals = np.zeros((len(reps), k), dtype=np.float32)
    idx = np.zeros((len(reps), k), dtype=np.int64)
    with torch.no_grad():
        for a in range(0, len(reps), batch_size):
            out = sae.encode(torch.from_numpy(np.array(reps[a : a + batch_size], dtype=np.float32)).to(device))
            vals[a : a + batch_size] = out.top_acts.float().cpu().numpy()
            idx[a : a + batch_size] = out.top_indices.cpu().numpy()
    acts = sp.csr_matrix((vals.ravel(), idx.ravel(), np.arange(len(reps) + 1) * k), shape=(len(reps), sae.cfg.m))
    acts.sum_duplicates()
    acts.eliminate_zeros()
    return acts


def top_recommendations(
    model: Any, reps: np.ndarray, users: np.ndarray, positions: np.ndarray, histories: Ragged,
    k: int = 10, batch_size: int = 2048,
) -> np.ndarray:
    """(rows, k) the model's top-k items for each row's representation, prefix items masked."""
    device = next(iter(model.parameters())).device if any(True for _ in model.parameters()) else torch.device("cpu")
    out = np.zeros((len(reps), k), dtype=np.int64)
    with torch.no_grad():
        for a in range(0, len(reps), batch_size):
            h = torch.from_numpy(np.ascontiguousarray(reps[a : a + batch_size])).to(device)
            scores = model.score(h).float()
            scores[:, 0] = -torch.inf
            row, _, items = histories.flat_pairs(users[a : a + batch_size], positions[a : a + batch_size])
            scores[torch.from_numpy(row).to(device), torch.from_numpy(items).to(device)] = -torch.inf
            out[a : a + batch_size] = torch.topk(scores, k, dim=1).indices.cpu().numpy()
    return out


def run_inputs(
    model: Any, sae: Any, store: Any, split: SplitData, seed: int = 0, batch_size: int = 4096,
    random_sae: Any = None,
) -> dict[str, Any]:
    """Keyword arguments of ``recsae.interpret.interpret`` for a run's model, SAE and store.
    ``random_sae``: the untrained baseline (default: the splice stage's recipe on these rows)."""
    from recsae.sae.splice import untrained_baseline

    index = store.index
    users = index["user"].to_numpy(dtype=np.int64)
    positions = index["position"].to_numpy(dtype=np.int64)
    histories = split.history("test")
    reps = np.array(store.load(), dtype=np.float32)  # a writable copy (stores are memory-mapped)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            item_emb = model.item_embeddings().detach().float().cpu().numpy()
        recs = top_recommendations(model, reps, users, positions, histories)
    finally:
        model.train(was_training)
    if random_sae is None:
        random_sae = untrained_baseline(sae.cfg, reps, seed, sae.device)
    counts = item_popularity(split.train.values, split.n_items)
    return {
        "ctx": RowContext(users, positions, histories, recs),
        "item_meta": split.dataset.item_meta,
        "item_counts": counts,
        "sae_acts": sparse_codes(sae, reps, batch_size),
        "neuron_acts": reps,
        "random_acts": sparse_codes(random_sae, reps, batch_size),
        "reps": reps,
        "sae_decoder": sae.W_dec.detach().float().cpu().numpy(),
        "random_decoder": random_sae.W_dec.detach().float().cpu().numpy(),
        "sae_decoder_bias": sae.b_dec.detach().float().cpu().numpy(),
        "random_decoder_bias": random_sae.b_dec.detach().float().cpu().numpy(),
        "item_emb": item_emb,
    }
