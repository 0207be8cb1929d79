"""A generic interaction table (CSV, TSV or Parquet) plus an optional item table.

Columns are named by ``TableMapping``; the separator follows the file extension (``.csv``
comma, ``.tsv``/``.txt`` tab, ``.parquet`` columnar) unless given. Without a time column the
file order is the time order.

From the command line, point ``--dataset`` at a JSON spec (paths relative to it)::

    {"interactions": "log.csv", "items": "items.csv",
     "mapping": {"user": "uid", "item": "iid", "time": "ts", "item_id": "id",
                 "title": "name", "multi": {"genres": "|"}}}
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsae.data.dataset import InteractionDataset, ItemMeta
from recsae.data.loaders.common import (
    Column,
    ItemCatalog,
    make_dataset,
    read_header,
    read_table,
    to_seconds,
)
from recsae.errors import ConfigError, DataError
from recsae.io import read_json
from recsae.utils import log


@dataclass(frozen=True)
class TableMapping:
    """Which columns of the tables hold what."""

    user: str = "user_id"
    """User id column of the interaction table."""
    item: str = "item_id"
    """Item id column of the interaction table."""
    time: str | None = "timestamp"
    """Timestamp column (numbers, or datetimes in Parquet); None: file order is time order."""
    rating: str | None = None
    """Rating column, needed only for a rating threshold."""
    item_id: str = "item_id"
    """Item id column of the item table."""
    title: str | None = None
    """Title column of the item table (also used as ``text['title']``)."""
    multi: dict[str, str] = field(default_factory=dict)
    """Multi-valued item columns: column name -> separator (e.g. ``{'genres': '|'}``)."""
    categorical: tuple[str, ...] = ()
    """Single-valued item columns."""
    text: tuple[str, ...] = ()
    """Free-text item columns."""
    numeric: tuple[str, ...] = ()
    """Numeric item columns."""


def _separator(path: Path, sep: str | None) -> str | None:
    """None for Parquet."""
    if sep is not None:
        return sep
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes:
        return None
    if ".tsv" in suffixes or ".txt" in suffixes:
        return "\t"
    if ".csv" in suffixes:
        return ","
    raise DataError("unknown table type: expected .csv, .tsv, .txt or .parquet (or pass sep)", path=path)


def _read(path: Path, columns: list[Column], sep: str | None) -> pd.DataFrame:
    if not path.is_file():
        raise DataError("file not found", path=path)
    if sep is not None:
        return read_table(path, columns, sep=sep)
    import pyarrow.parquet as pq

    try:
        present = pq.read_schema(path).names
        for col in columns:
            if col.name not in present:
                raise DataError(f"missing column; the table has {', '.join(present)}", path=path, field=col.name)
        frame = pd.read_parquet(path, columns=[c.name for c in columns])
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid / ArrowIOError
        raise DataError(f"cannot read the Parquet file: {err}", path=path) from None
    for col in columns:
        if col.required and frame[col.name].isna().any():
            row = int(np.flatnonzero(frame[col.name].isna().to_numpy())[0])
            raise DataError(f"missing value in row {row + 1}", path=path, field=col.name)
    return frame


_SPEC_KEYS = {"interactions", "items", "sep", "item_sep", "mapping"}


def _read_spec(path: Path) -> dict[str, Any]:
    """Arguments of ``load`` from a JSON spec file."""
    spec = read_json(path)
    if "interactions" not in spec:
        raise DataError("expected a JSON object with an 'interactions' path", path=path, field="interactions")
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise DataError(f"unknown keys {sorted(unknown)}; expected {sorted(_SPEC_KEYS)}", path=path)
    for key in ("interactions", "items"):
        _check_spec_value(spec.get(key), key == "items", path, key)
    for key in ("sep", "item_sep"):
        _check_spec_value(spec.get(key), True, path, key, "a separator")
    return {
        "path": path.parent / spec["interactions"],
        "items": path.parent / spec["items"] if spec.get("items") else None,
        "sep": spec.get("sep"),
        "item_sep": spec.get("item_sep"),
        "mapping": _mapping(spec.get("mapping", {}), path),
    }


def _mapping(mapping: Any, path: Path) -> TableMapping:
    """A ``TableMapping`` from a JSON object of its fields, each checked (errors name ``path``)."""
    fields = {f.name for f in dataclasses.fields(TableMapping)}
    if not isinstance(mapping, dict) or set(mapping) - fields:
        raise DataError(f"'mapping' must be an object with keys from {sorted(fields)}", path=path, field="mapping")
    for key, value in mapping.items():
        _check_mapping_value(key, value, path)
    given: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items()}
    return TableMapping(**given)


_MAPPING_LISTS = ("categorical", "text", "numeric")
_MAPPING_OPTIONAL = ("time", "rating", "title")


def _check_spec_value(value: Any, optional: bool, path: Path, where: str, what: str = "a path") -> None:
    """DataError unless ``value`` is a non-empty string (or, when ``optional``, null)."""
    if not ((isinstance(value, str) and value) or (optional and value is None)):
        expected = f"{what} (a non-empty string{' or null' if optional else ''})"
        raise DataError(f"expected {expected}, found {json.dumps(value)}", path=path, field=where)


def _check_mapping_value(key: str, value: Any, path: Path) -> None:
    """DataError naming ``mapping.<key>`` unless ``value`` has the type ``TableMapping`` expects."""
    where = f"mapping.{key}"
    if key == "multi":
        if not isinstance(value, dict) or not all(isinstance(s, str) and s for s in value.values()):
            expected = 'an object of column name -> separator, e.g. {"genres": "|"}'
            raise DataError(f"expected {expected}, found {json.dumps(value)}", path=path, field=where)
    elif key in _MAPPING_LISTS:
        if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
            raise DataError(f"expected a list of column names, found {json.dumps(value)}", path=path, field=where)
    else:
        _check_spec_value(value, key in _MAPPING_OPTIONAL, path, where, "a column name")


_OPTION = {"user": "--user-col", "item": "--item-col", "time": "--time-col", "rating": "--rating-col",
           "title": "--title-col", "multi": "--multi-col"}
"""The ``recsae`` option setting each mapping field, named in errors."""


def _header(path: Path, sep: str | None) -> list[str]:
    """Column names of a delimited or Parquet table."""
    if not path.is_file():
        raise DataError("file not found", path=path)
    if sep is not None:
        return read_header(path, sep)
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid / ArrowIOError
        raise DataError(f"cannot read the Parquet file: {err}", path=path) from None


def _require(header: list[str], wanted: dict[str, str], path: Path) -> None:
    """DataError naming the first mapped column absent from ``header`` and the option that maps it."""
    for key, column in wanted.items():
        if column not in header:
            hint = f"; name the column with {_OPTION[key]} (or the spec's mapping.{key})" if key in _OPTION else ""
            raise DataError(f"missing column; the header has {', '.join(header)}{hint}", path=path, line=1,
                            field=column)


def _item_columns(m: TableMapping) -> dict[str, str]:
    """Mapping field of every item attribute column (for error messages)."""
    cols = {c: "title" for c in ([m.title] if m.title else [])}
    for key in ("categorical", "text", "numeric"):
        cols.update({c: key for c in getattr(m, key)})
    return cols | {c: "multi" for c in m.multi}


def _report_ignored(header: list[str], used: set[str], path: Path) -> list[str]:
    """The columns of ``header`` nothing reads, logged so that none is dropped silently."""
    ignored = [c for c in header if c not in used]
    if ignored:
        log.info("%s: ignored columns: %s", path.name, ", ".join(ignored))
    return ignored


def _item_meta(table: pd.DataFrame, m: TableMapping) -> ItemMeta:
    def strings(c: str) -> list[str]:
        return table[c].fillna("").astype(str).tolist()

    meta = ItemMeta(title=strings(m.title) if m.title else [""] * len(table))
    if m.title:
        meta.text["title"] = list(meta.title)
    for c, s in m.multi.items():
        meta.multi[c] = [tuple(v.strip() for v in x.split(s) if v.strip()) for x in strings(c)]
    meta.categorical.update({c: strings(c) for c in m.categorical})
    meta.text.update({c: strings(c) for c in m.text})
    meta.numeric.update({c: pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=np.float64) for c in m.numeric})
    return meta


def load(
    path: str | Path,
    *,
    mapping: TableMapping | dict[str, Any] | None = None,
    items: str | Path | None = None,
    sep: str | None = None,
    item_sep: str | None = None,
) -> InteractionDataset:
    """Load an interaction table at ``path`` (or a JSON spec) and, with ``items``, an item table.

    ``mapping`` may be given as a dict of ``TableMapping`` fields (the command-line options). Item
    attributes the mapping names are read from the item table, or without one from the
    interaction table itself (first row of each item). Without a time column (``mapping.time``
    None, or the default 'timestamp' absent from the table) the file order stands in for time and
    ``info['has_time']`` is False. Columns nothing reads are logged and listed in
    ``info['ignored_columns']``.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        if mapping is not None or items is not None or sep is not None or item_sep is not None:
            raise ConfigError(f"{path} is a JSON spec that names its own columns; give the column options "
                              "(--sep, --user-col, ...) with the table itself, or put them in the spec")
        return load(**_read_spec(path))
    m = _mapping(mapping, path) if isinstance(mapping, dict) else mapping or TableMapping()
    sep = _separator(path, sep)
    header = _header(path, sep)
    if m.time == TableMapping.time and m.time not in header:
        log.info("%s: no '%s' column: the file order stands in for time", path.name, m.time)
        m = dataclasses.replace(m, time=None)
    own_items = _item_columns(m) if items is None else {}  # attributes in the interaction table itself
    wanted = {"user": m.user, "item": m.item} | {k: c for k in ("time", "rating") if (c := getattr(m, k))}
    _require(header, wanted | {key: c for c, key in own_items.items()}, path)
    cols = [Column(m.user, "str"), Column(m.item, "str")]
    if m.time is not None:
        cols.append(Column(m.time, "str" if sep is None else "float"))
    if m.rating is not None:
        cols.append(Column(m.rating, "float"))
    cols += [Column(c, "str", required=False) for c in own_items if c not in (m.user, m.item, m.time, m.rating)]
    frame = _read(path, cols, sep)
    ignored = _report_ignored(header, {c.name for c in cols}, path)
    time = (
        to_seconds(frame[m.time], path, m.time) if m.time is not None else np.arange(len(frame), dtype=np.float64)
    )
    catalog = None
    if items is not None:
        item_path = Path(items)
        item_sep = _separator(item_path, item_sep)
        item_header = _header(item_path, item_sep)
        attrs = _item_columns(m)
        _require(item_header, {"item_id": m.item_id} | {key: c for c, key in attrs.items()}, item_path)
        meta_cols = [Column(m.item_id, "str")] + [
            Column(c, "float" if c in m.numeric else "str", required=False) for c in attrs if c != m.item_id
        ]
        table = _read(item_path, meta_cols, item_sep)
        ignored += _report_ignored(item_header, {m.item_id, *attrs}, item_path)
        catalog = ItemCatalog(table[m.item_id].to_numpy(), _item_meta(table, m), item_path)
    elif own_items:
        first = frame.drop_duplicates(m.item)
        catalog = ItemCatalog(first[m.item].to_numpy(), _item_meta(first, m), path)
    return make_dataset(
        path.name.split(".")[0],
        frame[m.user].to_numpy(),
        frame[m.item].to_numpy(),
        time,
        rating=None if m.rating is None else frame[m.rating].to_numpy(dtype=np.float64),
        items=catalog,
        info={
            "format": "table",
            "path": str(path),
            "files": [str(path)] + ([str(items)] if items is not None else []),
            "mapping": {k: v for k, v in vars(m).items()},
            "has_time": m.time is not None,
            "ignored_columns": ignored,
        },
    )
