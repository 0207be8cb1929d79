"""The activation store: harvested representations on disk, with their provenance.

A store is a folder (docs/ARCHITECTURE.md, probe section)::

    meta.json        format_version, d, n_rows, dtype, model, dataset, mode, shards
    shard-00000.npy  float32 (rows x d), read back as memory maps
    index.parquet    one row per activation row: user, position, split, target, start

The writer fills a hidden sibling folder and renames it into place only after every shard, the
index and ``meta.json`` are complete, so a killed harvest never leaves a folder that opens as a
store. Memory stays bounded: one shard buffer plus the (small) index columns.

A distributed harvest writes one such store per rank (``part_dir``); ``merge_stores`` then moves
their shards under one manifest, which reads exactly as the store one process would have written.
"""

from __future__ import annotations

import mmap
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsae.errors import DataError
from recsae.io import (
    FORMAT_VERSION,
    check_format_version,
    make_temp_dir,
    read_json,
    remove_stale_partials,
    write_json,
    write_parquet,
)

SPLITS = ("train", "valid", "test")
"""Values of the index's ``split`` column; the writer takes their codes 0, 1, 2."""

INDEX_COLUMNS = ("user", "position", "split", "target", "start")

DEFAULT_SHARD_BYTES = 64 * 2**20
"""Shard size: bounds the writer's buffer and each memory map."""

RELEASE_BYTES = 256 * 2**20
"""A ``StoreRows`` reader hands the store's mapped pages back to the kernel after touching this
many bytes of them, so that streaming a store leaves at most about this much of it in the
process's resident set (the pages stay in the page cache: a second pass reads them from memory)."""
SCATTERED_ROW_BYTES = 64 * 2**10
"""What a row read apart from its neighbours counts towards ``RELEASE_BYTES``: Linux maps up to
64 kB around a faulting page of a file (``fault_around_bytes``), so a batch of random rows makes
far more of the store resident than its own size."""


