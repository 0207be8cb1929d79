"""Datasets by name or path: ``load_dataset``, ``load_split``, ``list_datasets``, fingerprints.

Named datasets carry the defaults of implicit-feedback practice: the MovieLens sets become
positives (rating >= 4, the setting RecSAE uses and the only one with exact timestamps for
ML-1M here), then a 5-core. Both defaults are logged at load time and can be overridden
(``min_rating=0`` keeps every MovieLens rating, ``k_core=0`` switches the k-core off).
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsae.data import filters
from recsae.data.dataset import InteractionDataset, SplitData
from recsae.data.split import Protocol, make_split
from recsae.errors import ConfigError, DataError
from recsae.utils import log

DATA_ENV = "RECSAE_DATA"
"""Environment variable naming the root folder of real datasets."""

DEFAULT_DATASET = "synthetic"


@dataclass(frozen=True)
class FormatSpec:
    """A source format: its loader and the filter defaults of its kind of data."""

    name: str
    """Format name as given to ``--format``."""
    loader: str
    """``module:function`` under ``recsae.data.loaders`` (imported lazily)."""
    min_rating: float | None
    """Default rating threshold (None: keep every interaction)."""
    k_core: int
    """Default k-core (0: none)."""
    description: str
    """One line for ``recsae data list``."""


FORMATS: dict[str, FormatSpec] = {
    f.name: f
    for f in (
        FormatSpec("movielens-100k", "movielens:load_100k", 4.0, 5, "official ml-100k folder (u.data, u.item, u.genre, u.user)"),
        FormatSpec("movielens-1m", "movielens:load_1m", 4.0, 5, "ml-1m folder (ratings.dat[.gz] or partial/ratings_reconstructed.csv.gz, movies.dat, users.dat)"),
        FormatSpec("ml-latest", "movielens:load_latest", 4.0, 5, "ml-latest(-small) folder (ratings.csv, movies.csv, tags.csv)"),
        FormatSpec("rechorus", "rechorus:load", None, 0, "ReChorus folder (train/dev/test.csv, item_meta.csv); its split is kept"),
        FormatSpec("recbole", "recbole:load", None, 0, "RecBole atomic files (<name>.inter, .item, .user)"),
        FormatSpec("table", "table:load", None, 0, "CSV/TSV/Parquet interaction table, or a JSON spec naming it, an item table and the column mapping"),
    )
}


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset."""

    name: str
    """Name as given to ``--dataset``."""
    fmt: str
    """Format name (a key of ``FORMATS``), or 'synthetic'."""
    folder: str
    """Folder under the data root ('' for the built-in synthetic data)."""
    description: str
    """One line for ``recsae data list``."""


DATASETS: dict[str, DatasetSpec] = {
    d.name: d
    for d in (
        DatasetSpec("synthetic", "synthetic", "", "built-in synthetic data with planted concepts (default; no download)"),
        DatasetSpec("ml-100k", "movielens-100k", "ml-100k", "MovieLens 100K: 100,000 ratings, 943 users, 1,682 movies"),
        DatasetSpec("ml-1m", "movielens-1m", "ml-1m", "MovieLens 1M: 1,000,209 ratings, 6,040 users, 3,706 movies"),
        DatasetSpec("ml-latest-small", "ml-latest", "ml-latest-small", "MovieLens latest-small: 100,836 ratings, 610 users, 9,724 movies, tags"),
    )
}


def list_datasets() -> list[DatasetSpec]:
    """The named datasets, default first."""
    return list(DATASETS.values())


