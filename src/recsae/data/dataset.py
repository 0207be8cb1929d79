"""Core data types: interactions with id maps, item metadata, ragged per-user sequences, splits.

Conventions used everywhere in recsae:

- internal user and item ids start at 1; id 0 is padding (row 0 of every item-aligned array is
  a placeholder);
- a user's sequence is chronological (ties broken by the order of the source file);
- model input sequences are left-padded with 0, so the most recent item is always last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: the CLI starts without it
    import torch

SplitName = Literal["train", "valid", "test"]


class FlatPairs(NamedTuple):
    """Values of several ragged rows, flattened with their coordinates."""

    batch_pos: np.ndarray
    """Which of the requested rows each value belongs to."""
    slot: np.ndarray
    """Position of the value within its row."""
    values: np.ndarray


@dataclass(frozen=True)
class Ragged:
    """Rows of int64 values of different lengths, stored as CSR (``indptr`` + ``values``).

    Row ``u`` is ``values[indptr[u]:indptr[u + 1]]``; row 0 is empty by convention (padding id).
    """

    indptr: np.ndarray
    """int64, length n_rows + 1, non-decreasing, starts at 0."""
    values: np.ndarray
    """int64, length indptr[-1]."""

    @classmethod
    def from_lists(cls, rows: list[np.ndarray] | list[list[int]]) -> Ragged:
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        values = (
            np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
            if len(rows) and indptr[-1] > 0
            else np.zeros(0, dtype=np.int64)
        )
        return cls(indptr, values)

    @classmethod
    def from_sorted_pairs(cls, rows: np.ndarray, values: np.ndarray, n_rows: int) -> Ragged:
        """Build from (row, value) pairs already sorted by row (stable order kept)."""
        counts = np.bincount(rows, minlength=n_rows).astype(np.int64)
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, np.asarray(values, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def __getitem__(self, row: int) -> np.ndarray:
        return self.values[self.indptr[row] : self.indptr[row + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def flat_pairs(self, rows: np.ndarray, lengths: np.ndarray | None = None) -> FlatPairs:
        """The values of ``self[rows[b]]`` (only the first ``lengths[b]`` of each when given),
        flattened with their coordinates: no Python loop over rows."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.indptr[rows]
        full = self.indptr[rows + 1] - starts
        n = full if lengths is None else np.minimum(np.asarray(lengths, dtype=np.int64), full)
        slot = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        return FlatPairs(np.repeat(np.arange(len(rows)), n), slot, self.values[np.repeat(starts, n) + slot])

    def row_ids(self) -> np.ndarray:
        """The row of every value (same length as ``values``)."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())

    def concat_rows(self, other: Ragged) -> Ragged:
        """Row-wise concatenation: row u of the result is self[u] followed by other[u]."""
        if len(self) != len(other):
            raise ValueError(f"row counts differ: {len(self)} vs {len(other)}")
        rows = np.concatenate([self.row_ids(), other.row_ids()])
        vals = np.concatenate([self.values, other.values])
        order = np.argsort(rows, kind="stable")
        return Ragged.from_sorted_pairs(rows[order], vals[order], len(self))


@dataclass
class ItemMeta:
    """Item metadata, row-aligned with internal item ids (row 0 is the padding placeholder).

    Every mapping is ``attribute name -> one entry per item row``. Any dataset can fill any of
    them; interpretation builds its concept vocabulary from whatever is present.
    """

    title: list[str]
    """Display name per item ('' where unknown); the external id is used when a dataset has none."""
    categorical: dict[str, list[str]] = field(default_factory=dict)
    """Single-valued attributes (e.g. category, brand); '' where missing."""
    multi: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    """Multi-valued attributes (e.g. genre, planted concept, tag)."""
    text: dict[str, list[str]] = field(default_factory=dict)
    """Free text to be split into words (e.g. title, tags, description)."""
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    """Numeric attributes, float64 with NaN where missing (e.g. year)."""

    def __len__(self) -> int:
        return len(self.title)

    def select(self, rows: np.ndarray) -> ItemMeta:
        """Metadata for the given old item rows, in that order (used when re-indexing)."""
        idx = [int(r) for r in rows]
        return ItemMeta(
            title=[self.title[i] for i in idx],
            categorical={k: [v[i] for i in idx] for k, v in self.categorical.items()},
            multi={k: [v[i] for i in idx] for k, v in self.multi.items()},
            text={k: [v[i] for i in idx] for k, v in self.text.items()},
            numeric={k: v[rows] for k, v in self.numeric.items()},
        )


@dataclass
class InteractionDataset:
    """Implicit-feedback interactions with id maps and metadata.

    ``user``/``item`` hold internal ids (1-based); ``user_ids[u]``/``item_ids[i]`` give the
    external id (as a string) of internal id u/i, with index 0 the padding placeholder ''.
    Rows are sorted by (user, time), stable with respect to the source order.
    """

    name: str
    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    """float64 seconds (or any monotone clock); ties keep source order."""
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_meta: ItemMeta
    rating: np.ndarray | None = None
    user_meta: dict[str, list[str]] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)
    """Provenance: source format and paths, filters applied, raw counts; ``has_time`` False when
    the source had no timestamps (``time`` is then the file order)."""
    row_split: np.ndarray | None = None
    """int8 per interaction (0 train, 1 valid, 2 test) when the source ships its own split
    (ReChorus train/dev/test files); None otherwise. See ``recsae.data.split.given_split``."""

    @property
    def n_users(self) -> int:
        return len(self.user_ids) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def n_interactions(self) -> int:
        return len(self.user)

    def sequences(self) -> Ragged:
        """Chronological item sequence of every user (row 0 empty)."""
        return Ragged.from_sorted_pairs(self.user, self.item, self.n_users + 1)


@dataclass
class SplitData:
    """A dataset split for training and evaluation.

    ``train[u]`` is user u's chronological training sequence; ``valid[u]`` and ``test[u]`` are
    the held-out target items (one each under leave-one-out, any number under a time split;
    empty rows for users without targets). The history a model sees when ranking for the
    validation targets is ``train[u]``; for the test targets it is ``train[u] + valid[u]``.
    """

    dataset: InteractionDataset
    train: Ragged
    valid: Ragged
    test: Ragged
    protocol: str
    """'leave-one-out', 'random', 'time' or 'given' ('leave-one-out (random order: no timestamps)'
    when the data has no time to order by)."""
    info: dict[str, object] = field(default_factory=dict)
    """How the split was made (order, seed, warning) and whom it evaluates (``test_users``,
    ``users_without_test``), as recorded by ``recsae.data.split.make_split``."""

    @property
    def n_users(self) -> int:
        return self.dataset.n_users

    @property
    def n_items(self) -> int:
        return self.dataset.n_items

    def history(self, split: SplitName) -> Ragged:
        """Items a model may see before ranking for ``split`` (and which are masked in ranking)."""
        if split == "test":
            return self.train.concat_rows(self.valid)
        return self.train

    def targets(self, split: SplitName) -> Ragged:
        if split == "train":
            raise ValueError("the train split has no held-out targets")
        return self.valid if split == "valid" else self.test

    def eval_users(self, split: SplitName) -> np.ndarray:
        """Users with at least one target in ``split`` and a non-empty history."""
        t = self.targets(split)
        h = self.history(split)
        return np.flatnonzero((t.lengths() > 0) & (h.lengths() > 0)).astype(np.int64)


def item_popularity(train_items: np.ndarray, n_items: int) -> np.ndarray:
    """Training interactions per item, item-aligned (length n_items + 1, row 0 = 0)."""
    counts = np.bincount(np.asarray(train_items, dtype=np.int64), minlength=n_items + 1)
    counts[0] = 0
    return counts


def input_sequences(history: Ragged, users: np.ndarray, max_len: int) -> torch.Tensor:
    """The model input (B x max_len) for ``users``: the last ``max_len`` items of each user's
    ``history`` row, left-padded with 0 so that the latest item is last."""
    import torch

    users = np.asarray(users, dtype=np.int64)
    ends = history.indptr[users + 1]
    lens = np.minimum(ends - history.indptr[users], max_len)
    row = np.repeat(np.arange(len(users)), lens)
    offs = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    out = np.zeros((len(users), max_len), dtype=np.int64)
    out[row, max_len - lens[row] + offs] = history.values[ends[row] - lens[row] + offs]
    return torch.from_numpy(out)
