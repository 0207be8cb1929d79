"""Bad input: one clear error naming file, line (1-based) and field; via the CLI exit code 2."""

from __future__ import annotations

import pytest

from recsae.cli import main
from recsae.data import load_dataset
from recsae.data.loaders import movielens, rechorus, table
from recsae.errors import ConfigError, DataError


def _ml100k(tmp_path, u_data: str):
    root = tmp_path / "ml-100k"
    root.mkdir()
    (root / "u.data").write_text(u_data)
    return root


def test_malformed_line_names_file_and_line(tmp_path):
    root = _ml100k(tmp_path, "1\t1\t5\t100\n1\t2\t4\t101\t99\n")
    with pytest.raises(DataError) as err:
        movielens.load_100k(root)
    assert err.value.path == str(root / "u.data") and err.value.line == 2
    assert "expected 4" in str(err.value) and "found 5" in str(err.value)


def test_short_line_names_the_line(tmp_path):
    root = _ml100k(tmp_path, "1\t1\t5\t100\n\n2\t3\t4\n")
    with pytest.raises(DataError) as err:
        movielens.load_100k(root)
    assert err.value.line == 3  # the blank line 2 is skipped but still counted


def test_non_numeric_timestamp_names_line_and_field(tmp_path):
    root = _ml100k(tmp_path, "1\t1\t5\t100\n1\t2\t4\tyesterday\n")
    with pytest.raises(DataError) as err:
        movielens.load_100k(root)
    assert (err.value.line, err.value.field) == (2, "timestamp")
    assert "expected a number" in str(err.value) and "yesterday" in str(err.value)