def resolve_data_root(data_root: str | Path | None) -> Path:
    """The data root: the argument, else ``$RECSAE_DATA``, else a clear error."""
    root = data_root if data_root is not None else os.environ.get(DATA_ENV)
    if not root:
        raise ConfigError(
            f"no data root: pass --data-root DIR or set {DATA_ENV} to the folder holding ml-100k/, "
            "ml-1m/, ... (`recsae data fetch NAME` downloads them)"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ConfigError(f"data root {path} is not a folder (from --data-root or {DATA_ENV})")
    return path


def infer_format(path: Path) -> str | None:
    """Guess a folder's format from its files (None when unsure)."""
    if not path.is_dir():
        if path.suffix == ".inter":
            return "recbole"
        if any(s in (".csv", ".tsv", ".txt", ".parquet", ".json") for s in path.suffixes):
            return "table"
        return None
    probes = (
        ("u.data", "movielens-100k"),
        ("movies.dat", "movielens-1m"),
        ("ratings.dat", "movielens-1m"),
        ("train.csv", "rechorus"),
        ("ratings.csv", "ml-latest"),
    )
    for file, fmt in probes:
        if (path / file).is_file():
            return fmt
    if any(path.glob("*.inter")):
        return "recbole"
    return None


def _loader(fmt: FormatSpec) -> Callable[..., InteractionDataset]:
    import importlib

    module, func = fmt.loader.split(":")
    return getattr(importlib.import_module(f"recsae.data.loaders.{module}"), func)


def _describe_defaults(name: str, min_rating: float | None, k_core: int, rating_default: bool, core_default: bool) -> str:
    rating = "every interaction" if min_rating is None else f"positives = rating >= {min_rating:g}"
    core = "no k-core" if k_core <= 1 else f"{k_core}-core"
    r_note = " (default; --min-rating to change)" if rating_default and min_rating is not None else ""
    k_note = " (default; --k-core to change)" if core_default and k_core > 1 else ""
    return f"dataset {name}: {rating}{r_note}; {core}{k_note}"


def load_dataset(
    name_or_path: str | Path = DEFAULT_DATASET,
    data_root: str | Path | None = None,
    fmt: str | None = None,
    min_rating: float | None = None,
    k_core: int | None = None,
    seed: int = 0,
    table: dict[str, Any] | None = None,
    **options: Any,
) -> InteractionDataset:
    """Load a named dataset or a path in a given format, with its filters applied.

    ``min_rating``/``k_core`` None mean the format's default (MovieLens: rating >= 4, 5-core;
    other formats: none). ``seed`` seeds the synthetic data. ``options`` go to the format's
    loader (e.g. ``mapping=`` and ``items=`` for 'table'); so do the column options of a plain
    table in ``table`` (an error for any other format). A relative path is taken from the
    working directory, then from the data root.
    """
    key = str(name_or_path)
    if key in DATASETS and fmt in (None, DATASETS[key].fmt):
        spec = DATASETS[key]
        if spec.fmt == "synthetic":
            _check_table_options(table, "the synthetic data", "synthetic")
            ds = _load_synthetic(seed, **options)
            log.info(_describe_defaults(key, min_rating, k_core or 0, False, False))
            return _apply_filters(ds, min_rating, k_core or 0, False, False)
        path = resolve_data_root(data_root) / spec.folder
        if not path.exists():
            raise DataError(f"dataset '{key}' not found under the data root (try `recsae data fetch {key}`)", path=path)
        fmt_spec = FORMATS[spec.fmt]
        name = key
    else:
        if fmt is not None and fmt not in FORMATS:
            raise ConfigError(f"unknown format '{fmt}': expected one of {', '.join(FORMATS)}")
        path = Path(key).expanduser()
        if not path.exists() and data_root is not None and (Path(data_root) / key).exists():
            path = Path(data_root) / key
        if not path.exists():
            if fmt is not None or "/" in key or "\\" in key:
                raise DataError("dataset path not found", path=path)
            raise ConfigError(
                f"unknown dataset '{key}': expected one of {', '.join(DATASETS)}, or an existing path "
                f"with --format ({', '.join(FORMATS)})"
            )
        fmt = fmt or infer_format(path)
        if fmt is None:
            raise ConfigError(f"cannot tell the format of {path}; pass --format ({', '.join(FORMATS)})")
        fmt_spec = FORMATS[fmt]
        name = path.name.split(".")[0]

    rating_default = min_rating is None
    core_default = k_core is None
    threshold = fmt_spec.min_rating if min_rating is None else min_rating
    core = fmt_spec.k_core if k_core is None else k_core
    log.info(_describe_defaults(name, threshold, core, rating_default, core_default))
    if table:
        _check_table_options(table, str(path), fmt_spec.name)
        options = options | table
    if fmt_spec.name == "movielens-1m":
        options.setdefault("min_rating", threshold)
    loader = _loader(fmt_spec)
    try:
        inspect.signature(loader).bind(path, **options)
    except TypeError as err:
        raise ConfigError(f"bad option for format '{fmt_spec.name}': {err}") from None
    ds = loader(path, **options)
    ds.name = name
    return _apply_filters(ds, threshold, core, rating_default, core_default)


def _check_table_options(table: dict[str, Any] | None, what: str, fmt: str) -> None:
    """ConfigError when column options are given for anything but a plain table."""
    if table and fmt != "table":
        raise ConfigError(f"the column options (--sep, --user-col, --item-table, ...) describe a plain table; "
                          f"{what} is in format '{fmt}'")


def _apply_filters(
    ds: InteractionDataset, min_rating: float | None, k_core: int, rating_default: bool, core_default: bool
) -> InteractionDataset:
    if min_rating is not None:
        ds = filters.min_rating(ds, min_rating)
    ds = filters.k_core(ds, k_core)
    if np.isnan(ds.time).any():
        row = int(np.flatnonzero(np.isnan(ds.time))[0])
        raise DataError(
            f"interaction of user {ds.user_ids[ds.user[row]]} has no timestamp; a higher --min-rating may drop it",
            path=ds.info.get("path"),  # type: ignore[arg-type]
            field="timestamp",
        )
    ds.info["defaults"] = {
        "min_rating": min_rating,
        "min_rating_is_default": rating_default,
        "k_core": k_core,
        "k_core_is_default": core_default,
    }
    return ds


def _load_synthetic(seed: int, **options: Any) -> InteractionDataset:
    from recsae.data.synthetic import SyntheticConfig, generate_synthetic

    try:
        cfg = SyntheticConfig(seed=seed, **options)
    except TypeError as err:
        raise ConfigError(f"bad option for the synthetic dataset: {err}") from None
    ds = generate_synthetic(cfg).dataset
    ds.info.setdefault("counts", {"raw": filters.counts(ds)})
    ds.info.setdefault("filters", [])
    return ds


def load_split(
    name_or_path: str | Path = DEFAULT_DATASET,
    protocol: Protocol = "auto",
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    sequential: bool = True,
    **kwargs: Any,
) -> SplitData:
    """``load_dataset(name_or_path, **kwargs)`` split by ``protocol`` (see ``make_split``: 'auto' is
    the source's own split when it ships one (ReChorus), else leave-one-out, or the random holdout
    for a general model, ``sequential`` False, on data without timestamps), seeded by ``seed``."""
    ds = load_dataset(name_or_path, **kwargs)
    return make_split(ds, protocol, valid_frac, test_frac, seed=kwargs.get("seed", 0), sequential=sequential)


def dataset_fingerprint(ds: InteractionDataset) -> str:
    """sha256 of the interactions (users, items, times) and the external id maps, for checkpoints."""
    digest = hashlib.sha256()
    for arr in (ds.user, ds.item, ds.time):
        digest.update(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes())
    for ids in (ds.user_ids, ds.item_ids):
        digest.update("\x1f".join(map(str, ids.tolist())).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class DatasetOptions:
    """The dataset choice shared by every command (``--dataset --data-root --format
    --min-rating --k-core``); build it with ``recsae.cli.data.dataset_options``."""

    dataset: str = DEFAULT_DATASET
    """Dataset name or path."""
    data_root: Path | None = None
    """Root of the real datasets (else ``$RECSAE_DATA``)."""
    fmt: str | None = None
    """Format of a path dataset (inferred from its files when None)."""
    min_rating: float | None = None
    """Rating threshold for positives (None: the dataset's default)."""
    k_core: int | None = None
    """k-core (None: the dataset's default; 0: none)."""
    table: dict[str, Any] = field(default_factory=dict)
    """Column options of a plain table, with the keys of its JSON spec (``sep``, ``items``,
    ``item_sep``, ``mapping``), from ``--sep --user-col ... --item-table``; empty: the defaults."""

    def load(self, seed: int = 0, **options: Any) -> InteractionDataset:
        """``load_dataset`` with these options."""
        return load_dataset(
            self.dataset, self.data_root, self.fmt, self.min_rating, self.k_core, seed=seed, table=self.table,
            **options,
        )

    @classmethod
    def from_dict(cls, record: dict[str, Any], data_root: Path | None = None) -> DatasetOptions:
        """The options ``to_dict`` recorded (``data_root`` given: it replaces the recorded one)."""
        root = data_root or (Path(record["data_root"]) if record.get("data_root") else None)
        return cls(record["dataset"], root, record.get("format"), record.get("min_rating"), record.get("k_core"),
                   record.get("table") or {})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for run configs."""
        return {
            "dataset": self.dataset,
            "data_root": None if self.data_root is None else str(self.data_root),
            "format": self.fmt,
            "min_rating": self.min_rating,
            "k_core": self.k_core,
            "table": self.table,
        }