class ActivationStore:
    """A read-only activation store opened from its folder (use :meth:`open`)."""

    def __init__(self, path: Path, meta: dict[str, Any], shards: list[np.ndarray], index: pd.DataFrame) -> None:
        self.path = path
        self.meta = meta
        self.shards = shards
        """One read-only memory map (rows x d) per shard file."""
        self.index = index
        """One row per activation row: user, position, split, target, start."""
        self.offsets = np.zeros(len(shards) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in shards], out=self.offsets[1:])
        self._unreleased = 0

    @classmethod
    def open(cls, path: str | Path) -> ActivationStore:
        """Open and validate a store; a missing, partial, corrupt or newer store is a DataError."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not path.is_dir():
            raise DataError("no activation store here (folder missing)", path=path)
        if not meta_path.is_file():
            raise DataError(
                "not an activation store: meta.json is missing (an interrupted harvest?)", path=path
            )
        meta = read_json(meta_path)
        check_format_version(meta, meta_path)
        if meta.get("dtype") != "float32":
            raise DataError(f"dtype {meta.get('dtype')!r}, expected 'float32'", path=meta_path, field="dtype")
        for key in ("d", "n_rows", "shards"):
            if key not in meta:
                raise DataError("missing", path=meta_path, field=key)
        for key in ("d", "n_rows"):
            if not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 0:
                raise DataError(f"expected a count (an integer >= 0), found {meta[key]!r}", path=meta_path, field=key)
        if not isinstance(meta["shards"], list):
            raise DataError(f"expected a list of shards, found {meta['shards']!r}", path=meta_path, field="shards")
        d, n_rows = meta["d"], meta["n_rows"]
        shards = [_open_shard(path, entry, d, meta_path) for entry in meta["shards"]]
        if sum(len(s) for s in shards) != n_rows:
            raise DataError(
                f"shards hold {sum(len(s) for s in shards)} rows, meta says {n_rows}",
                path=meta_path,
                field="n_rows",
            )
        index = _read_index(path / "index.parquet", n_rows)
        return cls(path, meta, shards, index)

    @property
    def d(self) -> int:
        return int(self.meta["d"])

    @property
    def n_rows(self) -> int:
        return int(self.meta["n_rows"])

    def __len__(self) -> int:
        return self.n_rows

    def rows(self, split: str) -> np.ndarray:
        """Row numbers (int64, ascending) whose ``split`` is ``split``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.flatnonzero((self.index["split"] == split).to_numpy()).astype(np.int64)

    def load(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Activations (n x d float32). A single-shard store without ``rows`` returns its
        read-only memory map itself; otherwise the requested rows are copied into memory."""
        if rows is None:
            if len(self.shards) == 1:
                return self.shards[0]
            if not self.shards:
                return np.zeros((0, self.d), dtype=np.float32)
            return np.concatenate(self.shards)
        return self._gather(np.asarray(rows, dtype=np.int64))

    def view(self, rows: np.ndarray | None = None) -> StoreRows:
        """The rows ``rows`` (default: all) as an array-like that reads them on demand."""
        return StoreRows(self, None if rows is None else np.asarray(rows, dtype=np.int64))

    def count_read(self, nbytes: int) -> None:
        """Note ``nbytes`` read through a view; past ``RELEASE_BYTES`` the mapped pages are released."""
        self._unreleased += nbytes
        if self._unreleased >= RELEASE_BYTES:
            self.release_pages()

    def release_pages(self) -> None:
        """Drop the memory maps' pages from this process's resident set (not from the page cache)."""
        self._unreleased = 0
        for shard in self.shards:
            mapped = getattr(shard, "_mmap", None)
            if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
                mapped.madvise(mmap.MADV_DONTNEED)

    def iter_batches(self, batch_size: int, rows: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Consecutive batches (<= batch_size x d) of all rows, or of ``rows`` in the given order."""
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        if rows is None:
            for start in range(0, self.n_rows, batch_size):
                yield self._slice(start, min(start + batch_size, self.n_rows))
        else:
            rows = np.asarray(rows, dtype=np.int64)
            for start in range(0, len(rows), batch_size):
                yield self._gather(rows[start : start + batch_size])

    def _slice(self, start: int, stop: int) -> np.ndarray:
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        parts = []
        while start < stop:
            local = start - int(self.offsets[first])
            take = min(stop, int(self.offsets[first + 1])) - start
            parts.append(self.shards[first][local : local + take])
            start += take
            first += 1
        return np.array(parts[0]) if len(parts) == 1 else np.concatenate(parts)

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n_rows):
            raise IndexError(f"row numbers must lie in [0, {self.n_rows})")
        out = np.empty((len(rows), self.d), dtype=np.float32)
        shard_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for s in np.unique(shard_of):
            sel = shard_of == s
            out[sel] = self.shards[s][rows[sel] - self.offsets[s]]
        return out


class StoreRows:
    """Rows of an activation store read on demand: what the SAE trains on and what is encoded,
    without copying the store into memory. Array-like (``shape``, ``len``, ``np.asarray``):
    a slice is another view, an integer array of positions gathers those rows (n x d float32,
    in the order given), ``np.asarray`` gathers every row of the view."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, store: ActivationStore, rows: np.ndarray | None = None) -> None:
        self.store = store
        self.rows = rows
        """Store row numbers, or None for every row in order."""

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.store.d)

    @property
    def nbytes(self) -> int:
        return len(self) * self.store.d * 4

    def __len__(self) -> int:
        return self.store.n_rows if self.rows is None else len(self.rows)

    def __getitem__(self, key: slice | np.ndarray) -> StoreRows | np.ndarray:
        if isinstance(key, slice):
            if self.rows is not None:
                return StoreRows(self.store, self.rows[key])
            r = range(self.store.n_rows)[key]
            return StoreRows(self.store, np.arange(r.start, r.stop, r.step, dtype=np.int64))
        pos = np.asarray(key, dtype=np.int64)
        if pos.ndim != 1:
            raise IndexError("StoreRows takes a slice or a 1-d array of row positions")
        return self._gather(pos if self.rows is None else self.rows[pos])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self._gather(np.arange(self.store.n_rows) if self.rows is None else self.rows)
        return out if dtype is None else out.astype(dtype, copy=False)

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        lo = int(rows[0]) if len(rows) else 0
        if len(rows) > 1 and lo >= 0 and lo + len(rows) <= self.store.n_rows and bool((np.diff(rows) == 1).all()):
            out = self.store._slice(lo, lo + len(rows))  # a run of consecutive rows
            self.store.count_read(out.nbytes)
            return out
        # sorted reads are sequential on disk; the rows go back in the order asked for
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), self.store.d), dtype=np.float32)
        out[order] = self.store._gather(rows[order])
        self.store.count_read(len(rows) * max(out.itemsize * self.store.d, SCATTERED_ROW_BYTES))
        return out

    def iter_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Consecutive batches (<= batch_size x d) of the view's rows."""
        for start in range(0, len(self), batch_size):
            yield np.asarray(self[start : start + batch_size])

    def mean(self, batch_size: int = 65536) -> np.ndarray:
        """The float64 mean of the rows, summed row after row exactly as
        ``np.mean(rows, axis=0, dtype=np.float64)`` sums an in-memory array."""
        total = np.zeros(self.store.d, dtype=np.float64)
        for chunk in self.iter_batches(batch_size):
            total = np.add.reduce(np.concatenate([total[None], chunk.astype(np.float64)]), axis=0)
        return total / max(len(self), 1)