def test_non_integer_id_in_a_ml1m_file_is_named(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\nx::661::3::978302109\n")
    with pytest.raises(DataError) as err:
        movielens.load_1m(tmp_path)
    assert (err.value.line, err.value.field) == (2, "user_id")


def test_missing_column_names_the_column(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item,timestamp\n1,2,3\n")
    with pytest.raises(DataError) as err:
        table.load(tmp_path / "log.csv")
    assert err.value.field == "item_id" and err.value.line == 1
    assert "user_id, item, timestamp" in str(err.value)


def test_rechorus_empty_time_is_named(tmp_path):
    (tmp_path / "train.csv").write_text("user_id\titem_id\ttime\n1\t2\t3\n1\t3\t\n")
    with pytest.raises(DataError) as err:
        rechorus.load(tmp_path)
    assert (err.value.line, err.value.field) == (3, "time")


def test_empty_dataset_after_filtering(tmp_path):
    root = _ml100k(tmp_path, "1\t1\t2\t100\n1\t2\t3\t101\n")
    with pytest.raises(DataError, match="no interactions left after rating>=4"):
        load_dataset(root, fmt="movielens-100k")


def test_file_with_only_a_header_is_empty(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\n")
    with pytest.raises(DataError, match="no interactions"):
        table.load(tmp_path / "log.csv")


def test_unknown_name_format_and_missing_root(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown dataset 'ml-10k'"):
        load_dataset("ml-10k")
    with pytest.raises(ConfigError, match="unknown format 'csv'"):
        load_dataset(tmp_path, fmt="csv")
    monkeypatch.delenv("RECSAE_DATA", raising=False)
    with pytest.raises(ConfigError, match="--data-root"):
        load_dataset("ml-100k")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--dataset", "ml-10k"], "unknown dataset 'ml-10k'"),
        (["--format", "csv"], "unknown format 'csv'"),
        ([], "line 2, field 'timestamp'"),
    ],
)
def test_cli_reports_one_line_and_exits_2(tmp_path, capsys, args, expected):
    root = _ml100k(tmp_path, "1\t1\t5\t100\n1\t2\t4\tyesterday\n")
    argv = ["data", "stats", "--dataset", str(root), *args]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and expected in err[-1]
    assert not any("Traceback" in line for line in err)


def test_bad_loader_option_and_missing_path(tmp_path):
    root = _ml100k(tmp_path, "1\t1\t5\t100\n")
    with pytest.raises(ConfigError, match="bad option for format 'movielens-100k'"):
        load_dataset(root, colour="red")
    with pytest.raises(DataError, match="dataset path not found"):
        load_dataset(tmp_path / "nowhere", fmt="rechorus")


def test_undecodable_bytes_name_the_line(tmp_path):
    (tmp_path / "log.csv").write_bytes(b"user_id,item_id,timestamp\n1,a,1\n2,\xff\xfe,2\n")
    with pytest.raises(DataError, match="not valid utf-8 text") as err:
        table.load(tmp_path / "log.csv")
    assert err.value.line == 3


def test_corrupt_parquet_is_a_data_error(tmp_path):
    (tmp_path / "log.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot read the Parquet file"):
        table.load(tmp_path / "log.parquet")


def test_non_numeric_parquet_timestamp_names_row_and_field(tmp_path):
    import pandas as pd

    pd.DataFrame({"user_id": [1, 2], "item_id": [1, 2], "timestamp": ["5", "soon"]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="row 2: expected a numeric") as err:
        table.load(tmp_path / "t.parquet")
    assert err.value.field == "timestamp"


@pytest.mark.parametrize(
    ("damage", "detail"),
    [("truncated", "ended before"), ("not gzip", "Not a gzipped file"), ("bad checksum", "CRC check failed"),
     ("bad deflate stream", "while decompressing data")],
)
@pytest.mark.parametrize("header", [True, False])
def test_damaged_gz_is_a_data_error_naming_the_file(tmp_path, damage, detail, header):
    import gzip

    from recsae.data.loaders.common import Column, read_table

    rows = "".join(f"{i},{i % 7},{i}\n" for i in range(5000))
    data = gzip.compress((("user,item,ts\n" if header else "") + rows).encode())
    path = tmp_path / "log.csv.gz"
    path.write_bytes({"truncated": data[: len(data) // 2], "not gzip": b"plain text\n1,2,3\n",
                      "bad checksum": data[:-8] + bytes(8),
                      "bad deflate stream": data[:30] + b"garbage" * 5}[damage])  # fmt: skip
    names = None if header else ["user", "item", "ts"]
    with pytest.raises(DataError, match=r"log\.csv\.gz: cannot read \(damaged or truncated archive\?\)") as err:
        read_table(path, [Column("user", "int")], sep=",", names=names)
    assert detail in str(err.value)


def test_intact_gz_reads_like_the_plain_file(tmp_path):
    import gzip

    from recsae.data.loaders.common import Column, read_table

    (tmp_path / "log.csv.gz").write_bytes(gzip.compress(b"user,item\n1,a\n2,b\n"))
    assert read_table(tmp_path / "log.csv.gz", [Column("user", "int")], sep=",")["user"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("spec", "field", "expected"),
    [
        ('"interactions": 3', "interactions", "expected a path (a non-empty string), found 3"),
        ('"interactions": "log.csv", "items": ["i.csv"]', "items", "expected a path (a non-empty string or null)"),
        ('"interactions": "log.csv", "sep": 5', "sep", "expected a separator"),
        ('"interactions": "log.csv", "mapping": {"multi": ["genres"]}', "mapping.multi",
         'expected an object of column name -> separator, e.g. {"genres": "|"}, found ["genres"]'),
        ('"interactions": "log.csv", "mapping": {"multi": {"genres": 1}}', "mapping.multi", "found {\"genres\": 1}"),
        ('"interactions": "log.csv", "mapping": {"categorical": "genre"}', "mapping.categorical",
         'expected a list of column names, found "genre"'),
        ('"interactions": "log.csv", "mapping": {"numeric": ["year", 2]}', "mapping.numeric", "list of column names"),
        ('"interactions": "log.csv", "mapping": {"user": null}', "mapping.user",
         "expected a column name (a non-empty string), found null"),
        ('"interactions": "log.csv", "mapping": {"time": 7}', "mapping.time",
         "expected a column name (a non-empty string or null), found 7"),
    ],
)
def test_json_spec_values_of_the_wrong_type_name_the_field(tmp_path, spec, field, expected):
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\n1,a,1\n")
    (tmp_path / "spec.json").write_text("{" + spec + "}")
    with pytest.raises(DataError) as err:
        table.load(tmp_path / "spec.json")
    assert err.value.field == field and expected in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "spec.json"))


def test_an_id_beyond_int64_in_a_rechorus_folder_names_line_and_field(tmp_path):
    (tmp_path / "train.csv").write_text("user_id\titem_id\ttime\n1\t2\t3\n99999999999999999999\t3\t4\n")
    with pytest.raises(DataError, match="expected an integer within the 64-bit range") as err:
        rechorus.load(tmp_path)
    assert (err.value.line, err.value.field) == (3, "user_id")


def test_an_id_beyond_int64_in_a_ml100k_file_names_line_and_field(tmp_path):
    root = _ml100k(tmp_path, "1\t1\t5\t100\n1\t-99999999999999999999\t4\t101\n")
    with pytest.raises(DataError, match="64-bit range") as err:
        movielens.load_100k(root)
    assert (err.value.line, err.value.field) == (2, "item_id")


def test_an_id_beyond_int64_in_a_table_is_kept_as_a_string_id(tmp_path):
    # a table's ids are strings; only ids that all fit int64 are sorted as numbers
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\n99999999999999999999,1,5\n2,1,6\n")
    ds = table.load(tmp_path / "log.csv")
    assert ds.user_ids.tolist() == ["", "2", "99999999999999999999"]


def test_a_byte_order_mark_before_the_header_is_accepted(tmp_path):
    (tmp_path / "log.csv").write_bytes("\ufeffuser_id,item_id,timestamp\n1,2,3\n".encode())
    assert table.load(tmp_path / "log.csv").user_ids.tolist() == ["", "1"]
    root = _ml100k(tmp_path, "\ufeff1\t1\t5\t100\n2\t1\t4\tx\n")  # headerless: the mark is before the first id
    with pytest.raises(DataError) as err:
        movielens.load_100k(root)
    assert (err.value.line, err.value.field) == (2, "timestamp"), "line 1 with its mark parses"


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e300", "-1e16"])
def test_a_non_finite_or_absurd_timestamp_names_line_and_field(tmp_path, value):
    (tmp_path / "log.csv").write_text(f"user_id,item_id,timestamp\n1,2,3\n1,3,{value}\n")
    with pytest.raises(DataError, match=f"expected a finite number within ±9.007e\\+15, found '{value}'") as err:
        table.load(tmp_path / "log.csv")
    assert (err.value.line, err.value.field) == (3, "timestamp")


def test_millisecond_timestamps_are_plausible(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\n1,2,1700000000123\n1,3,1700000000124\n")
    assert table.load(tmp_path / "log.csv").time.tolist() == [1700000000123.0, 1700000000124.0]


def test_an_infinite_parquet_timestamp_names_row_and_field(tmp_path):
    import pandas as pd

    pd.DataFrame({"user_id": [1, 2], "item_id": [1, 2], "timestamp": [5.0, float("inf")]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="row 2: expected a numeric or datetime timestamp, finite") as err:
        table.load(tmp_path / "t.parquet")
    assert err.value.field == "timestamp"


def test_a_duplicate_item_id_is_printed_plainly(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\n1,5,1\n")
    (tmp_path / "items.csv").write_text("item_id,title\n5,a\n5,b\n")
    with pytest.raises(DataError) as err:
        table.load(tmp_path / "log.csv", items=tmp_path / "items.csv")
    assert str(err.value) == f"{tmp_path / 'items.csv'}: duplicate item id 5; every id must appear once"


def test_extra_fields_on_the_first_line_of_a_headerless_file_name_the_line(tmp_path):
    # pandas only warns about them and drops the extra fields
    root = _ml100k(tmp_path, "1\t1\t5\t100\t7\n1\t2\t4\t101\n")
    with pytest.raises(DataError, match=r"expected 4 '\\t'-separated fields .* found 5") as err:
        movielens.load_100k(root)
    assert err.value.line == 1


def test_parquet_datetimes_beyond_2262_and_with_a_time_zone_are_seconds(tmp_path):
    import pandas as pd

    times = pd.Series(pd.to_datetime(["2000-01-01", "2263-01-01"]).as_unit("us"))
    pd.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "timestamp": times}).to_parquet(tmp_path / "t.parquet")
    assert table.load(tmp_path / "t.parquet").time.tolist() == [946684800.0, 9246182400.0]  # datetime(2263, 1, 1, tzinfo=utc).timestamp()
    zoned = pd.Series(pd.to_datetime(["2000-01-01 01:00"]).tz_localize("Europe/Paris"))
    pd.DataFrame({"user_id": [1], "item_id": [1], "timestamp": zoned}).to_parquet(tmp_path / "z.parquet")
    assert table.load(tmp_path / "z.parquet").time.tolist() == [946684800.0]
