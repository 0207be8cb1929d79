"""Interpretation speed at ML-1M size: all latents of a 2,048-latent SAE (k = 32).

Target (issue 5): under 60 s on 2 cores for the SAE's latents (vocabulary, per-row features,
user split, rule fit over all latents x all features, held-out validation, top rows, coherence).

Input: the real ML-1M catalogue and histories (rating >= 4, 5-core, through the data registry;
``$RECSAE_DATA`` or ../shared/data), one row per prefix of every user's full history (about
570k rows), the real metadata (genres, title words, decades, popularity bands, single movies).
The activations, recommendations and representations are **simulated** (no trained model is
involved, so the figure is the interpretation's own cost): each row gets k = 32 of 2,048
latents, half of them drawn from latents tied to a genre of the row's last movie and half at
random, with exponential magnitudes; the top-10 recommendations are popularity-weighted draws;
representations are 64-d Gaussian. The same run also times the raw-neuron (64 dense units) and
random-SAE baselines, and compares the single-feature fit of all latents (one sparse product)
with a per-latent Python loop over the same fit rows. Wall and CPU seconds are both recorded:
the machine may be shared, and CPU time is then the fairer figure.
Writes ``benchmarks/results/bench_interpret.json``.

    .venv/bin/python benchmarks/bench_interpret.py [--rows N] [--latents 2048] [--k 32]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from _common import default_data_root
from recsae.data.dataset import item_popularity
from recsae.data.registry import load_dataset
from recsae.data.split import leave_one_out
from recsae.interpret import InterpretConfig, RowContext, interpret_units, prepare
from recsae.interpret.dictionary import FitConfig, fit_rules, sae_states
from recsae.io import write_json
from recsae.utils import environment_info

RESULT = Path(__file__).parent / "results" / "bench_interpret.json"


def simulated_acts(ctx: RowContext, genre_of_item: sp.csr_matrix, m: int, k: int, seed: int) -> sp.csr_matrix:
    """k latents per row: k/2 tied to a genre of the last item, k/2 uniform; exponential values."""
    rng = np.random.default_rng(seed)
    n = len(ctx.users)
    n_genres = genre_of_item.shape[1]
    latent_genre = np.arange(m) % n_genres  # latent j is tied to genre j mod G
    by_genre = np.argsort(latent_genre, kind="stable")
    starts = np.searchsorted(latent_genre[by_genre], np.arange(n_genres))
    sizes = np.bincount(latent_genre, minlength=n_genres)
    last = ctx.histories.values[ctx.histories.indptr[ctx.users] + ctx.positions - 1]
    g = genre_of_item[last].tocsr()
    n_g = np.diff(g.indptr)
    half = k // 2
    pick = g.indptr[:-1, None] + (rng.random((n, half)) * np.maximum(n_g, 1)[:, None]).astype(np.int64)
    genre = np.where(n_g[:, None] > 0, g.indices[np.minimum(pick, len(g.indices) - 1)], rng.integers(0, n_genres, (n, half)))
    tied = by_genre[starts[genre] + (rng.random((n, half)) * sizes[genre]).astype(np.int64)]
    cols = np.concatenate([tied, rng.integers(0, m, (n, k - half))], axis=1)
    vals = rng.exponential(1.0, size=(n, k)).astype(np.float32)
    acts = sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(n + 1) * k), shape=(n, m))
    acts.sum_duplicates()
    return acts


class Clock:
    """Wall and CPU seconds of a block (CPU time shows the cost when the machine is shared)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def as_dict(self) -> dict[str, float]:
        return {"wall": round(self.wall, 2), "cpu": round(self.cpu, 2)}