def _open_shard(folder: Path, entry: Any, d: int, meta_path: Path) -> np.ndarray:
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not isinstance(entry.get("rows"), int):
        raise DataError("each shard entry needs 'file' (a name) and 'rows' (a count)", path=meta_path, field="shards")
    shard_path = folder / str(entry["file"])
    if Path(entry["file"]).name != entry["file"]:
        raise DataError("shard file names must not contain folders", path=meta_path, field="shards")
    try:
        arr = np.load(shard_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:  # EOFError: an empty file
        raise DataError(f"unreadable shard: {err}", path=shard_path) from err
    if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape[1] != d or arr.shape[0] != entry["rows"]:
        raise DataError(
            f"shard is {arr.dtype} {arr.shape}, expected float32 ({entry['rows']}, {d})",
            path=shard_path,
        )
    return arr


def _read_index(index_path: Path, n_rows: int) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        index = pq.read_table(index_path).to_pandas()
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"unreadable index: {err}", path=index_path) from err
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise DataError(f"missing columns {missing}", path=index_path)
    if len(index) != n_rows:
        raise DataError(f"{len(index)} index rows, meta says {n_rows}", path=index_path)
    return index


class StoreWriter:
    """Streams activation rows into a new store; :meth:`finish` publishes it atomically.

    Use as a context manager: on an exception the partial folder is deleted and nothing
    at ``out_dir`` changes.
    """

    def __init__(self, out_dir: str | Path, d: int, meta: dict[str, Any], shard_rows: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.d = d
        self.meta = dict(meta)
        self.shard_rows = max(1, shard_rows or DEFAULT_SHARD_BYTES // (4 * d))
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.out_dir.parent, depth=0, target=self.out_dir.name)  # of a killed writer
        self.tmp = make_temp_dir(self.out_dir.parent, f".{self.out_dir.name}.partial-")
        self._buf = np.empty((min(self.shard_rows, 65536), d), dtype=np.float32)
        self._fill = 0
        self._shards: list[dict[str, Any]] = []
        self._cols: dict[str, list[np.ndarray]] = {c: [] for c in INDEX_COLUMNS}
        self.n_rows = 0

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    def append(
        self,
        x: np.ndarray,
        user: np.ndarray,
        position: np.ndarray,
        split: np.ndarray,
        target: np.ndarray,
        start: np.ndarray,
    ) -> None:
        """Add rows: activations ``x`` (n x d) with their provenance (``split`` as codes 0/1/2)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"expected (n, {self.d}) activations, got {x.shape}")
        n = len(x)
        for name, values, dtype in (
            ("user", user, np.int64),
            ("position", position, np.int32),
            ("split", split, np.int8),
            ("target", target, np.int64),
            ("start", start, np.int32),
        ):
            values = np.asarray(values, dtype=dtype)
            if values.shape != (n,):
                raise ValueError(f"provenance column {name} has shape {values.shape}, expected ({n},)")
            self._cols[name].append(values)
        done = 0
        while done < n:
            if self._fill == len(self._buf):
                if len(self._buf) < self.shard_rows:
                    grown = np.empty((min(2 * len(self._buf), self.shard_rows), self.d), dtype=np.float32)
                    grown[: self._fill] = self._buf[: self._fill]
                    self._buf = grown
                else:
                    self._flush()
            take = min(n - done, len(self._buf) - self._fill)
            self._buf[self._fill : self._fill + take] = x[done : done + take]
            self._fill += take
            done += take
        self.n_rows += n

    def _flush(self) -> None:
        if self._fill == 0:
            return
        name = f"shard-{len(self._shards):05d}.npy"
        np.save(self.tmp / name, self._buf[: self._fill], allow_pickle=False)
        self._shards.append({"file": name, "rows": self._fill})
        self._fill = 0

    def finish(self) -> ActivationStore:
        """Write the index and meta.json, then move the folder into place (replacing an old one)."""
        import pyarrow as pa

        self._flush()
        cols = {
            c: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for c, v in self._cols.items()
        }
        split = pa.DictionaryArray.from_arrays(
            pa.array(cols["split"].astype(np.int8), type=pa.int8()), pa.array(list(SPLITS))
        )
        table = pa.table(
            {
                "user": pa.array(cols["user"].astype(np.int64)),
                "position": pa.array(cols["position"].astype(np.int32)),
                "split": split,
                "target": pa.array(cols["target"].astype(np.int64)),
                "start": pa.array(cols["start"].astype(np.int32)),
            }
        )
        write_parquet(self.tmp / "index.parquet", table)
        meta = {
            **self.meta,
            "format_version": FORMAT_VERSION,
            "d": self.d,
            "n_rows": self.n_rows,
            "dtype": "float32",
            "shards": self._shards,
        }
        write_json(self.tmp / "meta.json", meta)
        _replace_dir(self.tmp, self.out_dir)
        return ActivationStore.open(self.out_dir)

    def add_file(self, name: str, writer: Any) -> Path:
        """Write an extra file into the store folder before it is published (``writer(path)``)."""
        dest = self.tmp / name
        writer(dest)
        return dest


def part_dir(out_dir: str | Path, rank: int) -> Path:
    """Where rank ``rank`` of a distributed harvest writes its part of the store at ``out_dir``:
    a hidden sibling that ``recsae.io.remove_stale_partials`` clears when a killed run left it."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.partial-rank{rank:04d}"


def merge_stores(parts: list[Path], out_dir: str | Path) -> ActivationStore:
    """Publish one store at ``out_dir`` whose rows are those of the stores ``parts``, in order:
    their shard files are moved (not copied) under one manifest (``meta.json``, the index), and
    the emptied parts are removed. The metadata is the first part's, less its row counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    metas = [read_json(part / "meta.json") for part in parts]
    for part, meta in zip(parts, metas, strict=True):
        check_format_version(meta, part / "meta.json")
        if meta.get("d") != metas[0].get("d"):
            raise DataError(f"width {meta.get('d')} differs from the first part's {metas[0].get('d')}",
                            path=part / "meta.json", field="d")
    tmp = make_temp_dir(out_dir.parent, f".{out_dir.name}.partial-")
    try:
        shards: list[dict[str, Any]] = []
        for part, meta in zip(parts, metas, strict=True):
            for entry in meta["shards"]:
                name = f"shard-{len(shards):05d}.npy"
                os.replace(part / entry["file"], tmp / name)
                shards.append({"file": name, "rows": entry["rows"]})
        write_parquet(tmp / "index.parquet", pa.concat_tables([pq.read_table(part / "index.parquet") for part in parts]))
        n_rows = sum(int(meta["n_rows"]) for meta in metas)
        write_json(tmp / "meta.json", {**metas[0], "n_rows": n_rows, "shards": shards})
        _replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for part in parts:
        shutil.rmtree(part, ignore_errors=True)
    return ActivationStore.open(out_dir)


def _replace_dir(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest``; an existing ``dest`` is moved aside first, then deleted."""
    old = None
    if dest.exists():
        old = make_temp_dir(dest.parent, f".{dest.name}.old-")
        os.replace(dest, old / dest.name)
    os.replace(src, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
