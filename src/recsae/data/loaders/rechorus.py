"""The ReChorus format (used by the RecSAE reference code), loaded unchanged.

A folder with tab-separated ``train.csv``, ``dev.csv``, ``test.csv`` (header
``user_id item_id time [neg_items]``; ids from 1) and optional item tables: ``item_meta.csv``
(``item_id`` plus ``i_<attr>_c`` categorical and ``i_<attr>_f`` float columns, and
``r_<relation>`` columns listing related item ids) and an ``item_meta_all_info.csv`` (or
``item_info.csv``) with a title and text or multi-valued columns such as ``genres``
('Action|Comedy'); see ``_read_item_meta``. The partition into train/dev/test is kept in
``ds.row_split`` (see ``recsae.data.split.given_split``); the sampled ``neg_items`` are ignored
because recsae ranks against all items (counted in ``info``). Columns read as no attribute
(``r_<relation>``, numbers without a suffix) are logged and listed in ``info['ignored_columns']``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from recsae.data.dataset import InteractionDataset, ItemMeta
from recsae.data.loaders.common import Column, ItemCatalog, make_dataset, read_header, read_table
from recsae.errors import DataError
from recsae.utils import log

PARTS = (("train.csv", 0), ("dev.csv", 1), ("test.csv", 2))
META_FILES = ("item_meta.csv", "item_meta_all_info.csv", "item_info.csv")
"""Item tables read when present, merged on ``item_id`` (the first file's column wins a name clash)."""
TITLE_COLUMNS = ("title", "track_name", "item_name", "name")
"""The first of these present is the item title."""
_ATTR = re.compile(r"i_(.+)_([cf])")


def _read_meta_file(path: Path) -> pd.DataFrame:
    header = read_header(path, "\t")
    cols = [Column("item_id", "int")] + [
        Column(c, "float" if (m := _ATTR.fullmatch(c)) and m.group(2) == "f" else "str", required=False)
        for c in header
        if c != "item_id"
    ]
    return read_table(path, cols, sep="\t")


def _is_numeric(values: pd.Series) -> bool:
    """Every present value is a number (or none is present): ids or quantities, not words."""
    present = values.dropna()
    return bool(pd.to_numeric(present, errors="coerce").notna().all())


def _read_item_meta(paths: list[Path]) -> tuple[ItemCatalog, list[str]]:
    """Item metadata of every table in ``paths``, and the columns read as nothing.

    ``i_<attr>_c`` is categorical and ``i_<attr>_f`` numeric (ReChorus' naming); a title column
    (``TITLE_COLUMNS``) gives the titles; any other column is multi-valued when a value holds
    '|' (genres 'Action|Comedy'), free text when it holds words, and ignored when it holds only
    numbers (ids, counts) or relations (``r_<relation>``). A code ``0`` is ReChorus' 'missing'.
    """
    table = _read_meta_file(paths[0])
    for path in paths[1:]:
        more = _read_meta_file(path)
        table = table.merge(more[[c for c in more.columns if c == "item_id" or c not in table.columns]],
                            on="item_id", how="outer")
    title = next((c for c in TITLE_COLUMNS if c in table.columns), None)
    meta = ItemMeta(title=[""] * len(table))
    ignored: list[str] = []
    for column in table.columns[1:]:
        values = table[column]
        attr = _ATTR.fullmatch(column)
        if attr and attr.group(2) == "f":
            meta.numeric[attr.group(1)] = values.to_numpy(dtype=np.float64)
            continue
        strings = values.astype(object).where(values.notna(), "").astype(str).str.strip()
        if attr:
            meta.categorical[attr.group(1)] = strings.where(strings != "0", "").tolist()
        elif column == title:
            meta.title = strings.tolist()
            meta.text["title"] = list(meta.title)
        elif column.startswith("r_") or _is_numeric(values):
            ignored.append(column)
        elif strings.str.contains("|", regex=False).any():
            meta.multi[column] = [tuple(v for v in (p.strip() for p in x.split("|")) if v and v != "0")
                                  for x in strings]
        else:
            meta.text[column] = strings.tolist()
    if ignored:
        log.info("%s: ignored columns: %s", ", ".join(p.name for p in paths), ", ".join(ignored))
    return ItemCatalog(table["item_id"].to_numpy(), meta, paths[0]), ignored


def load(path: str | Path) -> InteractionDataset:
    """Load a ReChorus dataset folder (``train.csv`` required, ``dev.csv``/``test.csv`` optional:
    without them the given split is refused, and a declared protocol re-splits the rows)."""
    root = Path(path)
    if not (root / "train.csv").is_file():
        raise DataError("not a ReChorus folder: expected train.csv (and dev.csv, test.csv)", path=root)
    frames = []
    negatives: dict[str, int] = {}
    for name, label in PARTS:
        file = root / name
        if not file.is_file():
            continue
        cols = [Column("user_id", "int"), Column("item_id", "int"), Column("time", "float")]
        frame = read_table(file, cols, sep="\t")
        if "neg_items" in read_header(file, "\t"):
            negatives[name] = len(frame)
        frames.append(frame.assign(part=np.int8(label)))
    data = pd.concat(frames, ignore_index=True)
    items = None
    ignored: list[str] = []
    meta_paths = [root / n for n in META_FILES if (root / n).is_file()]
    if meta_paths:
        items, ignored = _read_item_meta(meta_paths)
    return make_dataset(
        root.name,
        data["user_id"].to_numpy(),
        data["item_id"].to_numpy(),
        data["time"].to_numpy(),
        items=items,
        row_split=data["part"].to_numpy(),
        info={
            "format": "rechorus",
            "path": str(root),
            "files": [str(root / n) for n, _ in PARTS if (root / n).is_file()] + [str(p) for p in meta_paths],
            "given_split": {n: int((data["part"] == k).sum()) for n, k in PARTS},
            "neg_items_ignored": negatives,
            "ignored_columns": ignored,
            # a given split without them is refused unless a protocol re-splits the rows
            "missing_files": [str(root / n) for n, _ in PARTS if not (root / n).is_file()],
        },
    )
