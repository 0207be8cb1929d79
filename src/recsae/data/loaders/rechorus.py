"""The ReChorus format (used by the RecSAE reference code), loaded unchanged.

A folder with tab-separated ``train.csv``, ``dev.csv``, ``test.csv`` (header
``user_id item_id time [neg_items]``; ids from 1) and an optional ``item_meta.csv``
(``item_id`` plus ``i_<attr>_c`` categorical and ``i_<attr>_f`` float columns, and
``r_<relation>`` columns listing related item ids). The partition into train/dev/test is kept
in ``ds.row_split`` (see ``recsae.data.split.given_split``); the sampled ``neg_items`` are
ignored because recsae ranks against all items (counted in ``info``). ``r_<relation>``
columns are not item attributes; their names are listed in ``info['ignored_columns']``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from recsae.data.dataset import InteractionDataset, ItemMeta
from recsae.data.loaders.common import Column, ItemCatalog, make_dataset, read_header, read_table
from recsae.errors import DataError

PARTS = (("train.csv", 0), ("dev.csv", 1), ("test.csv", 2))
_ATTR = re.compile(r"i_(.+)_([cf])")


def _read_item_meta(path: Path) -> tuple[ItemCatalog, list[str]]:
    header = read_header(path, "\t")
    attrs = [(c, *m.groups()) for c in header if (m := _ATTR.fullmatch(c))]
    ignored = [c for c in header if c != "item_id" and not _ATTR.fullmatch(c)]
    cols = [Column("item_id", "int")] + [
        Column(c, "float" if kind == "f" else "str", required=False) for c, _, kind in attrs
    ]
    table = read_table(path, cols, sep="\t")
    meta = ItemMeta(title=[""] * len(table))
    for column, name, kind in attrs:
        if kind == "f":
            meta.numeric[name] = table[column].to_numpy(dtype=np.float64)
        else:
            # ReChorus reserves 0 for 'missing' in every id-like field.
            values = table[column].fillna("").astype(str)
            meta.categorical[name] = values.where(values != "0", "").tolist()
    return ItemCatalog(table["item_id"].to_numpy(), meta, path), ignored


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
    meta_path = root / "item_meta.csv"
    if meta_path.is_file():
        items, ignored = _read_item_meta(meta_path)
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
            "files": [str(root / n) for n, _ in PARTS if (root / n).is_file()],
            "given_split": {n: int((data["part"] == k).sum()) for n, k in PARTS},
            "neg_items_ignored": negatives,
            "ignored_columns": ignored,
            # a given split without them is refused unless a protocol re-splits the rows
            "missing_files": [str(root / n) for n, _ in PARTS if not (root / n).is_file()],
        },
    )
