"""Inputs of ``interpret`` from a trained model, its SAE and activation store (``recsae run``).

Every row of the store is interpreted. Per row: the SAE's top-k activations (sparse), the
random-init SAE's (the splice stage's baseline, ``recsae.sae.model.untrained_baseline``), the representation
itself (raw neurons and coherence), and the model's top-10 recommendations for the prefix with the prefix's items masked, as in ranking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recsae.data.dataset import Ragged, SplitData, item_popularity
from recsae.errors import DataError
from recsae.eval import mask_history
from recsae.interpret.api import ControlModel
from recsae.interpret.features import RowContext
from recsae.probe.harvest import model_device


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
    device = model_device(model)
    out = np.zeros((len(reps), k), dtype=np.int64)
    with torch.no_grad():
        for a in range(0, len(reps), batch_size):
            h = torch.from_numpy(np.ascontiguousarray(reps[a : a + batch_size])).to(device)
            scores = mask_history(model.score(h).float(), histories, users[a : a + batch_size],
                                  lengths=positions[a : a + batch_size])
            out[a : a + batch_size] = torch.topk(scores, k, dim=1).indices.cpu().numpy()
    return out


def model_scores(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The frozen model's item scores of representations (for the causal tests): the model is
    put in eval mode, and every call runs without gradients on the model's device."""
    model.eval()
    device = model_device(model)

    def score(h: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.score(h.to(device))

    return score


def _row_index(store: Any) -> tuple[np.ndarray, np.ndarray]:
    index = store.index
    return index["user"].to_numpy(dtype=np.int64), index["position"].to_numpy(dtype=np.int64)


def control_model_inputs(model: Any, store: Any, sae: Any, split: SplitData, batch_size: int = 4096) -> ControlModel:
    """The untrained-model control's inputs: its SAE's codes, its representations, and its own
    recommendations and scores (``store`` harvested from ``model``, row for row like the run's)."""
    users, positions = _row_index(store)
    histories = split.history("test")
    reps = np.array(store.load(), dtype=np.float32)
    model.eval()
    with torch.no_grad():
        item_emb = model.item_embeddings().detach().float().cpu().numpy()
    recs = top_recommendations(model, reps, users, positions, histories)
    return ControlModel(
        ctx=RowContext(users, positions, histories, recs),
        acts=sparse_codes(sae, reps, batch_size),
        reps=reps,
        decoder=sae.W_dec.detach().float().cpu().numpy(),
        decoder_bias=sae.b_dec.detach().float().cpu().numpy(),
        item_emb=item_emb,
        score_fn=model_scores(model),
    )


def run_inputs(
    model: Any, sae: Any, store: Any, split: SplitData, seed: int = 0, batch_size: int = 4096,
    random_sae: Any = None, random_model: tuple[Any, Any, Any] | None = None, causal: bool = True,
) -> dict[str, Any]:
    """Keyword arguments of ``recsae.interpret.interpret`` for a run's model, SAE and store.
    ``random_sae``: the untrained baseline (default: the splice stage's recipe on these rows);
    ``random_model``: (untrained model, its store, its SAE) for the untrained-model control;
    ``causal``: pass the model's scores, so that every validated unit's faithfulness is tested."""
    from recsae.sae.model import untrained_baseline

    users, positions = _row_index(store)
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
    control = None
    if random_model is not None:
        rm_users, rm_positions = _row_index(random_model[1])
        if not (np.array_equal(rm_users, users) and np.array_equal(rm_positions, positions)):
            raise DataError("the untrained-model control's activation store does not hold the run's rows; rerun its SAE stage",
                            path=getattr(random_model[1], "path", None))
        control = control_model_inputs(*random_model, split, batch_size)
    counts = item_popularity(split.train.values, split.n_items)
    return {
        "score_fn": model_scores(model) if causal else None,
        "random_model": control,
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


def seed_stability(sae: Any, second: Any, reps: np.ndarray, seed: int, threshold: float = 0.7) -> dict[str, Any]:
    """Seed stability (docs/method.md §7.6): the share of ``sae``'s alive latents matched one-to-one,
    with decoder cosine ≥ ``threshold``, by a latent of ``second`` (the same recipe, another
    seed), beside the floor of two untrained SAEs of the same shape (seeds ``seed`` and
    ``second``'s). Alive: in some row's top-k on ``reps``."""
    from recsae.controls import SEED_OFFSET
    from recsae.interpret.stability import match_dictionaries, stability_summary
    from recsae.sae.model import untrained_baseline

    def alive(model: Any) -> np.ndarray:
        return np.asarray((sparse_codes(model, reps) != 0).sum(axis=0)).ravel() > 0

    def decoder(model: Any) -> np.ndarray:
        return model.W_dec.detach().float().cpu().numpy()

    floor_a = untrained_baseline(sae.cfg, reps, seed, sae.device)
    floor_b = untrained_baseline(sae.cfg, reps, seed + SEED_OFFSET, sae.device)
    trained = match_dictionaries(decoder(sae), decoder(second), threshold, alive(sae), alive(second))
    floor = match_dictionaries(decoder(floor_a), decoder(floor_b), threshold, alive(floor_a), alive(floor_b))
    return stability_summary(trained, floor)
