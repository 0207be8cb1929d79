"""Generated inputs for every loader: each gives a valid dataset or a RecsaeError, nothing else."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from fuzzing import delimited, fuzz, loads_or_refuses, scratch, write
from hypothesis import event, given
from hypothesis import strategies as st

from recsae.data.registry import load_dataset

# a warning of the parser means it guessed (dropped fields, say): that is a bug too
pytestmark = pytest.mark.filterwarnings(
    "error::pandas.errors.ParserWarning", "ignore:invalid value encountered in cast:RuntimeWarning",
)

LOG = ["user_id", "item_id", "timestamp"]


@fuzz(200)
@given(content=delimited(LOG, ",", 3), suffix=st.sampled_from([".csv", ".tsv", ".csv.gz"]), damage=st.integers(0, 12))
def test_any_csv_or_tsv_table_loads_or_is_refused(content: bytes, suffix: str, damage: int) -> None:
    if suffix == ".tsv":
        content = content.replace(b",", b"\t")
    with scratch() as root:
        path = root / f"log{suffix}"
        write(path, content, damage)
        event(loads_or_refuses("table", lambda: load_dataset(path, fmt="table")))


COLUMN = st.one_of(*(st.lists(s, min_size=8, max_size=8) for s in (
    st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=4), st.integers(1, 3), st.datetimes(),
    st.one_of(st.none(), st.integers(1, 3)))))


CLEAN = st.fixed_dictionaries({
    "user_id": st.lists(st.integers(1, 2), min_size=8, max_size=8),
    "item_id": st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=8, max_size=8),
    "timestamp": st.one_of(*(st.lists(s, min_size=8, max_size=8)
                             for s in (st.integers(0, 10**12), st.floats(), st.datetimes()))),
})


@fuzz(60)
@given(columns=st.one_of(CLEAN, st.dictionaries(st.sampled_from([*LOG, "rating", "other"]), COLUMN, max_size=5)),
       garbage=st.one_of(st.none(), st.none(), st.binary(max_size=64)))
def test_any_parquet_table_loads_or_is_refused(columns: dict[str, list], garbage: bytes | None) -> None:
    with scratch() as root:
        path = root / "log.parquet"
        if garbage is not None:
            path.write_bytes(garbage)
        else:
            pd.DataFrame(columns, index=range(8)).to_parquet(path)
        event(loads_or_refuses("parquet", lambda: load_dataset(path, fmt="table")))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)
MAPPING_KEYS = ["user", "item", "time", "rating", "item_id", "title", "multi", "categorical", "text", "numeric", "colour"]


VALID_SPEC = {"interactions": "log.csv", "items": "items.csv", "mapping": {"title": "title", "multi": {"genres": "|"}}}


@fuzz(100)
@given(
    spec=st.just(VALID_SPEC) | st.fixed_dictionaries(
        {},
        optional={"interactions": st.sampled_from(["log.csv", "missing.csv", "", "items.csv"]) | JSON,
                  "items": st.sampled_from(["items.csv", "log.csv", None]) | JSON,
                  "sep": st.sampled_from([",", "\t", ";", None]) | JSON, "item_sep": st.sampled_from([",", None]) | JSON,
                  "mapping": st.dictionaries(st.sampled_from(MAPPING_KEYS),
                                             st.sampled_from(["user_id", "item_id", "timestamp", "title", "genres",
                                                              None, ["genres"], {"genres": "|"}]) | JSON, max_size=4),
                  "extra": JSON}),
    log=delimited(LOG, ",", 3),
    items=delimited(["item_id", "title", "genres"], ",", 3),
    garbage=st.one_of(st.none(), st.binary(max_size=64)),
)
def test_any_json_spec_loads_or_is_refused(spec: dict, log: bytes, items: bytes, garbage: bytes | None) -> None:
    with scratch() as root:
        (root / "log.csv").write_bytes(log)
        (root / "items.csv").write_bytes(items)
        path = root / "spec.json"
        path.write_bytes(garbage if garbage is not None else json.dumps(spec).encode())
        event(loads_or_refuses("json spec", lambda: load_dataset(path, fmt="table")))


TRAIN = ["user_id", "item_id", "time"]


@fuzz(100)
@given(
    parts=st.dictionaries(st.sampled_from(["train.csv", "dev.csv", "test.csv"]),
                          st.one_of(delimited(TRAIN, "\t", 3), delimited([*TRAIN, "neg_items"], "\t", 4)), max_size=3),
    meta=st.one_of(st.none(), delimited(["item_id", "i_genre_c", "i_year_f", "r_complement"], "\t", 4)),
)
def test_any_rechorus_folder_loads_or_is_refused(parts: dict[str, bytes], meta: bytes | None) -> None:
    with scratch() as root:
        for name, content in parts.items():
            (root / name).write_bytes(content)
        if meta is not None:
            (root / "item_meta.csv").write_bytes(meta)
        event(loads_or_refuses("rechorus", lambda: load_dataset(root, fmt="rechorus")))


INTER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
LABELS = st.sampled_from([*INTER, "user_id", "genre:token_seq", "x:float_seq", "title:token", "age:int", "item_id:token"])


@fuzz(100)
@given(
    inter=st.one_of(delimited(INTER, "\t", 4), st.lists(LABELS, min_size=1, max_size=5).flatmap(
        lambda head: delimited(head, "\t", len(head)))),
    item=st.one_of(st.none(), delimited(["item_id:token", "movie_title:token_seq", "genre:token_seq", "year:float"], "\t", 4)),
    user=st.one_of(st.none(), delimited(["user_id:token", "age:token"], "\t", 2)),
)
def test_any_recbole_folder_loads_or_is_refused(inter: bytes, item: bytes | None, user: bytes | None) -> None:
    with scratch() as root:
        (root / "x.inter").write_bytes(inter)
        for suffix, content in ((".item", item), (".user", user)):
            if content is not None:
                (root / f"x{suffix}").write_bytes(content)
        event(loads_or_refuses("recbole", lambda: load_dataset(root, fmt="recbole")))


def _pipe_item(width: int) -> st.SearchStrategy[bytes]:
    return delimited(None, "|", width)


ML_FILES = {
    "movielens-100k": {"u.data": delimited(None, "\t", 4), "u.item": _pipe_item(24),
                       "u.genre": delimited(None, "|", 2), "u.user": delimited(None, "|", 5)},
    "movielens-1m": {"ratings.dat": delimited(None, "::", 4), "movies.dat": delimited(None, "::", 3),
                     "users.dat": delimited(None, "::", 5)},
    "ml-latest": {"ratings.csv": delimited(["userId", "movieId", "rating", "timestamp"], ",", 4),
                  "movies.csv": delimited(["movieId", "title", "genres"], ",", 3),
                  "tags.csv": delimited(["userId", "movieId", "tag", "timestamp"], ",", 4)},
}


@st.composite
def movielens_folder(draw: st.DrawFn) -> tuple[str, dict[str, bytes]]:
    fmt = draw(st.sampled_from(sorted(ML_FILES)))
    files = {name: draw(content) for name, content in ML_FILES[fmt].items() if draw(st.integers(0, 4))}
    return fmt, files


@fuzz(200)
@given(folder=movielens_folder(), min_rating=st.sampled_from([None, 0.0, 4.0]))
def test_any_movielens_folder_loads_or_is_refused(folder: tuple[str, dict[str, bytes]], min_rating: float | None) -> None:
    fmt, files = folder
    with scratch() as root:
        for name, content in files.items():
            (root / name).write_bytes(content)
        event(loads_or_refuses(fmt, lambda: load_dataset(root, fmt=fmt, min_rating=min_rating, k_core=0)))
