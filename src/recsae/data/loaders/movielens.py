"""MovieLens loaders: 100K and 1M official files, the reconstructed 1M ratings CSV, ml-latest(-small).

All return every rating (the raw data); the rating threshold and k-core are applied by
``recsae.data.registry`` so that raw and filtered counts can both be reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsae.data.dataset import InteractionDataset, ItemMeta
from recsae.data.loaders.common import (
    Column,
    ItemCatalog,
    UserCatalog,
    make_dataset,
    open_text,
    read_table,
    split_title_year,
)
from recsae.errors import DataError

LATIN1 = "ISO-8859-1"

_RATING_COLUMNS = (
    Column("user_id", "int"),
    Column("item_id", "int"),
    Column("rating", "float"),
    Column("timestamp", "float"),
)


def _movie_meta(titles: list[str], genres: list[tuple[str, ...]], years: np.ndarray | None = None) -> ItemMeta:
    bare, title_years = split_title_year(titles)
    return ItemMeta(
        title=titles,
        multi={"genre": genres},
        text={"title": bare},
        numeric={"year": title_years if years is None else years},
    )


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DataError("file not found; is the data root right? (see `recsae data fetch`)", path=path)
    return path


# ---------------------------------------------------------------------------------------------
# MovieLens 100K


def _read_genre_names(path: Path) -> list[str]:
    names: list[str] = []
    with open_text(path, LATIN1) as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("|")
            if len(parts) != 2 or not parts[1].isdigit():
                raise DataError("malformed line: expected 'name|index'", path=path, line=lineno)
            if int(parts[1]) != len(names):
                raise DataError(f"expected genre index {len(names)}, found {parts[1]}", path=path, line=lineno)
            names.append(parts[0])
    return names


def load_100k(path: str | Path) -> InteractionDataset:
    """MovieLens 100K from its official folder (``u.data``; ``u.item``, ``u.genre``, ``u.user``
    when present). Item metadata: title, 19 genre flags as ``multi['genre']``, release year as
    ``numeric['year']``, the title without its year as ``text['title']``."""
    root = Path(path)
    data_path = _require(root / "u.data")
    frame = read_table(
        data_path, _RATING_COLUMNS, sep="\t", names=["user_id", "item_id", "rating", "timestamp"]
    )
    items = None
    item_path = root / "u.item"
    if item_path.is_file():
        genre_path = root / "u.genre"
        genre_names = (
            _read_genre_names(genre_path) if genre_path.is_file() else [f"genre{k}" for k in range(19)]
        )
        flags = [f"g{k}" for k in range(len(genre_names))]
        names = ["item_id", "title", "release_date", "video_release_date", "url", *flags]
        cols = [
            Column("item_id", "int"),
            Column("title", "str", required=False),
            Column("release_date", "str", required=False),
            *(Column(f, "int") for f in flags),
        ]
        table = read_table(item_path, cols, sep="|", names=names, encoding=LATIN1)
        flag_matrix = table[flags].to_numpy() > 0
        genres = [tuple(g for g, on in zip(genre_names, row, strict=True) if on) for row in flag_matrix]
        titles = table["title"].fillna("").astype(str).tolist()
        dates = pd.to_datetime(table["release_date"], format="%d-%b-%Y", errors="coerce")
        years = dates.dt.year.to_numpy(dtype=np.float64, na_value=np.nan)
        items = ItemCatalog(table["item_id"].to_numpy(), _movie_meta(titles, genres, years), item_path)
    user_path = root / "u.user"
    users = _read_users(user_path, ["age", "gender", "occupation", "zip"], "|") if user_path.is_file() else None
    return make_dataset(
        "ml-100k",
        frame["user_id"].to_numpy(),
        frame["item_id"].to_numpy(),
        frame["timestamp"].to_numpy(),
        rating=frame["rating"].to_numpy(),
        items=items,
        users=users,
        info={"format": "movielens-100k", "path": str(root), "files": [str(data_path)]},
    )


# ---------------------------------------------------------------------------------------------
# MovieLens 1M

RECONSTRUCTED = Path("partial") / "ratings_reconstructed.csv.gz"


def find_1m_ratings(root: Path) -> Path:
    """The ratings file to use under an ML-1M folder: the official ``ratings.dat(.gz)`` when
    present, else the reconstructed CSV (exact timestamps for ratings >= 4 only)."""
    for candidate in (
        root / "ratings.dat",
        root / "ratings.dat.gz",
        root / RECONSTRUCTED,
        root / RECONSTRUCTED.name,
    ):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"no ratings file: expected ratings.dat, ratings.dat.gz or {RECONSTRUCTED} "
        "(see `recsae data fetch ml-1m`)",
        path=root,
    )


def _read_movies_dat(path: Path) -> ItemCatalog:
    ids: list[int] = []
    titles: list[str] = []
    genres: list[tuple[str, ...]] = []
    with open_text(path, LATIN1) as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split("::")
            if len(parts) != 3:
                raise DataError(
                    f"malformed line: expected 3 '::'-separated fields (MovieID, Title, Genres), found {len(parts)}",
                    path=path,
                    line=lineno,
                )
            if not parts[0].strip().isdigit():
                raise DataError(f"expected an integer, found {parts[0][:40]!r}", path=path, line=lineno, field="MovieID")
            ids.append(int(parts[0]))
            titles.append(parts[1])
            genres.append(tuple(g for g in parts[2].split("|") if g))
    return ItemCatalog(np.asarray(ids, dtype=np.int64), _movie_meta(titles, genres), path)


def _read_users(path: Path, attributes: list[str], sep: str) -> UserCatalog:
    """A MovieLens user file: the user id, then string ``attributes`` in file order."""
    table = read_table(
        path,
        [Column("user_id", "int"), *(Column(f, "str", required=False) for f in attributes)],
        sep=sep,
        names=["user_id", *attributes],
        encoding=LATIN1,
    )
    return UserCatalog(
        table["user_id"].to_numpy(), {f: table[f].fillna("").astype(str).tolist() for f in attributes}, path
    )


def _check_reconstructed_times(frame: pd.DataFrame, path: Path, min_rating: float | None) -> None:
    """The reconstructed CSV lacks timestamps for some ratings 1-3: refuse to use those rows."""
    missing = frame["timestamp"].isna().to_numpy()
    if min_rating is not None:
        missing = missing & (frame["rating"].to_numpy() >= min_rating)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"empty timestamp (rating {frame['rating'].iloc[row]:g}): this reconstructed ML-1M file has exact "
            f"timestamps only for ratings >= 4 ({int(frame['timestamp'].isna().sum()):,} lower ratings have "
            "none). Keep the default --min-rating 4, or put the official ratings.dat into the ml-1m "
            "folder to use all ratings",
            path=path,
            line=row + 2,
            field="timestamp",
        )


def load_1m(
    path: str | Path, *, ratings: str | Path | None = None, min_rating: float | None = None
) -> InteractionDataset:
    """MovieLens 1M: ``ratings.dat`` (or ``.gz``, '::'-separated) or the reconstructed
    ``partial/ratings_reconstructed.csv.gz``, plus ``movies.dat`` and ``users.dat`` when present.

    ``ratings`` overrides which ratings file is read. ``min_rating`` is the threshold the caller
    will apply: ratings below it may lack a timestamp (reconstructed CSV only); any kept rating
    without one is an error naming its line.
    """
    root = Path(path)
    ratings_path = Path(ratings) if ratings is not None else find_1m_ratings(root)
    reconstructed = ".csv" in ratings_path.suffixes
    if reconstructed:
        cols = [
            Column("user_id", "int"),
            Column("movie_id", "int"),
            Column("rating", "float"),
            Column("timestamp", "float", required=False),
        ]
        frame = read_table(_require(ratings_path), cols, sep=",")
        frame = frame.rename(columns={"movie_id": "item_id"})
        _check_reconstructed_times(frame, ratings_path, min_rating)
    else:
        frame = read_table(
            _require(ratings_path),
            _RATING_COLUMNS,
            sep="::",
            names=["user_id", "item_id", "rating", "timestamp"],
            encoding=LATIN1,
        )
    movies = root / "movies.dat"
    users = root / "users.dat"
    return make_dataset(
        "ml-1m",
        frame["user_id"].to_numpy(),
        frame["item_id"].to_numpy(),
        frame["timestamp"].to_numpy(),
        rating=frame["rating"].to_numpy(),
        items=_read_movies_dat(movies) if movies.is_file() else None,
        users=_read_users(users, ["gender", "age", "occupation", "zip"], "::") if users.is_file() else None,
        info={
            "format": "movielens-1m",
            "path": str(root),
            "files": [str(ratings_path)],
            "timestamps": "exact for ratings >= 4 only (reconstructed CSV)" if reconstructed else "official",
        },
    )


# ---------------------------------------------------------------------------------------------
# ml-latest / ml-latest-small


def _read_tags(path: Path) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    table = read_table(
        path, [Column("movieId", "int"), Column("tag", "str", required=False)], sep=","
    )
    table = table.dropna(subset=["tag"])
    table["tag"] = table["tag"].astype(str).str.strip().str.lower()
    table = table[table["tag"] != ""].drop_duplicates(["movieId", "tag"])
    grouped = table.groupby("movieId", sort=True)["tag"].agg(tuple)
    return grouped.index.to_numpy(dtype=np.int64), list(grouped.to_numpy())


def load_latest(path: str | Path) -> InteractionDataset:
    """ml-latest(-small) CSVs: ``ratings.csv``, ``movies.csv`` (pipe-separated genres) and, when
    present, ``tags.csv`` (lower-cased, de-duplicated per movie: ``multi['tag']`` and
    ``text['tags']``)."""
    root = Path(path)
    ratings_path = _require(root / "ratings.csv")
    frame = read_table(
        ratings_path,
        [Column("userId", "int"), Column("movieId", "int"), Column("rating", "float"), Column("timestamp", "float")],
        sep=",",
    )
    items = None
    movies_path = root / "movies.csv"
    if movies_path.is_file():
        table = read_table(
            movies_path,
            [Column("movieId", "int"), Column("title", "str", required=False), Column("genres", "str", required=False)],
            sep=",",
        )
        titles = table["title"].fillna("").astype(str).str.strip().tolist()
        genres = [
            tuple(g for g in str(s).split("|") if g and g != "(no genres listed)") if isinstance(s, str) else ()
            for s in table["genres"].tolist()
        ]
        meta = _movie_meta(titles, genres)
        ids = table["movieId"].to_numpy()
        tags_path = root / "tags.csv"
        if tags_path.is_file():
            tag_ids, tags = _read_tags(tags_path)
            rows = pd.Index(tag_ids).get_indexer(ids)
            meta.multi["tag"] = [tags[r] if r >= 0 else () for r in rows]
            meta.text["tags"] = [" ".join(t) for t in meta.multi["tag"]]
        items = ItemCatalog(ids, meta, movies_path)
    return make_dataset(
        root.name or "ml-latest",
        frame["userId"].to_numpy(),
        frame["movieId"].to_numpy(),
        frame["timestamp"].to_numpy(),
        rating=frame["rating"].to_numpy(),
        items=items,
        info={"format": "ml-latest", "path": str(root), "files": [str(ratings_path)]},
    )
