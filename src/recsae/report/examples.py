"""Per-latent examples for the report's latent view: ``OUT/report_data/latent_examples.json``.

The interpretation table names each latent's top-activating rows only by (user, position); the
report also needs the titles of the items those prefixes end with, and a histogram of each
latent's activations. The pipeline writes them with :func:`write_latent_examples` (or builds the
dict with :func:`build_latent_examples` and writes it itself). Schema (format_version 1)::

    {
      "format_version": 1,
      "max_examples": 5,          # examples kept per latent (highest activation first)
      "max_titles": 8,            # most recent prefix items kept per example
      "n_rows": 123456,           # activation rows behind the histograms (null without them)
      "latents": {
        "17": {                   # latent id, as a string (JSON object keys)
          "examples": [
            {"user": 12,          # internal user id
             "position": 40,      # prefix length t: the prefix is history[user][:t]
             "activation": 3.21,
             "recent_items": [..],   # item ids of history[user][max(0, t - max_titles):t],
             "recent_titles": [..]}  # their titles; oldest first, the most recent item last
          ],
          "histogram": {          # absent when no activations were given
            "log10_edges": [..],  # n_bins + 1 edges of log10(activation), equally spaced
            "counts": [..],       # rows whose (positive) activation falls in each bin
            "n_zero": 120000      # rows where the latent is inactive (not in any bin)
          }
        }
      }
    }

Titles are untrusted text; the report escapes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsae.data.dataset import Ragged
from recsae.errors import DataError
from recsae.io import write_json
from recsae.rundir import RunDir

FORMAT_VERSION = 1

MAX_EXAMPLES = 5
MAX_TITLES = 8
N_BINS = 20
_CHUNK_NNZ = 1 << 22


ALIASES = {
    "ci_low": "confidence_low",
    "ci_high": "confidence_high",
    "precision": "val_precision",
    "recall": "val_recall",
    "f1": "val_f1",
}
"""Report column -> the interpretation stage's name for it (either spelling is accepted)."""


