"""Per-unit evidence shared by the SAE and its baselines: top-activating rows, coherence
(docs/method.md §4.7), top items by decoder direction, the share of the representations the
interpretable units account for, and planted-concept recovery (§6).

All functions work on every unit at once (no Python loop over latents).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from recsae.interpret.dictionary import column_order


class TopRows(NamedTuple):
    """The n highest-activating rows of every unit, best first (-1 / NaN padded)."""

    rows: np.ndarray
    """(m, n) row indices."""
    values: np.ndarray
    """(m, n) activations."""


def top_rows(acts: sp.spmatrix | np.ndarray, n: int) -> TopRows:
    """Top-n rows per unit by activation; sparse units only count their non-zero entries."""
    if sp.issparse(acts):
        csc = sp.csc_matrix(acts)
        m = csc.shape[1]
        counts = np.diff(csc.indptr)
        col = np.repeat(np.arange(m), counts)
        order = column_order(col, csc.data, descending=True)
        rank = np.arange(len(order)) - csc.indptr[col[order]]
        keep = order[rank < n]
        out_rows = np.full((m, n), -1, dtype=np.int64)
        out_vals = np.full((m, n), np.nan, dtype=np.float64)
        r = rank[rank < n]
        out_rows[col[keep], r] = csc.indices[keep]
        out_vals[col[keep], r] = csc.data[keep]
        return TopRows(out_rows, out_vals)
    dense = np.asarray(acts)
    k = min(n, dense.shape[0])
    if k == 0:
        return TopRows(np.full((dense.shape[1], n), -1), np.full((dense.shape[1], n), np.nan))
    part = np.argpartition(-dense, k - 1, axis=0)[:k]
    vals = np.take_along_axis(dense, part, axis=0)
    order = np.argsort(-vals, axis=0, kind="stable")
    rows = np.take_along_axis(part, order, axis=0).T
    vals = np.take_along_axis(vals, order, axis=0).T.astype(np.float64)
    pad = n - k
    return TopRows(
        np.pad(rows, ((0, 0), (0, pad)), constant_values=-1),
        np.pad(vals, ((0, 0), (0, pad)), constant_values=np.nan),
    )


def coherence(reps: np.ndarray, rows: np.ndarray, center: np.ndarray | None = None) -> np.ndarray:
    """Mean pairwise cosine similarity of the representations of each unit's rows.

    ``rows`` is (m, n) with -1 padding; units with fewer than two rows get NaN. ``center``
    (e.g. the mean representation) is subtracted first: raw representations of a trained
    model share a large common direction that makes every set of rows look similar.
    """
    m, n = rows.shape
    valid = rows >= 0
    x = np.asarray(reps[np.maximum(rows, 0).ravel()], dtype=np.float64).reshape(m, n, -1)
    if center is not None:
        x = x - np.asarray(center, dtype=np.float64)
    norms = np.linalg.norm(x, axis=2, keepdims=True)
    x = np.where(valid[:, :, None] & (norms > 0), x / np.where(norms > 0, norms, 1.0), 0.0)
    cnt = (valid & (norms[:, :, 0] > 0)).sum(axis=1).astype(np.float64)
    total = np.einsum("mnd,mnd->m", x, x)  # self-similarities (1 per valid row)
    s = x.sum(axis=1)
    pair_sum = (np.einsum("md,md->m", s, s) - total) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cnt >= 2, pair_sum / (cnt * (cnt - 1) / 2), np.nan)


TOP_BYTES_PER_SCORE = 16
"""What ``top_decoder_items`` holds per (direction, item) score: the float32 score, its negation
and the int64 partition index."""
SELECTIVITY_BYTES_PER_SCORE = 32
"""What ``decoder_concepts`` holds per score: the float32 score, its float64 copy and the float64
temporaries of its mean and standard deviation."""


def _directions_per_chunk(n_items: int, bytes_per_score: int, chunk: int | None) -> int:
    """``chunk``, or as many directions as fit their scores against every item in the
    evaluator's memory budget (a 100k-item catalogue: about 170 directions at a time)."""
    if chunk is not None:
        return chunk
    from recsae.eval import rows_within_budget

    return rows_within_budget(n_items, bytes_per_score)


def top_decoder_items(decoder: np.ndarray, item_emb: np.ndarray, n: int, chunk: int | None = None) -> np.ndarray:
    """(m, n) items with the highest decoder-direction · item-embedding score (padding excluded),
    ``chunk`` directions at a time (default: as many as fit in the evaluator's memory budget)."""
    decoder = np.asarray(decoder, dtype=np.float32)
    emb = np.asarray(item_emb, dtype=np.float32)
    if decoder.shape[1] != emb.shape[1]:
        raise ValueError(f"decoder rows have {decoder.shape[1]} dims, item embeddings {emb.shape[1]}")
    n = min(n, emb.shape[0] - 1)
    out = np.zeros((decoder.shape[0], max(n, 0)), dtype=np.int64)
    if n <= 0:
        return out
    chunk = _directions_per_chunk(emb.shape[0], TOP_BYTES_PER_SCORE, chunk)
    for a in range(0, decoder.shape[0], chunk):
        scores = decoder[a : a + chunk] @ emb[1:].T
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[a : a + chunk] = np.take_along_axis(part, order, axis=1) + 1
    return out


