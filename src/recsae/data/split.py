"""Train / validation / test splits of an ``InteractionDataset`` into ``SplitData``."""

from __future__ import annotations

from typing import Literal

import numpy as np

from recsae.data.dataset import InteractionDataset, Ragged, SplitData
from recsae.errors import ConfigError, DataError

Protocol = Literal["auto", "leave-one-out", "time", "given"]

MIN_LOO_LENGTH = 3
"""Users with fewer interactions stay in train only under leave-one-out (they get no targets)."""


def _by_label(ds: InteractionDataset, label: np.ndarray, protocol: str) -> SplitData:
    """Split rows by label (0 train, 1 valid, 2 test), keeping chronological order in every part."""
    n_rows = ds.n_users + 1
    parts = [
        Ragged.from_sorted_pairs(ds.user[label == k], ds.item[label == k], n_rows) for k in range(3)
    ]
    return SplitData(ds, train=parts[0], valid=parts[1], test=parts[2], protocol=protocol)


def leave_one_out(ds: InteractionDataset) -> SplitData:
    """Per user: last interaction = test, second-to-last = validation, the rest = train.

    Users with fewer than 3 interactions keep all of them in train (no targets), so they still
    shape the model but are never evaluated; the MovieLens defaults (5-core) have none.
    """
    lengths = np.bincount(ds.user, minlength=ds.n_users + 1)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    position = np.arange(ds.n_interactions) - starts[ds.user]
    from_end = lengths[ds.user] - position  # 1 for the last interaction
    eligible = lengths[ds.user] >= MIN_LOO_LENGTH
    label = np.zeros(ds.n_interactions, dtype=np.int8)
    label[eligible & (from_end == 2)] = 1
    label[eligible & (from_end == 1)] = 2
    return _by_label(ds, label, "leave-one-out")


def time_split(ds: InteractionDataset, valid_frac: float = 0.1, test_frac: float = 0.1) -> SplitData:
    """Global split by timestamp quantiles: the latest ``test_frac`` of interactions (by time)
    are test targets, the ``valid_frac`` before them validation targets, the rest train.

    Boundaries are timestamps, so ties at a boundary all go to the later part.
    """
    if not (0 <= valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ConfigError(
            f"time split fractions must satisfy 0 <= valid < 1, 0 < test < 1, valid + test < 1; "
            f"got valid={valid_frac}, test={test_frac}"
        )
    t_valid = np.quantile(ds.time, 1 - valid_frac - test_frac, method="higher")
    t_test = np.quantile(ds.time, 1 - test_frac, method="higher")
    label = np.zeros(ds.n_interactions, dtype=np.int8)
    label[ds.time >= t_valid] = 1
    label[ds.time >= t_test] = 2
    return _by_label(ds, label, "time")


def given_split(ds: InteractionDataset) -> SplitData:
    """The split shipped with the data (ReChorus train/dev/test files), unchanged."""
    if ds.row_split is None:
        raise DataError(f"dataset '{ds.name}' has no given split (only ReChorus folders ship one)")
    return _by_label(ds, ds.row_split, "given")


def make_split(
    ds: InteractionDataset, protocol: Protocol = "auto", valid_frac: float = 0.1, test_frac: float = 0.1
) -> SplitData:
    """Split by protocol name; 'auto' keeps a given split when the source has one, else leave-one-out."""
    if protocol == "auto":
        protocol = "given" if ds.row_split is not None else "leave-one-out"
    if protocol == "leave-one-out":
        split = leave_one_out(ds)
    elif protocol == "time":
        split = time_split(ds, valid_frac, test_frac)
    elif protocol == "given":
        split = given_split(ds)
    else:
        raise ConfigError(f"unknown split protocol '{protocol}'; expected auto, leave-one-out, time or given")
    _check_usable(split)
    return split


_GIVEN_FILES = {"train": "train.csv", "valid": "dev.csv", "test": "test.csv"}


def _check_usable(split: SplitData) -> None:
    """DataError unless the split has two users and rows in each part: a model needs training
    rows, early stopping validation targets, the metrics test targets, and the interpretation
    fits its rules on some users and validates them on others."""
    ds = split.dataset
    where = ds.info.get("path")
    if ds.n_users < 2:
        raise DataError(f"dataset '{ds.name}' has a single user; recsae needs at least two (the interpretation "
                        "fits on some users and validates on the others)", path=where)  # type: ignore[arg-type]
    for name in ("train", "valid", "test"):
        if len(getattr(split, name).values):
            continue
        if split.protocol == "given":
            why = (f"its {_GIVEN_FILES[name]} is missing or empty; pass --protocol leave-one-out to split the "
                   "interactions there are")
        elif split.protocol == "leave-one-out":
            why = f"leave-one-out needs users with at least {MIN_LOO_LENGTH} interactions and none has that many"
        else:
            why = "too few distinct timestamps for a time split; try --protocol leave-one-out"
        raise DataError(f"dataset '{ds.name}' gives no {name} interactions ({split.protocol} split): {why}",
                        path=where)  # type: ignore[arg-type]
