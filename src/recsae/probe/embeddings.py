"""Embeddings mode: an activation store from exported arrays, for models outside PyTorch.

Inputs (docs/method.md §1.5):

- ``user_vectors``: ``.npy`` or array, one row per user 1..n_users (row i is user i + 1), or any
  number of rows when ``provenance`` (columns ``user``, ``position``, optional ``split``,
  ``target``) says which user and prefix length each row represents;
- ``item_table``: ``.npy`` or array (n_items x d) for items 1..n_items, or (n_items + 1) x d with
  ``padding_row=True`` when row 0 is the padding item;
- ``histories``: :class:`Ragged` (row 0 empty, row u = user u's chronological items) or a path: a
  ``.npz`` with ``indptr`` and ``values``, or a text file with one line per user (line 1 = user
  1), item ids separated by spaces or commas.

The store keeps ``item_table.npy`` ((n_items + 1) x d, row 0 zero) and ``histories.npz`` beside
the shards, so :meth:`EmbeddingModel.from_store` rebuilds a :class:`Recommender` scoring
``h @ E.T`` on which splice and steering run as on any model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from recsae.data.dataset import Ragged
from recsae.errors import DataError
from recsae.models.base import Recommender
from recsae.probe.store import SPLITS, ActivationStore, StoreWriter
from recsae.utils import environment_info

ITEM_TABLE_FILE = "item_table.npy"
HISTORIES_FILE = "histories.npz"

ArrayLike = np.ndarray | str | Path


def load_matrix(source: ArrayLike, what: str) -> tuple[np.ndarray, str]:
    """A finite 2-D float32 matrix from an array or a ``.npy`` path, with a name for errors."""
    if isinstance(source, (str, Path)):
        name = str(source)
        try:
            arr = np.load(source, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read {what} as a .npy array: {err}", path=name) from err
    else:
        name, arr = f"<{what} array>", np.asarray(source)
    if arr.ndim != 2:
        raise DataError(f"{what} must be a 2-D matrix, got shape {arr.shape}", path=name, field="shape")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{what} must be numeric, got dtype {arr.dtype}", path=name, field="dtype")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise DataError(f"{what} holds NaN or infinite values", path=name)
    return arr, name


def load_histories(source: Ragged | str | Path) -> Ragged:
    """Histories from a :class:`Ragged`, an ``.npz`` (indptr, values) or a one-line-per-user text file."""
    if isinstance(source, Ragged):
        return source
    path = Path(source)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                indptr, values = z["indptr"].astype(np.int64), z["values"].astype(np.int64)
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"expected an .npz with integer arrays 'indptr' and 'values': {err}", path=path) from err
        if indptr.ndim != 1 or len(indptr) < 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(values):
            raise DataError("indptr must start at 0, not decrease, and end at len(values)", path=path, field="indptr")
        return Ragged(indptr, values)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise DataError(f"cannot read histories: {err}", path=path) from err
    rows: list[list[int]] = [[]]
    for n, line in enumerate(lines, start=1):
        try:
            rows.append([int(tok) for tok in line.replace(",", " ").split()])
        except ValueError as err:
            raise DataError(f"expected integer item ids separated by spaces or commas: {err}", path=path, line=n) from err
    return Ragged.from_lists(rows)


def _read_provenance(source: pd.DataFrame | str | Path, n_rows: int) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        df, name = source, "<provenance frame>"
    else:
        name = str(source)
        try:
            df = pd.read_parquet(source) if str(source).endswith(".parquet") else pd.read_csv(source)
        except Exception as err:  # pandas raises many types for an unreadable file
            raise DataError(f"cannot read provenance: {err}", path=name) from err
    for col in ("user", "position"):
        if col not in df.columns:
            raise DataError("missing column (needs user and position)", path=name, field=col)
    if len(df) != n_rows:
        raise DataError(f"{len(df)} provenance rows for {n_rows} vectors", path=name)
    return df.reset_index(drop=True), name


def from_embeddings(
    user_vectors: ArrayLike,
    item_table: ArrayLike,
    histories: Ragged | str | Path,
    out_dir: str | Path,
    provenance: pd.DataFrame | str | Path | None = None,
    padding_row: bool = False,
    name: str = "embeddings",
) -> ActivationStore:
    """Build an activation store (``mode: embeddings``) from exported vectors; see the module doc.

    Without ``provenance`` every user gets one row: position = history length, split ``test``,
    target 0.
    """
    users_x, users_name = load_matrix(user_vectors, "user vectors")
    items_x, items_name = load_matrix(item_table, "item table")
    hist = load_histories(histories)
    hist_name = str(histories) if not isinstance(histories, Ragged) else "<histories>"
    d = users_x.shape[1]
    if items_x.shape[1] != d:
        raise DataError(
            f"item table has {items_x.shape[1]} columns, the user vectors ({users_name}) have {d}",
            path=items_name,
            field="shape",
        )
    items_full = items_x.copy() if padding_row else np.vstack([np.zeros((1, d), np.float32), items_x])
    items_full[0] = 0.0
    n_items = len(items_full) - 1
    n_users = len(hist) - 1
    if len(hist.values) and (hist.values.min() < 1 or hist.values.max() > n_items):
        raise DataError(
            f"item ids must lie in 1..{n_items} (the rows of {items_name}); found "
            f"{hist.values.min()}..{hist.values.max()}",
            path=hist_name,
        )
    lengths = hist.lengths()
    if provenance is None:
        if len(users_x) != n_users:
            raise DataError(
                f"{len(users_x)} user vectors but the histories have {n_users} users (one row per user "
                "1..n_users expected; pass provenance= for other layouts)",
                path=users_name,
                field="shape",
            )
        user = np.arange(1, n_users + 1, dtype=np.int64)
        position = lengths[1:]
        code = np.full(n_users, 2, dtype=np.int8)
        target = np.zeros(n_users, dtype=np.int64)
    else:
        prov, prov_name = _read_provenance(provenance, len(users_x))
        user = prov["user"].to_numpy(np.int64)
        position = prov["position"].to_numpy(np.int64)
        if user.min(initial=1) < 1 or user.max(initial=1) > n_users:
            raise DataError(f"users must lie in 1..{n_users}", path=prov_name, field="user")
        if np.any(position < 1) or np.any(position > lengths[user]):
            raise DataError("position must lie in 1..len(history[user])", path=prov_name, field="position")
        if "split" in prov.columns:
            labels = prov["split"].astype(str).to_numpy()
            bad = sorted(set(labels) - set(SPLITS))
            if bad:
                raise DataError(f"unknown split values {bad}; expected {SPLITS}", path=prov_name, field="split")
            code = np.array([SPLITS.index(s) for s in labels], dtype=np.int8)
        else:
            code = np.where(position == lengths[user], 2, 0).astype(np.int8)
        nxt = hist.values[np.minimum(hist.indptr[user] + position, max(len(hist.values) - 1, 0))]
        default_target = np.where(position < lengths[user], nxt, 0)
        target = prov["target"].to_numpy(np.int64) if "target" in prov.columns else default_target
    meta: dict[str, Any] = {
        "mode": "embeddings",
        "last_only": provenance is None,
        "model": {
            "name": name,
            "class": f"{EmbeddingModel.__module__}.EmbeddingModel",
            "sequential": False,
            "dim": d,
            "sources": {"user_vectors": users_name, "item_table": items_name, "histories": hist_name},
        },
        "dataset": {"name": name, "fingerprint": None, "n_users": n_users, "n_items": n_items},
        "environment": environment_info(),
    }
    with StoreWriter(out_dir, d, meta) as writer:
        writer.append(users_x, user, position, code, target, np.zeros(len(user), dtype=np.int32))
        writer.add_file(ITEM_TABLE_FILE, lambda p: np.save(p, items_full, allow_pickle=False))
        writer.add_file(HISTORIES_FILE, lambda p: _save_npz(p, hist))
        return writer.finish()


def _save_npz(path: Path, hist: Ragged) -> None:
    with open(path, "wb") as f:
        np.savez(f, indptr=hist.indptr, values=hist.values)


class EmbeddingModel(Recommender):
    """A frozen dot-product model over exported tables: ``represent`` looks up the user's vector,
    ``score(h) = h @ E.T``. Row 0 of both tables is the padding placeholder."""

    name: ClassVar[str] = "embeddings"
    sequential = False

    def __init__(self, user_table: Tensor, item_table: Tensor) -> None:
        super().__init__()
        if user_table.shape[1] != item_table.shape[1]:
            raise DataError(f"user table d={user_table.shape[1]} differs from item table d={item_table.shape[1]}")
        self.users = nn.Parameter(user_table.float(), requires_grad=False)
        self.items = nn.Parameter(item_table.float(), requires_grad=False)

    def represent(self, users: Tensor, seqs: Tensor) -> Tensor:
        return self.users[users]

    def item_embeddings(self) -> Tensor:
        return self.items

    @classmethod
    def from_store(cls, store: ActivationStore) -> EmbeddingModel:
        """The model of an embeddings-mode store: each user's vector is its longest-prefix row."""
        table_path = store.path / ITEM_TABLE_FILE
        if store.meta.get("mode") != "embeddings" or not table_path.is_file():
            raise DataError("not an embeddings-mode store (no item_table.npy)", path=store.path)
        items = np.load(table_path, allow_pickle=False)
        n_users = int(store.meta["dataset"]["n_users"])
        idx = store.index
        last = idx.assign(row=np.arange(len(idx))).sort_values(["user", "position"]).groupby("user").tail(1)
        table = np.zeros((n_users + 1, store.d), dtype=np.float32)
        table[last["user"].to_numpy()] = store.load(last["row"].to_numpy())
        return cls(torch.from_numpy(table), torch.from_numpy(np.array(items)))

    @staticmethod
    def histories(store: ActivationStore) -> Ragged:
        """The histories saved with an embeddings-mode store."""
        return load_histories(store.path / HISTORIES_FILE)
