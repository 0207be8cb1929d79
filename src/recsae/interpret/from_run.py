"""Inputs of ``interpret`` from a trained model, its SAE and activation store (``recsae run``).

Every row of the store is interpreted, up to ``InterpretConfig.max_rows``: a larger store gives
the rows of a seeded sample of its users (``interpreted_rows``), read from the memory maps
without loading the store whole. Per row: the SAE's top-k activations (sparse), the
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
from recsae.distributed import World, all_gather_rows, batch_share, single
from recsae.errors import DataError
from recsae.eval import mask_history, rows_within_budget
from recsae.interpret.api import ControlModel, InterpretConfig
from recsae.interpret.features import RowContext
from recsae.probe.harvest import model_device
from recsae.utils import log

TOPK_BYTES_PER_SCORE = 16
"""What the top-k of one row holds per item: the float32 scores, masking and selection temporaries."""
MAX_ROWS = InterpretConfig.max_rows
"""Default of ``run_inputs``'s ``max_rows``: ``InterpretConfig.max_rows``."""
READ_ROWS = 65536
"""Rows read from the store at a time."""


def sparse_codes(sae: Any, reps: np.ndarray, batch_size: int = 4096, world: World | None = None) -> sp.csr_matrix:
    """rows x m CSR of an SAE's top-k activations (exact zeros dropped). ``world`` (torchrun):
    each rank encodes its share of the batches, and every rank gets all rows' codes."""
    device = sae.device
    k = sae.cfg.k
    share = batch_share(len(reps), batch_size, world or single("cpu"))
    vals = np.zeros((share.stop - share.start, k), dtype=np.float32)
    idx = np.zeros((share.stop - share.start, k), dtype=np.int64)
    with torch.no_grad():
        for a in range(share.start, share.stop, batch_size):
            out = sae.encode(torch.from_numpy(np.array(reps[a : a + batch_size], dtype=np.float32)).to(device))
            lo = a - share.start
            vals[lo : lo + batch_size] = out.top_acts.float().cpu().numpy()
            idx[lo : lo + batch_size] = out.top_indices.cpu().numpy()
    if world is not None:
        vals, idx = all_gather_rows(world, vals, "gathering SAE codes"), all_gather_rows(world, idx, "gathering SAE codes")
    acts = sp.csr_matrix((vals.ravel(), idx.ravel(), np.arange(len(reps) + 1) * k), shape=(len(reps), sae.cfg.m))
    acts.sum_duplicates()
    acts.eliminate_zeros()
    return acts


def top_recommendations(
    model: Any, reps: np.ndarray, users: np.ndarray, positions: np.ndarray, histories: Ragged,
    k: int = 10, batch_size: int = 2048, world: World | None = None,
) -> np.ndarray:
    """(rows, k) the model's top-k items for each row's representation, prefix items masked.
    At most ``batch_size`` rows are scored at a time, fewer when their scores would exceed the
    evaluator's memory budget (each row's top-k is still taken over the whole catalogue).
    ``world`` (torchrun): each rank scores its share of the batches, every rank gets all rows."""
    device = model_device(model)
    batch_size = min(batch_size, rows_within_budget(int(model.item_embeddings().shape[0]), TOPK_BYTES_PER_SCORE))
    share = batch_share(len(reps), batch_size, world or single("cpu"))
    out = np.zeros((share.stop - share.start, k), dtype=np.int64)
    with torch.no_grad():
        for a in range(share.start, share.stop, batch_size):
            h = torch.from_numpy(np.ascontiguousarray(reps[a : a + batch_size])).to(device)
            scores = mask_history(model.score(h).float(), histories, users[a : a + batch_size],
                                  lengths=positions[a : a + batch_size])
            out[a - share.start : a - share.start + batch_size] = torch.topk(scores, k, dim=1).indices.cpu().numpy()
    return out if world is None else all_gather_rows(world, out, "gathering the top recommendations")