def concept_selectivity(scores: np.ndarray, membership: sp.spmatrix | np.ndarray) -> np.ndarray:
    """(m, C) how specifically each direction raises each concept's items: the mean of ``scores``
    (m x items, a direction's score for every real item) over the concept's items minus the mean
    over the other items, in standard deviations of the direction's scores. ``membership`` is
    items x C 0/1 (same item order); a concept with no items, or all of them, scores 0."""
    scores = np.asarray(scores, dtype=np.float64)
    member = sp.csc_matrix(membership, dtype=np.float64)
    n_in = np.asarray(member.sum(axis=0)).ravel()
    n_out = scores.shape[1] - n_in
    sum_in = np.asarray((member.T @ scores.T).T)
    sum_out = scores.sum(axis=1, keepdims=True) - sum_in
    std = scores.std(axis=1, keepdims=True)
    valid = (n_in > 0) & (n_out > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = sum_in / np.maximum(n_in, 1) - sum_out / np.maximum(n_out, 1)
        out = np.where(valid[None, :] & (std > 0), diff / np.where(std > 0, std, 1.0), 0.0)
    return out


def decoder_concepts(
    decoder: np.ndarray, item_emb: np.ndarray, membership: sp.spmatrix, eligible: np.ndarray,
    z: float = 2.0, chunk: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each latent, the eligible concept its decoder direction raises most selectively, and
    that ``concept_selectivity`` of ``decoder · item embedding``; (-1, 0) when no concept is
    eligible. Concepts are ranked by a lower bound, selectivity - z * sqrt(1/n_in + 1/n_out)
    (the gap's spread for a random set of n_in items): a handful of items can show a large gap
    by chance, and without the bound five-film title words won over the genres on ML-1M.
    ``membership``: (n_items + 1) x C with row 0 the padding item. ``chunk`` directions at a
    time (default: as many as fit in the evaluator's memory budget)."""
    decoder = np.asarray(decoder, dtype=np.float32)
    emb = np.asarray(item_emb, dtype=np.float32)[1:]
    m = decoder.shape[0]
    cols = np.flatnonzero(eligible)
    best = np.full(m, -1, dtype=np.int64)
    value = np.zeros(m)
    if not len(cols):
        return best, value
    member = sp.csr_matrix(membership)[1:][:, cols]
    n_in = np.asarray(member.sum(axis=0)).ravel()
    n_out = emb.shape[0] - n_in
    spread = np.sqrt(1.0 / np.maximum(n_in, 1) + 1.0 / np.maximum(n_out, 1))
    chunk = _directions_per_chunk(emb.shape[0], SELECTIVITY_BYTES_PER_SCORE, chunk)
    for a in range(0, m, chunk):
        sel = concept_selectivity(decoder[a : a + chunk] @ emb.T, member)
        arg = (sel - z * spread).argmax(axis=1)
        best[a : a + chunk] = cols[arg]
        value[a : a + chunk] = sel[np.arange(len(arg)), arg]
    return best, value


def explained_variance(
    reps: np.ndarray, acts: sp.spmatrix | np.ndarray, decoder: np.ndarray, bias: np.ndarray, keep: np.ndarray,
    chunk: int = 65536,
) -> float:
    """How much of the representations the units in ``keep`` account for: 1 - FVU of
    ``acts[:, keep] @ decoder[keep] + bias`` against ``reps`` (rows x d). With every unit of an
    exact dictionary it is 1; with none and ``bias`` the mean, 0. For raw neurons pass the
    centred representations as ``acts``, the identity as ``decoder`` and the mean as ``bias``:
    the result is the kept dimensions' share of the total variance."""
    keep = np.asarray(keep, dtype=bool)
    acts = sp.csr_matrix(acts) if sp.issparse(acts) else np.asarray(acts)
    decoder = np.asarray(decoder, dtype=np.float64)[keep]
    bias = np.asarray(bias, dtype=np.float64)
    mean = np.asarray(reps, dtype=np.float64).mean(axis=0)
    err = total = 0.0
    for a in range(0, reps.shape[0], chunk):
        x = np.asarray(reps[a : a + chunk], dtype=np.float64)
        err += float(((x - (acts[a : a + chunk][:, keep] @ decoder + bias)) ** 2).sum())
        total += float(((x - mean) ** 2).sum())
    return 1.0 - err / total if total > 0 else float("nan")


def planted_recovery(
    rule_concepts: list[list[int]], val_f1: np.ndarray, planted: list[int], names: list[str], threshold: float
) -> tuple[float | None, list[dict[str, Any]]]:
    """For each planted concept: the latent with the best validated F1 among those whose rule
    names the concept, that F1, and whether it reaches ``threshold``; plus the share recovered."""
    best_f1 = np.full(len(planted), -1.0)
    best_lat = np.full(len(planted), -1, dtype=np.int64)
    pos = {c: i for i, c in enumerate(planted)}
    lat_idx = [j for j, cs in enumerate(rule_concepts) for c in set(cs) if c in pos]
    con_idx = [pos[c] for cs in rule_concepts for c in set(cs) if c in pos]
    if lat_idx:
        lat = np.array(lat_idx)
        con = np.array(con_idx)
        f = val_f1[lat]
        order = np.lexsort((-f, con))
        first = np.r_[True, con[order][1:] != con[order][:-1]]
        best_lat[con[order][first]] = lat[order][first]
        best_f1[con[order][first]] = f[order][first]
    table = [
        {
            "concept": names[c],
            "best_latent": int(best_lat[i]) if best_lat[i] >= 0 else None,
            "val_f1": float(best_f1[i]) if best_lat[i] >= 0 else None,
            "recovered": bool(best_f1[i] >= threshold),
        }
        for i, c in enumerate(planted)
    ]
    share = float(np.mean(best_f1 >= threshold)) if planted else None
    return share, table
