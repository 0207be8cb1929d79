"""Shared loader machinery: strict, fast table reading and building an ``InteractionDataset``.

Reading is two-speed: pandas' C parser with explicit dtypes on the happy path, and, only when
that fails or finds a missing value, a plain line scan that names the first bad line (1-based,
as in the file), field and expected type.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import math
import re
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pandas as pd

from recsae.data.dataset import InteractionDataset, ItemMeta
from recsae.errors import DataError

Kind = Literal["int", "float", "str"]

_EXPECTED = {"int": "an integer", "float": "a number", "str": "a value"}

MAX_FLOAT = 2.0**53
"""Largest magnitude of a float value (timestamps, ratings): beyond it float64 no longer holds
every integer, so distinct timestamps could compare equal. Seconds, milliseconds and
microseconds since 1970 fit; 'nan', 'inf' and 1e300 do not."""

_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Column:
    """One column to read from a delimited file."""

    name: str
    """Column name: as in the header row, or as assigned by ``names`` for headerless files."""
    kind: Kind = "str"
    """Parsed type: 'int' (int64), 'float' (float64) or 'str'."""
    required: bool = True
    """Whether an empty value is an error (else it becomes NaN / missing)."""


def _open_binary(path: Path) -> IO[bytes]:
    """Open a possibly compressed file (by extension, like pandas)."""
    openers: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
    return openers.get(path.suffix.lower(), open)(path, "rb")


@contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn I/O errors (a bad gzip header, a truncated archive) into a DataError naming the file."""
    try:
        yield
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as err:
        hint = " (damaged or truncated archive?)" if path.suffix.lower() in (".gz", ".bz2", ".xz") else ""
        raise DataError(f"cannot read{hint}: {err}", path=path) from None


def open_text(path: Path, encoding: str) -> IO[str]:
    """Open a possibly compressed text file (by extension, like pandas)."""
    return io.TextIOWrapper(_open_binary(path), encoding=encoding, newline="")


def _decoded_lines(handle: Iterable[bytes], encoding: str, path: Path) -> Iterator[str]:
    """Decode line by line, so that a bad byte is reported on its own line."""
    for lineno, raw in enumerate(handle, start=1):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            raise DataError(f"not valid {encoding} text", path=path, line=lineno) from None
        # a byte-order mark (spreadsheet exports) is not part of the first field
        yield text.removeprefix("\ufeff") if lineno == 1 else text


