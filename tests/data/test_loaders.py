"""Loaders: real MovieLens files (from the shared data root) and small files written here."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pandas as pd
import pytest

from recsae.data import load_dataset, load_split
from recsae.data.loaders import movielens, recbole, rechorus, table
from recsae.data.loaders.table import TableMapping
from recsae.errors import DataError


def _sorted_by_user_time(ds) -> bool:
    return bool(np.all((np.diff(ds.user) > 0) | ((np.diff(ds.user) == 0) & (np.diff(ds.time) >= 0))))


# --------------------------------------------------------------------------- real MovieLens files


def test_ml100k_raw_counts_and_metadata(data_root):
    ds = movielens.load_100k(data_root / "ml-100k")
    assert (ds.n_interactions, ds.n_users, ds.n_items) == (100_000, 943, 1_682)
    assert ds.user_ids[0] == "" and ds.item_ids[0] == ""
    toy = int(np.flatnonzero(ds.item_ids == "1")[0])
    assert ds.item_meta.title[toy] == "Toy Story (1995)"
    assert ds.item_meta.text["title"][toy] == "Toy Story"
    assert ds.item_meta.multi["genre"][toy] == ("Animation", "Children's", "Comedy")
    assert ds.item_meta.numeric["year"][toy] == 1995
    assert len(ds.item_meta) == ds.n_items + 1
    assert ds.user_meta["occupation"][int(np.flatnonzero(ds.user_ids == "1")[0])] == "technician"
    assert _sorted_by_user_time(ds)
    assert ds.info["counts"]["raw"] == {"interactions": 100_000, "users": 943, "items": 1_682}


def test_ml100k_rows_match_the_file_for_one_user(data_root):
    ds = movielens.load_100k(data_root / "ml-100k")
    raw = pd.read_csv(data_root / "ml-100k" / "u.data", sep="\t", names=["u", "i", "r", "t"])
    mine = raw[raw.u == 196].sort_values("t", kind="stable")
    u = int(np.flatnonzero(ds.user_ids == "196")[0])
    rows = ds.user == u
    assert ds.item_ids[ds.item[rows]].tolist() == mine.i.astype(str).tolist()
    assert ds.time[rows].tolist() == mine.t.astype(float).tolist()


def test_ml1m_official_format_on_the_partial_ratings_file(data_root):
    path = data_root / "ml-1m" / "partial" / "ratings.dat.gz"
    ds = movielens.load_1m(data_root / "ml-1m", ratings=path)
    with gzip.open(path, "rt", encoding="latin-1") as fh:
        raw = pd.read_csv(fh, sep=":", header=None, usecols=[0, 2])
    assert ds.n_interactions == len(raw) == 487_650
    assert ds.n_users == raw[0].nunique() == 2_999
    assert ds.n_items == raw[2].nunique()
    assert ds.info["timestamps"] == "official"
    heat = int(np.flatnonzero(ds.item_ids == "1")[0])
    assert ds.item_meta.title[heat] == "Toy Story (1995)"
    assert ds.item_meta.multi["genre"][heat] == ("Animation", "Children's", "Comedy")
    assert ds.user_meta["gender"][1] == "F"  # users.dat: 1::F::1::10::48067
    assert _sorted_by_user_time(ds)


def test_ml1m_positives_have_the_published_counts(data_root):
    ds = load_dataset("ml-1m", data_root=data_root, k_core=0)
    assert (ds.n_interactions, ds.n_users, ds.n_items) == (575_281, 6_038, 3_533)
    assert ds.info["counts"]["raw"] == {"interactions": 1_000_209, "users": 6_040, "items": 3_706}
    assert not np.isnan(ds.time).any()


def test_ml1m_reconstructed_without_threshold_explains_the_missing_timestamps(data_root):
    with pytest.raises(DataError) as err:
        load_dataset("ml-1m", data_root=data_root, min_rating=0)
    assert err.value.line == 487_653 and err.value.field == "timestamp"
    assert "official ratings.dat" in str(err.value)


def test_ml_latest_small_tags_are_lower_cased_multi_and_text(data_root):
    ds = movielens.load_latest(data_root / "ml-latest-small")
    assert (ds.n_interactions, ds.n_users, ds.n_items) == (100_836, 610, 9_724)
    tagged = [t for t in ds.item_meta.multi["tag"] if t]
    assert tagged and all(tag == tag.lower() for tags in tagged for tag in tags)
    jumanji = int(np.flatnonzero(ds.item_ids == "2")[0])
    assert "robin williams" in ds.item_meta.multi["tag"][jumanji]
    assert "robin williams" in ds.item_meta.text["tags"][jumanji]
    assert ds.item_meta.multi["genre"][jumanji] == ("Adventure", "Children", "Fantasy")


# --------------------------------------------------------------------------- ReChorus


def _write_rechorus(root):
    root.mkdir()
    (root / "train.csv").write_text(
        "user_id\titem_id\ttime\n1\t1\t10\n1\t2\t20\n2\t2\t15\n2\t3\t16\n3\t1\t5\n3\t3\t6\n"
    )
    (root / "dev.csv").write_text(
        "user_id\titem_id\ttime\tneg_items\n1\t3\t30\t[4, 2]\n2\t1\t17\t[4, 1]\n3\t2\t7\t[4, 4]\n"
    )
    (root / "test.csv").write_text(
        "user_id\titem_id\ttime\tneg_items\n1\t4\t40\t[1, 2]\n2\t4\t18\t[2, 3]\n3\t4\t8\t[1, 1]\n"
    )
    (root / "item_meta.csv").write_text(
        "item_id\ti_genre_c\ti_year_f\tr_complement\n1\t2\t1995\t[2]\n2\t1\t1999.0\t[]\n"
        "3\t0\t2001\t[1, 2]\n4\t1\t\t[]\n5\t3\t2003\t[]\n"
    )


def test_rechorus_loads_unchanged_and_keeps_its_split(tmp_path):
    root = tmp_path / "ML_toy"
    _write_rechorus(root)
    ds = rechorus.load(root)
    assert ds.name == "ML_toy"
    # ids 1..n are kept as internal ids; item 5 appears only in item_meta and is dropped
    assert ds.item_ids.tolist() == ["", "1", "2", "3", "4"]
    assert ds.user_ids.tolist() == ["", "1", "2", "3"]
    assert ds.item_meta.categorical["genre"] == ["", "2", "1", "", "1"]
    np.testing.assert_array_equal(ds.item_meta.numeric["year"], [np.nan, 1995, 1999, 2001, np.nan])
    assert ds.info["ignored_columns"] == ["r_complement"]
    assert ds.info["given_split"] == {"train.csv": 6, "dev.csv": 3, "test.csv": 3}
    split = load_split(root, fmt="rechorus")
    assert split.protocol == "given"
    assert split.train[1].tolist() == [1, 2] and split.valid[1].tolist() == [3] and split.test[1].tolist() == [4]
    assert split.train[3].tolist() == [1, 3] and split.valid[3].tolist() == [2] and split.test[3].tolist() == [4]


@pytest.mark.parametrize("missing", [("dev.csv", "test.csv"), ("dev.csv",)])
def test_rechorus_folder_missing_a_split_file_is_an_error_naming_it_unless_a_protocol_resplits(tmp_path, missing):
    root = tmp_path / "rc"
    _write_rechorus(root)
    for name in missing:
        (root / name).unlink()
    with (root / "train.csv").open("a") as fh:  # a third row per user, so leave-one-out has targets
        fh.write("1\t5\t50\n2\t5\t19\n3\t5\t9\n")
    with pytest.raises(DataError, match=f"no validation part .missing {re.escape(str(root / 'dev.csv'))}"):
        load_split(root, fmt="rechorus")
    split = load_split(root, "leave-one-out", fmt="rechorus")
    assert split.protocol == "leave-one-out"
    # user 1's rows by time: 1 (10), 2 (20), 4 (40; in test.csv), 5 (50)
    ids = split.dataset.item_ids
    assert ids[split.test[1]].tolist() == ["5"]
    assert ids[split.valid[1]].tolist() == (["2"] if "test.csv" in missing else ["4"])


def test_rechorus_reads_titles_and_every_item_table_and_reports_what_it_ignores(tmp_path, caplog):
    root = tmp_path / "rc"
    _write_rechorus(root)
    (root / "item_meta.csv").write_text(
        "item_id\ti_genre_c\ti_year_f\tr_complement\tnote\n1\t2\t1995\t[2]\tcult classic\n2\t1\t1999\t[]\t\n"
        "3\t0\t2001\t[1]\t\n4\t1\t\t[]\tsequel\n"
    )
    (root / "item_meta_all_info.csv").write_text(
        "item_id\ttitle\tgenres\tmovie_id\n1\tHeat (1995)\tAction|Crime\t6\n2\tAlien\tSci-Fi|Horror\t924\n"
        "3\tFargo\tCrime\t608\n4\tUp\t\t9\n"
    )
    with caplog.at_level("INFO", logger="recsae"):
        ds = rechorus.load(root)
    assert ds.item_meta.title == ["", "Heat (1995)", "Alien", "Fargo", "Up"]
    assert ds.item_meta.text["title"][2] == "Alien"
    assert ds.item_meta.multi["genres"] == [(), ("Action", "Crime"), ("Sci-Fi", "Horror"), ("Crime",), ()]
    assert ds.item_meta.categorical["genre"] == ["", "2", "1", "", "1"]  # code 0 is ReChorus' 'missing'
    assert ds.item_meta.text["note"] == ["", "cult classic", "", "", "sequel"]
    assert ds.info["ignored_columns"] == ["r_complement", "movie_id"]
    assert "ignored columns: r_complement, movie_id" in caplog.text


def test_rechorus_format_is_inferred_from_the_folder(tmp_path):
    root = tmp_path / "rc"
    _write_rechorus(root)
    assert load_dataset(root).info["format"] == "rechorus"


# --------------------------------------------------------------------------- RecBole


def test_recbole_atomic_files_map_fields_and_sequences(tmp_path):
    root = tmp_path / "toy"
    root.mkdir()
    (root / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "10\t7\t5\t300\n10\t2\t3\t100\n2\t7\t4\t50\n2\t100\t1\t60\n"
    )
    (root / "toy.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq\tscore:float\tvec:float_seq\n"
        "2\tJumanji\t1995\tAdventure Children\t0.5\t1 2\n7\tHeat\t1995\tAction Crime\t\t3 4\n"
        "100\tToy Story\t1995\tAnimation\t2.5\t5 6\n55\tUnused\t2000\tDrama\t1\t7\n"
    )
    (root / "toy.user").write_text("user_id:token\tage:token\tgender:token\n2\t24\tM\n10\t53\tF\n")
    ds = recbole.load(root)
    assert ds.user_ids.tolist() == ["", "2", "10"]  # numeric order, not '10' < '2'
    assert ds.item_ids.tolist() == ["", "2", "7", "100"]
    assert ds.item_meta.title == ["", "Jumanji", "Heat", "Toy Story"]
    assert ds.item_meta.multi["genre"] == [(), ("Adventure", "Children"), ("Action", "Crime"), ("Animation",)]
    assert ds.item_meta.categorical["release_year"] == ["", "1995", "1995", "1995"]
    np.testing.assert_array_equal(ds.item_meta.numeric["score"], [np.nan, 0.5, np.nan, 2.5])
    assert ds.info["ignored_columns"] == ["vec"]
    assert ds.user_meta["gender"] == ["", "M", "F"]
    # user '10' (internal 2): chronological order 2 (t=100) then 7 (t=300)
    assert ds.item_ids[ds.item[ds.user == 2]].tolist() == ["2", "7"]
    assert ds.rating is not None and ds.rating.tolist() == [4, 1, 3, 5]


def test_recbole_header_without_type_is_rejected(tmp_path):
    (tmp_path / "x.inter").write_text("user_id\titem_id:token\n1\t2\n")
    with pytest.raises(DataError) as err:
        recbole.load(tmp_path)
    assert err.value.line == 1 and err.value.field == "user_id"


# --------------------------------------------------------------------------- generic tables


def test_table_csv_with_item_table_and_column_mapping(tmp_path):
    (tmp_path / "log.csv").write_text("uid,iid,ts,stars\nann,b,2,4\nann,a,1,5\nbob,a,3,2\n")
    (tmp_path / "items.tsv").write_text("id\tname\ttags\nb\tBee\tx|y\na\tAy\ty\nz\tZed\tq\n")
    mapping = TableMapping(user="uid", item="iid", time="ts", rating="stars", item_id="id", title="name", multi={"tags": "|"})
    ds = table.load(tmp_path / "log.csv", mapping=mapping, items=tmp_path / "items.tsv")
    assert ds.user_ids.tolist() == ["", "ann", "bob"]
    assert ds.item_ids.tolist() == ["", "a", "b"]
    assert ds.item_meta.title == ["", "Ay", "Bee"]
    assert ds.item_meta.multi["tags"] == [(), ("y",), ("x", "y")]
    assert ds.item.tolist() == [1, 2, 1]  # ann: a (t=1), b (t=2); bob: a
    filtered = load_dataset(tmp_path / "log.csv", fmt="table", min_rating=4, mapping=mapping, items=tmp_path / "items.tsv")
    assert filtered.n_interactions == 2


def test_table_parquet_with_datetime_timestamps(tmp_path):
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "item_id": [5, 6, 5],
            "timestamp": pd.to_datetime(["2020-01-02", "2020-01-01", "2020-01-03"]),
        }
    )
    frame.to_parquet(tmp_path / "log.parquet")
    ds = table.load(tmp_path / "log.parquet")
    assert ds.item_ids[ds.item].tolist() == ["6", "5", "5"]
    assert ds.time[0] == pd.Timestamp("2020-01-01").timestamp()


def test_ties_in_time_keep_the_source_order(tmp_path):
    (tmp_path / "t.csv").write_text("user_id,item_id,timestamp\n1,c,5\n1,a,5\n1,b,5\n")
    ds = table.load(tmp_path / "t.csv")
    assert ds.item_ids[ds.item].tolist() == ["c", "a", "b"]


def test_table_json_spec_names_files_and_mapping(tmp_path):
    (tmp_path / "log.tsv").write_text("uid\tiid\n7\tb\n7\ta\n")
    (tmp_path / "items.csv").write_text("id,name,genres\na,Ay,x|y\nb,Bee,\n")
    (tmp_path / "spec.json").write_text(
        '{"interactions": "log.tsv", "items": "items.csv", "mapping": {"user": "uid", "item": "iid",'
        ' "time": null, "item_id": "id", "title": "name", "multi": {"genres": "|"}}}'
    )
    ds = load_dataset(tmp_path / "spec.json")
    assert ds.info["format"] == "table"
    assert ds.item_ids[ds.item].tolist() == ["b", "a"]  # no time column: file order
    assert ds.item_meta.multi["genres"] == [(), ("x", "y"), ()]
    assert ds.item_meta.title == ["", "Ay", "Bee"]


def test_ml1m_folder_prefers_the_official_ratings_dat(tmp_path):
    root = tmp_path / "ml-1m"
    (root / "partial").mkdir(parents=True)
    (root / "ratings.dat").write_text("1::10::5::978300760\n1::20::4::978300761\n2::10::4::978300762\n")
    with gzip.open(root / "partial" / "ratings_reconstructed.csv.gz", "wt") as fh:
        fh.write("user_id,movie_id,rating,timestamp\n9,9,5,1\n")
    (root / "movies.dat").write_text("10::Heat (1995)::Action|Crime|Thriller\n20::Alien: Resurrection (1997)::Sci-Fi\n")
    ds = load_dataset("ml-1m", data_root=tmp_path, k_core=0)
    assert ds.info["files"] == [str(root / "ratings.dat")]
    assert ds.user_ids.tolist() == ["", "1", "2"]
    assert ds.item_meta.text["title"] == ["", "Heat", "Alien: Resurrection"]
    assert ds.item_meta.numeric["year"].tolist()[1:] == [1995, 1997]
    assert ds.item_meta.multi["genre"][1] == ("Action", "Crime", "Thriller")


def test_duplicate_ids_in_item_metadata_are_rejected(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\n1,a,1\n")
    (tmp_path / "items.csv").write_text("item_id,title\na,A\na,B\n")
    with pytest.raises(DataError, match="duplicate item id"):
        table.load(tmp_path / "log.csv", items=tmp_path / "items.csv", mapping=TableMapping(title="title"))