def model_scores(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The frozen model's item scores of representations (for the causal tests): the model is
    put in eval mode, and every call runs without gradients on the model's device."""
    model.eval()
    device = model_device(model)

    def score(h: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.score(h.to(device))

    return score


def interpreted_rows(store: Any, max_rows: int | None, seed: int = 0) -> np.ndarray | None:
    """The store rows to interpret: None (every row) when the store holds at most ``max_rows``;
    else, in store order, every row of the users drawn in a seeded order while their rows fit in
    ``max_rows`` (whole users: the fit/validation split and the top rows are per user)."""
    if max_rows is None or store.n_rows <= max_rows:
        return None
    users = store.index["user"].to_numpy(dtype=np.int64)
    uniq, counts = np.unique(users, return_counts=True)
    order = np.random.default_rng([seed, 0x5A3]).permutation(len(uniq))
    n_users = max(1, int(np.searchsorted(np.cumsum(counts[order]), max_rows, side="right")))
    log.info("interpret: %d of the store's %d rows (all rows of %d of its %d users; max_rows %d)",
             int(counts[order[:n_users]].sum()), store.n_rows, n_users, len(uniq), max_rows)
    return np.flatnonzero(np.isin(users, uniq[order[:n_users]]))


def row_index(store: Any, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(users, positions) of the store's ``rows`` (all rows for None)."""
    index = store.index if rows is None else store.index.iloc[rows]
    return index["user"].to_numpy(dtype=np.int64), index["position"].to_numpy(dtype=np.int64)


def representations(store: Any, rows: np.ndarray | None) -> np.ndarray:
    """The rows' representations: a writable copy, read from the memory maps chunk by chunk."""
    view = store.view(rows)
    reps = np.empty(view.shape, dtype=np.float32)
    for lo in range(0, len(view), READ_ROWS):
        reps[lo : lo + READ_ROWS] = np.asarray(view[lo : lo + READ_ROWS])
    return reps


def control_model_inputs(model: Any, store: Any, sae: Any, split: SplitData, batch_size: int = 4096,
                         rows: np.ndarray | None = None, world: World | None = None) -> ControlModel:
    """The untrained-model control's inputs: its SAE's codes, its representations, and its own
    recommendations and scores (``store`` harvested from ``model``, row for row like the run's;
    ``rows``: the store rows interpreted, None for all; ``world``: as in ``run_inputs``)."""
    users, positions = row_index(store, rows)
    histories = split.history("test")
    reps = representations(store, rows)
    model.eval()
    with torch.no_grad():
        item_emb = model.item_embeddings().detach().float().cpu().numpy()
    recs = top_recommendations(model, reps, users, positions, histories, world=world)
    return ControlModel(
        ctx=RowContext(users, positions, histories, recs),
        acts=sparse_codes(sae, reps, batch_size, world),
        reps=reps,
        decoder=sae.W_dec.detach().float().cpu().numpy(),
        decoder_bias=sae.b_dec.detach().float().cpu().numpy(),
        item_emb=item_emb,
        score_fn=model_scores(model),
    )


def run_inputs(
    model: Any, sae: Any, store: Any, split: SplitData, seed: int = 0, batch_size: int = 4096,
    random_sae: Any = None, random_model: tuple[Any, Any, Any] | None = None, causal: bool = True,
    max_rows: int | None = MAX_ROWS, world: World | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``recsae.interpret.interpret`` for a run's model, SAE and store.
    ``random_sae``: the untrained baseline (default: the splice stage's recipe on these rows);
    ``random_model``: (untrained model, its store, its SAE) for the untrained-model control;
    ``causal``: pass the model's scores, so that every validated unit's faithfulness is tested;
    ``max_rows``: the most rows interpreted (``interpreted_rows``, seeded by ``seed``);
    ``world`` (torchrun): each rank computes its share of the rows' top recommendations and SAE
    codes, and every rank gets all of them (the same as one process's, bit for bit)."""
    from recsae.sae.model import untrained_baseline

    rows = interpreted_rows(store, max_rows, seed)
    users, positions = row_index(store, rows)
    histories = split.history("test")
    reps = representations(store, rows)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            item_emb = model.item_embeddings().detach().float().cpu().numpy()
        recs = top_recommendations(model, reps, users, positions, histories, world=world)
    finally:
        model.train(was_training)
    if random_sae is None:
        random_sae = untrained_baseline(sae.cfg, reps, seed, sae.device)
    control = None
    if random_model is not None:
        rm_users, rm_positions = row_index(random_model[1], rows)
        if not (np.array_equal(rm_users, users) and np.array_equal(rm_positions, positions)):
            raise DataError("the untrained-model control's activation store does not hold the run's rows; rerun its SAE stage",
                            path=getattr(random_model[1], "path", None))
        control = control_model_inputs(*random_model, split, batch_size, rows, world)
    counts = item_popularity(split.train.values, split.n_items)
    return {
        "score_fn": model_scores(model) if causal else None,
        "random_model": control,
        "ctx": RowContext(users, positions, histories, recs),
        "item_meta": split.dataset.item_meta,
        "item_counts": counts,
        "sae_acts": sparse_codes(sae, reps, batch_size, world),
        "neuron_acts": reps,
        "random_acts": sparse_codes(random_sae, reps, batch_size, world),
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
