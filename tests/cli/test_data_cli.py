"""``recsae data``: the plain-table column options (``--sep --user-col ... --item-table``, no spec
file needed) and the concept listing of ``data stats --concepts``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsae.cli.data import dataset_options, table_options
from recsae.data.registry import DatasetOptions
from recsae.errors import ConfigError, DataError


def write_plays(folder: Path) -> Path:
    """A semicolon-separated user-artist play-count table, without time, with one stray column."""
    lines = ["listener;artist;plays;name;tags;country"]
    for u in range(12):
        lines += [f"u{u};a{(u + t) % 9};{t + 1};Artist {(u + t) % 9};rock|live;xx" for t in range(4)]
    path = folder / "plays.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_column_options_load_a_plain_table_and_report_the_ignored_columns(tmp_path, caplog):
    table = table_options(sep=";", user_col="listener", item_col="artist", rating_col="plays", title_col="name",
                          multi_col=["tags"])
    with caplog.at_level("INFO", logger="recsae"):
        ds = dataset_options(str(write_plays(tmp_path)), table=table).load()
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (12, 9, 48)
    assert ds.item_meta.title[1:] == [f"Artist {i}" for i in range(9)]
    assert ds.item_meta.multi["tags"][1] == ("rock", "live")
    assert ds.rating is not None and ds.rating.max() == 4
    assert ds.info["has_time"] is False and ds.info["ignored_columns"] == ["country"]
    assert "ignored columns: country" in caplog.text


def test_item_table_option_reads_titles_and_multi_valued_genres(tmp_path):
    (tmp_path / "log.csv").write_text("uid,mid,ts\n1,10,5\n1,20,6\n2,10,7\n")
    (tmp_path / "movies.tsv").write_text("mid\ttitle\tgenres\tbudget\n10\tHeat\tAction|Crime\t60\n20\tAlien\tSci-Fi\t11\n")
    table = table_options(user_col="uid", item_col="mid", time_col="ts", title_col="title",
                          multi_col=["genres:|"], item_table=tmp_path / "movies.tsv")
    assert "item_sep" not in table  # without --sep each table's separator follows its own extension
    ds = dataset_options(str(tmp_path / "log.csv"), table=table).load()
    assert ds.item_meta.title == ["", "Heat", "Alien"]
    assert ds.item_meta.multi["genres"] == [(), ("Action", "Crime"), ("Sci-Fi",)]
    assert ds.info["has_time"] is True and ds.info["ignored_columns"] == ["budget"]


def test_options_round_trip_through_the_recorded_run_config(tmp_path):
    opts = dataset_options(str(write_plays(tmp_path)), table=table_options(sep="tab", multi_col=["g:,"]))
    assert opts.table == {"sep": "\t", "mapping": {"multi": {"g": ","}}}
    assert DatasetOptions.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"multi_col": [":|"]}, ConfigError, "expected NAME or NAME:SEP"),
        ({"sep": ""}, ConfigError, "--sep must not be empty"),
        ({"sep": ";", "user_col": "user"}, DataError, "name the column with --user-col"),
        ({"sep": ";", "user_col": "listener", "item_col": "artist", "title_col": "title"}, DataError,
         "name the column with --title-col"),
    ],
)
def test_bad_column_options_are_one_line_errors_naming_the_option(tmp_path, kwargs, error, message):
    path = write_plays(tmp_path)
    with pytest.raises(error, match=message):
        dataset_options(str(path), table=table_options(**kwargs)).load()


def test_column_options_on_anything_but_a_plain_table_exit_2(tmp_path, run_cli):
    code, _, err = run_cli(["data", "stats", "--user-col", "uid"])  # the synthetic data
    assert code == 2 and "describe a plain table" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "spec.json").write_text('{"interactions": "plays.txt", "sep": ";"}')
    code, _, err = run_cli(["data", "stats", "--dataset", str(tmp_path / "spec.json"), "--sep", ";"])
    assert code == 2 and "JSON spec that names its own columns" in err


def test_data_stats_and_train_take_the_column_options_and_evaluate_reloads_them(tmp_path, run_cli):
    path = write_plays(tmp_path)
    options = ["--dataset", str(path), "--sep", ";", "--user-col", "listener", "--item-col", "artist"]
    code, out, err = run_cli(["data", "stats", *options, "--json"])
    assert code == 0, err
    assert json.loads(out)["n_interactions"] == 48
    ck = tmp_path / "bpr"
    code, out, err = run_cli(["train", "--model", "bpr", *options, "--out", str(ck), "--epochs", "1", "--dim", "4",
                          "--device", "cpu"])
    assert code == 0, err
    config = json.loads((ck / "config.json").read_text())
    assert config["data"]["protocol"] == "random"  # a general model on a table without time
    code, out, err = run_cli(["evaluate", str(ck), "--device", "cpu"])
    assert code == 0, err
    assert json.loads(out)["same_data"] is True


def test_data_stats_concepts_lists_every_concept_a_run_accepts_with_its_item_count(tmp_path, run_cli):
    from recsae.data.split import make_split
    from recsae.steer.targets import concept_items

    genres = {i: ("Drama|Noir" if i % 3 == 0 else "Comedy") for i in range(20)}
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\n" + "".join(
        f"{u},{(u * 3 + t) % 20},{t}\n" for u in range(30) for t in range(6)))
    (tmp_path / "items.csv").write_text("item_id,title,genres\n" + "".join(
        f"{i},Film {i},{g}\n" for i, g in genres.items()))
    options = ["--dataset", str(tmp_path / "log.csv"), "--item-table", str(tmp_path / "items.csv"),
               "--title-col", "title", "--multi-col", "genres"]
    code, out, err = run_cli(["data", "stats", *options, "--concepts", "--json"])
    assert code == 0, err
    listed = json.loads(out)["concepts"]
    assert listed["genre=Noir"] == sum("Noir" in g for g in genres.values()) == 7
    assert listed["genre=Comedy"] == 13
    items = concept_items(make_split(dataset_options(str(tmp_path / "log.csv"), table=table_options(
        title_col="title", multi_col=["genres"], item_table=tmp_path / "items.csv")).load(0)))
    assert listed == {name: int(items.mask(name).sum()) for name in items.names()}
    code, text, err = run_cli(["data", "stats", *options, "--concepts"])
    assert code == 0, err
    assert f"concepts (--concept NAME; items): {len(listed)}" in text and "  genre=Noir\t7\n" in text