def _cells(value: Any) -> list[Any]:
    """A list-valued Parquet cell as a list (arrays, lists, or None / NaN for none)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return list(value)


def normalize_latents(table: pd.DataFrame) -> pd.DataFrame:
    """The interpretation table with the report's column names, whichever spelling it used.

    Fills ``ci_low``/``ci_high``/``precision``/``recall``/``f1`` from ``confidence_low``/
    ``confidence_high``/``val_*``, and ``top_rows`` (a list of {user, position, activation})
    from the parallel lists ``top_users``/``top_positions``/``top_activations``.
    """
    df = table.copy()
    for new, old in ALIASES.items():
        if new not in df.columns and old in df.columns:
            df[new] = df[old]
    if "top_rows" not in df.columns and {"top_users", "top_positions"} <= set(df.columns):
        acts = df["top_activations"] if "top_activations" in df.columns else [None] * len(df)
        df["top_rows"] = [
            [{"user": int(u), "position": int(t), "activation": float(a) if a is not None else float("nan")}
             for u, t, a in zip(_cells(us), _cells(ts), _cells(av) or [None] * len(_cells(us)), strict=False)]
            for us, ts, av in zip(df["top_users"], df["top_positions"], acts, strict=True)
        ]
    return df


def activation_histograms(
    activations: Any, latents: Sequence[int], n_bins: int = N_BINS
) -> dict[int, dict[str, Any]]:
    """Histogram of each latent's positive activations over log-spaced bins of its own range.

    ``activations`` is a SciPy sparse matrix (rows x n_latents); zeros and negatives count as
    inactive. Works column block by column block, so memory stays bounded for large runs.
    """
    import scipy.sparse as sp

    csc = sp.csc_matrix(activations)
    n_rows = csc.shape[0]
    wanted = {int(j) for j in latents}
    out: dict[int, dict[str, Any]] = {}
    start = 0
    m = csc.shape[1]
    while start < m:
        # Columns [start, stop) hold at most _CHUNK_NNZ stored values (at least one column).
        stop = int(np.searchsorted(csc.indptr, csc.indptr[start] + _CHUNK_NNZ, side="right"))
        stop = min(max(stop - 1, start + 1), m)
        block = csc[:, start:stop]
        cols = np.repeat(np.arange(stop - start), np.diff(block.indptr))
        vals = np.asarray(block.data, dtype=np.float64)
        pos = vals > 0
        cols, logv = cols[pos], np.log10(vals[pos])
        width = stop - start
        lo = np.full(width, np.inf)
        hi = np.full(width, -np.inf)
        np.minimum.at(lo, cols, logv)
        np.maximum.at(hi, cols, logv)
        # A latent with a single distinct value still gets a visible (narrow) range.
        flat = hi - lo < 1e-6
        lo[flat] -= 0.05
        hi[flat] += 0.05
        span = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
        bins = np.clip(((logv - lo[cols]) / span[cols] * n_bins).astype(np.int64), 0, n_bins - 1)
        counts = np.bincount(cols * n_bins + bins, minlength=width * n_bins).reshape(width, n_bins)
        for c in range(width):
            j = start + c
            if j not in wanted:
                continue
            total = int(counts[c].sum())
            edges = (np.linspace(lo[c], hi[c], n_bins + 1).round(4).tolist() if total else [])
            out[j] = {"log10_edges": edges, "counts": counts[c].tolist() if total else [],
                      "n_zero": int(n_rows - total)}
        start = stop
    return out


def build_latent_examples(
    table: pd.DataFrame,
    histories: Ragged,
    titles: Sequence[str],
    activations: Any = None,
    *,
    max_examples: int = MAX_EXAMPLES,
    max_titles: int = MAX_TITLES,
    n_bins: int = N_BINS,
) -> dict[str, Any]:
    """The latent-examples document (schema in the module docstring).

    ``table`` is the interpretation table (columns ``latent`` and ``top_rows``, a list of
    {user, position, activation} per latent, or the parallel lists ``top_users``,
    ``top_positions``, ``top_activations``); ``histories`` the full per-user histories that
    ``position`` indexes (``split.history("test")``); ``titles`` the item titles by item id;
    ``activations`` an optional SciPy sparse (rows x n_latents) matrix for the histograms.
    """
    if "latent" not in table.columns:
        raise DataError("the interpretation table has no 'latent' column", field="latent")
    table = normalize_latents(table)
    latents = [int(j) for j in table["latent"]]
    rows_col = table["top_rows"] if "top_rows" in table.columns else [None] * len(table)
    hists = activation_histograms(activations, latents, n_bins) if activations is not None else {}
    out: dict[str, Any] = {}
    for j, cell in zip(latents, rows_col, strict=True):
        rows = sorted((dict(r) for r in _cells(cell)), key=lambda r: -float(r.get("activation", 0.0)))
        examples = []
        for r in rows[:max_examples]:
            user, t = int(r["user"]), int(r["position"])
            if not 0 < user < len(histories) or not 0 <= t <= len(histories[user]):
                raise DataError(
                    f"latent {j}: top row (user {user}, position {t}) is outside the histories",
                    field="top_rows",
                )
            items = histories[user][max(0, t - max_titles) : t]
            examples.append({
                "user": user,
                "position": t,
                "activation": round(float(r.get("activation", float("nan"))), 5),
                "recent_items": [int(i) for i in items],
                "recent_titles": [str(titles[int(i)]) for i in items],
            })
        entry: dict[str, Any] = {"examples": examples}
        if j in hists:
            entry["histogram"] = hists[j]
        out[str(j)] = entry
    return {
        "format_version": FORMAT_VERSION,
        "max_examples": max_examples,
        "max_titles": max_titles,
        "n_rows": int(activations.shape[0]) if activations is not None else None,
        "latents": out,
    }


def write_latent_examples(
    run_dir: str | Path,
    table: pd.DataFrame,
    histories: Ragged,
    titles: Sequence[str],
    activations: Any = None,
) -> Path:
    """Build the examples and write them atomically to ``run_dir/report_data/latent_examples.json``."""
    path = RunDir(run_dir).latent_examples
    write_json(path, build_latent_examples(table, histories, titles, activations))
    return path