def _split_lines(lines: Iterator[str], sep: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for non-blank lines; multi-character separators split plainly."""
    if len(sep) == 1:
        reader = csv.reader(lines, delimiter=sep)
        for fields in reader:
            if fields and any(fields):
                yield reader.line_num, fields
    else:
        for lineno, line in enumerate(lines, start=1):
            line = line.rstrip("\r\n")
            if line:
                yield lineno, line.split(sep)


def _check_value(value: str, col: Column, path: Path, lineno: int) -> None:
    if value == "":
        if col.required:
            raise DataError(f"empty value; expected {_EXPECTED[col.kind]}", path=path, line=lineno, field=col.name)
        return
    try:
        if col.kind == "int":
            number: float = int(value)
            ok, expected = _INT64[0] <= number <= _INT64[1], "an integer within the 64-bit range"
        elif col.kind == "float":
            number = float(value)
            ok, expected = math.isfinite(number) and abs(number) <= MAX_FLOAT, f"a finite number within ±{MAX_FLOAT:.4g}"
        else:
            return
    except ValueError:
        raise DataError(
            f"expected {_EXPECTED[col.kind]}, found {value[:40]!r}", path=path, line=lineno, field=col.name
        ) from None
    if not ok:
        raise DataError(f"expected {expected}, found {value[:40]!r}", path=path, line=lineno, field=col.name)


def _scan(path: Path, sep: str, names: Sequence[str], header: bool, columns: Sequence[Column], encoding: str) -> None:
    """Find and raise the first malformed line (called only after the fast parser objected)."""
    positions = {c.name: names.index(c.name) for c in columns}
    with _readable(path), _open_binary(path) as handle:
        for lineno, fields in _split_lines(_decoded_lines(handle, encoding, path), sep):
            if header and lineno == 1:
                continue
            if len(fields) != len(names):
                raise DataError(
                    f"malformed line: expected {len(names)} {sep!r}-separated fields "
                    f"({', '.join(names)}), found {len(fields)}",
                    path=path,
                    line=lineno,
                )
            for col in columns:
                _check_value(fields[positions[col.name]].strip(), col, path, lineno)


def read_header(path: Path, sep: str, encoding: str = "utf-8") -> list[str]:
    """The header row's column names (error if the file is empty)."""
    with _readable(path), _open_binary(path) as handle:
        first = next(_decoded_lines(iter([handle.readline()]), encoding, path)).rstrip("\r\n")
    if not first:
        raise DataError("empty file; expected a header row", path=path, line=1)
    if len(sep) == 1:
        return [c.strip() for c in next(csv.reader([first], delimiter=sep))]
    return [c.strip() for c in first.split(sep)]


def read_table(
    path: Path,
    columns: Sequence[Column],
    *,
    sep: str,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read ``columns`` from a delimited file, strictly.

    With ``names`` the file has no header and ``names`` lists every field in order; without it
    the first line is a header that must contain every requested column. Multi-character
    separators (MovieLens' '::') are read with the C parser by splitting on their first
    character and keeping every other field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    header = names is None
    all_names = read_header(path, sep, encoding) if names is None else list(names)
    for col in columns:
        if col.name not in all_names:
            raise DataError(
                f"missing column; the header has {', '.join(all_names)}", path=path, line=1, field=col.name
            )
    dtype = {
        c.name: ("int64" if c.kind == "int" and c.required else "float64" if c.kind != "str" else "str")
        for c in columns
    }
    wanted = [c.name for c in columns]
    if len(sep) > 1 and len(set(sep)) == 1:
        # 'a::b' split on ':' gives a, '', b: the real fields sit at even positions.
        read_names = [n if k % 2 == 0 else f"_gap{k}" for k, n in enumerate(_interleave(all_names))]
        kwargs: dict = {"sep": sep[0], "names": read_names, "header": None}
    else:
        kwargs = {"sep": sep, "names": all_names, "header": 0 if header else None}
    try:
        with _readable(path), warnings.catch_warnings():
            # extra fields on the first line: pandas warns and drops them (index_col=False)
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                index_col=False,  # a line with extra fields is an error, not a shifted index
                dtype=dtype,
                encoding=encoding,
                keep_default_na=False,
                na_values=[""],
                engine="c",
                **kwargs,
            )
    except (ValueError, UnicodeDecodeError, OverflowError, pd.errors.ParserWarning) as err:  # Overflow: beyond int64
        _scan(path, sep, all_names, header, columns, encoding)
        raise DataError(f"cannot parse: {err}", path=path) from None
    required = [c.name for c in columns if c.required]
    floats = frame[[c.name for c in columns if c.kind == "float"]].to_numpy(dtype=np.float64)
    out_of_range = np.abs(floats[~np.isnan(floats)]) > MAX_FLOAT  # inf too
    if (required and frame[required].isna().to_numpy().any()) or out_of_range.any():
        _scan(path, sep, all_names, header, columns, encoding)
    return frame[wanted]


def _interleave(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for k, n in enumerate(names):
        if k:
            out.append("")
        out.append(n)
    return out


def to_seconds(values: pd.Series, path: Path, field_name: str) -> np.ndarray:
    """Timestamps as float64 seconds: numbers as given, datetimes converted (Parquet columns)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        # microseconds, not nanoseconds: the ns range ends in 2262 (Parquet stores later dates)
        as_us = values.to_numpy().astype("datetime64[us]").astype(np.int64)
        return as_us.astype(np.float64) / 1e6
    numeric = pd.to_numeric(values, errors="coerce")
    seconds = numeric.to_numpy(dtype=np.float64)
    bad = (numeric.isna() & values.notna()).to_numpy() | (np.abs(np.nan_to_num(seconds)) > MAX_FLOAT)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"row {row + 1}: expected a numeric or datetime timestamp, finite and within ±{MAX_FLOAT:.4g}, "
            f"found {str(values.iloc[row])[:40]!r}",
            path=path,
            field=field_name,
        )
    return seconds


# ---------------------------------------------------------------------------------------------
# Building the dataset


@dataclass
class ItemCatalog:
    """Item metadata keyed by external id: row r of ``meta`` describes item ``ids[r]``."""

    ids: np.ndarray
    meta: ItemMeta
    path: Path | None = None
    """File the catalogue came from (for error messages)."""


@dataclass
class UserCatalog:
    """User metadata keyed by external id: ``columns[name][r]`` describes user ``ids[r]``."""

    ids: np.ndarray
    columns: dict[str, list[str]] = field(default_factory=dict)
    path: Path | None = None


_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")


def normalise_ids(values: np.ndarray | pd.Series) -> np.ndarray:
    """External ids as a sortable array: int64 when every id is a canonical integer, else str.

    Canonical-integer strings ('7', not '007') sort numerically, so ids that are already 1..n
    (ReChorus, RecBole) keep their numbers as internal ids.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    series = pd.Series(arr, dtype=str)
    if len(series) and series.str.fullmatch(_CANONICAL_INT.pattern).all():
        with suppress(OverflowError):  # ids beyond int64 (hashes, say) stay strings
            return series.astype(np.int64).to_numpy()
    return series.to_numpy(dtype=object)


def _empty_row_meta(meta: ItemMeta) -> ItemMeta:
    """``meta`` with a placeholder row prepended (so row index -1 + 1 = 0 means 'unknown')."""
    return ItemMeta(
        title=["", *meta.title],
        categorical={k: ["", *v] for k, v in meta.categorical.items()},
        multi={k: [(), *v] for k, v in meta.multi.items()},
        text={k: ["", *v] for k, v in meta.text.items()},
        numeric={k: np.concatenate([[np.nan], np.asarray(v, dtype=np.float64)]) for k, v in meta.numeric.items()},
    )


def _lookup(catalog_ids: np.ndarray, wanted: np.ndarray, path: Path | None, what: str) -> np.ndarray:
    """Row of every wanted id in the catalogue, -1 where absent."""
    keys = pd.Index(normalise_ids(catalog_ids))
    if not keys.is_unique:
        dup = keys[keys.duplicated()][0]
        raise DataError(f"duplicate {what} id {dup}; every id must appear once", path=path)
    if keys.dtype != wanted.dtype:
        keys = pd.Index(keys.astype(str))
        wanted = wanted.astype(str)
    return keys.get_indexer(wanted)


def make_dataset(
    name: str,
    user: np.ndarray,
    item: np.ndarray,
    time: np.ndarray,
    *,
    rating: np.ndarray | None = None,
    items: ItemCatalog | None = None,
    users: UserCatalog | None = None,
    row_split: np.ndarray | None = None,
    info: dict[str, object] | None = None,
) -> InteractionDataset:
    """Build a dataset from interactions given by external ids, in source order.

    Internal ids follow the sorted external ids (numerically when they are integers); rows are
    sorted by (user, time), stably, so ties keep the source order. Catalogue entries of items
    never interacted with are dropped; interacted items missing from the catalogue get empty
    metadata and their external id as title.
    """
    info = dict(info or {})
    if len(user) == 0:
        raise DataError("no interactions found", path=info.get("path"))  # type: ignore[arg-type]
    user_keys = normalise_ids(user)
    item_keys = normalise_ids(item)
    u_codes, u_uniques = pd.factorize(user_keys, sort=True)
    i_codes, i_uniques = pd.factorize(item_keys, sort=True)
    u_int = u_codes.astype(np.int64) + 1
    i_int = i_codes.astype(np.int64) + 1
    time = np.asarray(time, dtype=np.float64)
    order = np.lexsort((time, u_int))
    u_uniques = np.asarray(u_uniques)
    i_uniques = np.asarray(i_uniques)
    item_ids = np.concatenate([[""], u_str(i_uniques)])
    user_ids = np.concatenate([[""], u_str(u_uniques)])

    if items is not None:
        rows = _lookup(items.ids, i_uniques, items.path, "item") + 1
        meta = _empty_row_meta(items.meta).select(np.concatenate([[0], rows]))
    else:
        meta = ItemMeta(title=[""] * len(item_ids))
    meta.title = [t if t or i == 0 else str(item_ids[i]) for i, t in enumerate(meta.title)]

    user_meta: dict[str, list[str]] = {}
    if users is not None:
        rows = _lookup(users.ids, u_uniques, users.path, "user")
        for key, values in users.columns.items():
            user_meta[key] = [""] + [values[r] if r >= 0 else "" for r in rows]

    counts = {"interactions": len(u_int), "users": len(u_uniques), "items": len(i_uniques)}
    info["counts"] = {"raw": counts}
    info.setdefault("filters", [])
    return InteractionDataset(
        name=name,
        user=u_int[order],
        item=i_int[order],
        time=time[order],
        user_ids=user_ids,
        item_ids=item_ids,
        item_meta=meta,
        rating=None if rating is None else np.asarray(rating, dtype=np.float64)[order],
        user_meta=user_meta,
        info=info,
        row_split=None if row_split is None else np.asarray(row_split, dtype=np.int8)[order],
    )


def u_str(values: np.ndarray) -> np.ndarray:
    """External ids as a numpy unicode array."""
    return np.asarray([str(v) for v in values.tolist()], dtype=str) if len(values) else np.zeros(0, dtype=str)


YEAR_IN_TITLE = re.compile(r"\s*\((\d{4})\)\s*$")


def split_title_year(titles: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """MovieLens titles 'Heat (1995)' -> ('Heat', 1995.0); NaN where no year is given."""
    bare: list[str] = []
    years = np.full(len(titles), np.nan)
    for k, title in enumerate(titles):
        match = YEAR_IN_TITLE.search(title)
        if match:
            years[k] = float(match.group(1))
            bare.append(title[: match.start()].strip())
        else:
            bare.append(title.strip())
    return bare, years
