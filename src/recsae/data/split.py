"""Train / validation / test splits of an ``InteractionDataset`` into ``SplitData``."""

from __future__ import annotations

from typing import Literal

import numpy as np

from recsae.data import filters
from recsae.data.dataset import InteractionDataset, Ragged, SplitData
from recsae.errors import ConfigError, DataError
from recsae.utils import log

Protocol = Literal["auto", "leave-one-out", "time", "global-time", "given", "random"]

PROTOCOLS = ("auto", "leave-one-out", "random", "time", "global-time", "given")

REFERENCE_UTC_OFFSET_HOURS = 8.0
"""The clock of the RecSAE reference's day boundaries (its data was prepared in UTC+8)."""

MIN_LOO_LENGTH = 3
"""Users with fewer interactions stay in train only under leave-one-out (they get no targets)."""

NO_TIME_WARNING = (
    "the data has no timestamps, so leave-one-out holds out a seeded random item per user for "
    "validation and for test, not the last ones in file order"
)


def has_timestamps(ds: InteractionDataset) -> bool:
    """False when the source had no time column (the loader then records ``info['has_time'] = False``)."""
    return ds.info.get("has_time", True) is not False


def _by_label(
    ds: InteractionDataset, label: np.ndarray, protocol: str, info: dict[str, object] | None = None
) -> SplitData:
    """Split rows by label (0 train, 1 valid, 2 test), keeping chronological order in every part."""
    n_rows = ds.n_users + 1
    parts = [
        Ragged.from_sorted_pairs(ds.user[label == k], ds.item[label == k], n_rows) for k in range(3)
    ]
    return SplitData(ds, train=parts[0], valid=parts[1], test=parts[2], protocol=protocol, info=dict(info or {}))


def _holdout_labels(ds: InteractionDataset, rank: np.ndarray) -> np.ndarray:
    """Labels with, per user of at least ``MIN_LOO_LENGTH`` rows, the row of rank 0 as test and
    of rank 1 as validation (``rank`` counts back from the held-out end of each user's rows)."""
    lengths = np.bincount(ds.user, minlength=ds.n_users + 1)
    eligible = lengths[ds.user] >= MIN_LOO_LENGTH
    label = np.zeros(ds.n_interactions, dtype=np.int8)
    label[eligible & (rank == 1)] = 1
    label[eligible & (rank == 0)] = 2
    return label


def _rank_from_end(ds: InteractionDataset) -> np.ndarray:
    """0 for each user's last row, 1 for the one before, ... (rows are sorted by user, time)."""
    lengths = np.bincount(ds.user, minlength=ds.n_users + 1)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return lengths[ds.user] - 1 - (np.arange(ds.n_interactions) - starts[ds.user])


def _random_rank(ds: InteractionDataset, seed: int) -> np.ndarray:
    """A seeded random rank of every row among its user's rows (0, 1, ... in a random order)."""
    keys = np.random.default_rng(seed).random(ds.n_interactions)
    order = np.lexsort((keys, ds.user))
    lengths = np.bincount(ds.user, minlength=ds.n_users + 1)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rank = np.empty(ds.n_interactions, dtype=np.int64)
    rank[order] = np.arange(ds.n_interactions) - starts[ds.user[order]]
    return rank


def leave_one_out(ds: InteractionDataset, seed: int = 0) -> SplitData:
    """Per user: last interaction = test, second-to-last = validation, the rest = train.

    Users with fewer than 3 interactions keep all of them in train (no targets), so they still
    shape the model but are never evaluated; the MovieLens defaults (5-core) have none. Without
    timestamps the file order says nothing about time: the held-out items are then drawn at
    random (seeded), with a warning, and the protocol name says so.
    """
    if has_timestamps(ds):
        return _by_label(ds, _holdout_labels(ds, _rank_from_end(ds)), "leave-one-out")
    log.warning("split: %s", NO_TIME_WARNING)
    return _by_label(
        ds, _holdout_labels(ds, _random_rank(ds, seed)), "leave-one-out (random order: no timestamps)",
        {"order": "random", "seed": seed, "warning": NO_TIME_WARNING},
    )


def random_split(ds: InteractionDataset, seed: int = 0) -> SplitData:
    """Per user, one random interaction = test and another = validation (seeded), the rest =
    train: the holdout of general (non-sequential) models on interaction tables without time.
    Users with fewer than 3 interactions stay in train only, as under leave-one-out."""
    return _by_label(ds, _holdout_labels(ds, _random_rank(ds, seed)), "random", {"order": "random", "seed": seed})


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
    if not has_timestamps(ds):
        raise ConfigError(f"dataset '{ds.name}' has no timestamps, so a time split cannot apply; "
                          "use --protocol random or leave-one-out")
    t_valid = np.quantile(ds.time, 1 - valid_frac - test_frac, method="higher")
    t_test = np.quantile(ds.time, 1 - test_frac, method="higher")
    label = np.zeros(ds.n_interactions, dtype=np.int8)
    label[ds.time >= t_valid] = 1
    label[ds.time >= t_test] = 2
    return _by_label(ds, label, "time")