def loop_fit(feats: sp.csr_matrix, band: sp.csr_matrix, n_latents: int) -> np.ndarray:
    """Per-latent loop: for each latent, F1 of every feature against its band (fit rows)."""
    support = np.asarray(feats.sum(axis=0)).ravel()
    band_csc = band.tocsc()
    best = np.zeros(n_latents, dtype=np.int64)
    for j in range(n_latents):
        rows = band_csc.indices[band_csc.indptr[j] : band_csc.indptr[j + 1]]
        tp = np.asarray(feats[rows].sum(axis=0)).ravel()
        best[j] = np.argmax(np.where(support >= 5, 2 * tp / np.maximum(len(rows) + support, 1), -1))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=0, help="cap on rows (0 = every prefix)")
    ap.add_argument("--latents", type=int, default=2048)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    ds = load_dataset("ml-1m", data_root=default_data_root())
    split = leave_one_out(ds)
    hist = split.history("test")
    lengths = hist.lengths()
    users = np.repeat(np.arange(len(lengths)), lengths)
    positions = (np.arange(len(users)) - hist.indptr[users] + 1).astype(np.int64)
    if args.rows and args.rows < len(users):
        keep = np.sort(np.random.default_rng(args.seed).choice(len(users), args.rows, replace=False))
        users, positions = users[keep], positions[keep]
    rng = np.random.default_rng(args.seed + 1)
    counts = item_popularity(split.train.values, ds.n_items)
    pop = counts[1:] / counts[1:].sum()
    recs = rng.choice(np.arange(1, ds.n_items + 1), size=(len(users), 10), p=pop)
    ctx = RowContext(users, positions, hist, recs)
    genres = sorted({g for gs in ds.item_meta.multi["genre"] for g in gs})
    gi = [(i, genres.index(g)) for i, gs in enumerate(ds.item_meta.multi["genre"]) for g in gs]
    genre_of_item = sp.csr_matrix(
        (np.ones(len(gi)), ([a for a, _ in gi], [b for _, b in gi])), shape=(ds.n_items + 1, len(genres))
    )
    acts = simulated_acts(ctx, genre_of_item, args.latents, args.k, args.seed)
    random_acts = simulated_acts(ctx, genre_of_item, args.latents, args.k, args.seed + 7)
    reps = rng.normal(size=(len(users), 64)).astype(np.float32)
    load_s = time.perf_counter() - t0
    print(f"ML-1M: {len(users):,} rows, {ds.n_items:,} items; inputs ready in {load_s:.1f} s")

    cfg = InterpretConfig()
    with Clock() as prep_t:
        prep = prepare(ctx, ds.item_meta, counts, cfg)
    with Clock() as sae_t:
        res = interpret_units(acts, prep, ctx, cfg, reps=reps, titles=ds.item_meta.title)
    total = {"wall": round(prep_t.wall + sae_t.wall, 2), "cpu": round(prep_t.cpu + sae_t.cpu, 2)}
    print(f"vocabulary + features: {prep_t.wall:.1f} s wall / {prep_t.cpu:.1f} s CPU ({prep.vocab.n_concepts} "
          f"concepts, {prep.space.n_features} features, {prep.feats.nnz / len(users):.1f} set per row)")
    print(f"SAE ({args.latents} latents, k={args.k}): {sae_t.wall:.1f} s wall / {sae_t.cpu:.1f} s CPU; "
          f"total {total['wall']:.1f} s wall / {total['cpu']:.1f} s CPU (target < 60 s)")
    with Clock() as neuron_t:
        neurons = interpret_units(reps, prep, ctx, cfg, dense=True, reps=reps)
    with Clock() as random_t:
        interpret_units(random_acts, prep, ctx, cfg, reps=reps)
    print(f"baselines: neurons {neuron_t.wall:.1f} s, random SAE {random_t.wall:.1f} s (wall)")

    fit_idx = np.flatnonzero(prep.fit_mask)
    fit_feats = prep.feats[fit_idx]
    band = sae_states(acts, fit_idx).band[fit_idx]
    with Clock() as vec_t:
        rules = fit_rules(fit_feats, band, FitConfig(max_terms=1))
    with Clock() as loop_t:
        best = loop_fit(fit_feats, band, args.latents)
    agree = float(np.mean(best[rules.n_target > 0] == rules.feature_a[rules.n_target > 0]))
    print(f"single-feature fit of all latents: vectorised {vec_t.wall:.1f} s, per-latent loop {loop_t.wall:.1f} s "
          f"(same best feature for {100 * agree:.1f} % of latents; ties may differ)")

    write_json(
        RESULT,
        {
            "benchmark": "interpret",
            "target": "interpret all latents of a 2,048-latent SAE over ML-1M in < 60 s on 2 cores",
            "data": "ML-1M (rating >= 4, 5-core, leave-one-out test histories), every prefix one row; "
            "activations, recommendations and representations simulated (see docstring)",
            "rows": len(users),
            "latents": args.latents,
            "k": args.k,
            "n_concepts": prep.vocab.n_concepts,
            "n_features": prep.space.n_features,
            "features_per_row": prep.feats.nnz / len(users),
            "seconds": {
                "prepare": prep_t.as_dict(),
                "sae_latents": sae_t.as_dict(),
                "total_sae": total,
                "neurons": neuron_t.as_dict(),
                "random_sae": random_t.as_dict(),
                "single_fit_vectorised": vec_t.as_dict(),
                "single_fit_per_latent_loop": loop_t.as_dict(),
            },
            "passes": total["wall"] < 60.0,
            "share_interpretable": {
                "sae_simulated": res.summary["share_interpretable"],
                "neurons_gaussian": neurons.summary["share_interpretable"],
            },
            "seed": args.seed,
            "environment": environment_info(),
        },
    )
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