def global_time_split(
    ds: InteractionDataset, valid_frac: float = 0.1, test_frac: float = 0.1,
    utc_offset_hours: float = REFERENCE_UTC_OFFSET_HOURS,
) -> SplitData:
    """The RecSAE reference's split (ReChorus's ML-1M top-k data): a global split by calendar day.

    Days are counted from the first day in the data, on a clock ``utc_offset_hours`` from UTC.
    With ``last`` the last day's number, days up to ``int(last * (1 - valid - test))`` are
    training, days up to ``int(last * (1 - test))`` validation and later days test (80/10/10 by
    default). Held-out rows of a user or an item without training rows are dropped, as the
    reference does; every held-out row is then a target (many per user).
    """
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ConfigError(
            f"global-time split fractions must satisfy 0 < valid < 1, 0 < test < 1, valid + test < 1; "
            f"got valid={valid_frac}, test={test_frac}"
        )
    if not has_timestamps(ds):
        raise ConfigError(f"dataset '{ds.name}' has no timestamps, so a global-time split cannot apply; "
                          "use --protocol random or leave-one-out")
    day = np.floor((ds.time + utc_offset_hours * 3600.0) / 86400.0).astype(np.int64)
    day -= day.min()
    last = int(day.max())
    # the reference's literal fractions (0.8, 0.9): round() keeps 1 - 0.1 - 0.1 from drifting below 0.8
    train_last = int(last * round(1 - valid_frac - test_frac, 12))
    valid_last = int(last * round(1 - test_frac, 12))
    label = np.where(day <= train_last, 0, np.where(day <= valid_last, 1, 2)).astype(np.int8)
    train = label == 0
    known = np.zeros(ds.n_users + 1, dtype=bool), np.zeros(ds.n_items + 1, dtype=bool)
    known[0][ds.user[train]] = True
    known[1][ds.item[train]] = True
    keep = train | (known[0][ds.user] & known[1][ds.item])
    dropped = int((~keep).sum())
    if dropped:
        ds = filters.subset(ds, keep, "global-time: held-out rows without a training user or item dropped")
        label = label[keep]
    info: dict[str, object] = {"utc_offset_hours": utc_offset_hours, "days": last + 1, "train_last_day": train_last,
            "valid_last_day": valid_last, "dropped_rows": dropped}
    log.info("split: global-time, days 0-%d train, %d-%d validation, %d-%d test (UTC%+g); %d held-out rows "
             "without a training user or item dropped", train_last, train_last + 1, valid_last, valid_last + 1,
             last, utc_offset_hours, dropped)
    return _by_label(ds, label, "global-time", info)


def given_split(ds: InteractionDataset) -> SplitData:
    """The split shipped with the data (ReChorus train/dev/test files), unchanged.

    A given split without validation or test rows is an error naming the missing files (the
    loader lists them in ``info['missing_files']``): a declared protocol re-splits the rows instead.
    """
    if ds.row_split is None:
        raise DataError(f"dataset '{ds.name}' has no given split (only ReChorus folders ship one)")
    missing = ", ".join(ds.info.get("missing_files", []))  # type: ignore[arg-type]
    for label, part in ((1, "validation"), (2, "test")):
        if not (ds.row_split == label).any():
            why = f"missing {missing}" if missing else "no rows of it are left"
            raise DataError(
                f"the given split has no {part} part ({why}); add it, or pass --protocol "
                "leave-one-out (or random, or time) to split the given rows by that rule",
                path=ds.info.get("path"),  # type: ignore[arg-type]
            )
    return _by_label(ds, ds.row_split, "given")


def make_split(
    ds: InteractionDataset,
    protocol: Protocol = "auto",
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    *,
    seed: int = 0,
    sequential: bool = True,
) -> SplitData:
    """Split by protocol name and check that there is something to evaluate.

    'auto' keeps a given split when the source has one; else leave-one-out, except for a general
    model (``sequential`` False) on data without timestamps, which gets the random holdout.
    ``seed`` seeds the random holdouts. A split without validation or test users is an error;
    users without targets are counted in ``info``.
    """
    if protocol == "auto":
        if ds.row_split is not None:
            protocol = "given"
        else:
            protocol = "leave-one-out" if sequential or has_timestamps(ds) else "random"
    if protocol == "leave-one-out":
        split = leave_one_out(ds, seed)
    elif protocol == "random":
        split = random_split(ds, seed)
    elif protocol == "time":
        split = time_split(ds, valid_frac, test_frac)
    elif protocol == "global-time":
        split = global_time_split(ds, valid_frac, test_frac)
    elif protocol == "given":
        split = given_split(ds)
    else:
        raise ConfigError(f"unknown split protocol '{protocol}'; expected one of {', '.join(PROTOCOLS)}")
    _check_usable(split)
    _check_targets(split)
    return split


def _check_targets(split: SplitData) -> None:
    """DataError when no user has a validation or test target; count the users left out."""
    for part in ("valid", "test"):
        if len(split.eval_users(part)) == 0:
            raise DataError(
                f"the {split.protocol} split of '{split.dataset.name}' leaves no user with a {part} item "
                f"and a history (leave-one-out and random need users with at least {MIN_LOO_LENGTH} "
                "interactions); nothing could be evaluated",
                path=split.dataset.info.get("path"),  # type: ignore[arg-type]
            )
    evaluated = len(split.eval_users("test"))
    split.info["test_users"] = evaluated
    split.info["users_without_test"] = split.n_users - evaluated
    if split.n_users > evaluated:
        log.info("split: %d of %d users have no test item or no history and are not evaluated",
                 split.n_users - evaluated, split.n_users)


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
        # (a given split without a part was refused by given_split, naming the missing file)
        if split.protocol in ("leave-one-out", "random"):
            why = f"{split.protocol} needs users with at least {MIN_LOO_LENGTH} interactions and none has that many"
        else:
            why = "too few distinct timestamps for a time split; try --protocol leave-one-out"
        raise DataError(f"dataset '{ds.name}' gives no {name} interactions ({split.protocol} split): {why}",
                        path=where)  # type: ignore[arg-type]
