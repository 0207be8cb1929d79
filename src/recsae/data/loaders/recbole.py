"""RecBole atomic files: ``<name>.inter`` plus optional ``<name>.item`` and ``<name>.user``.

Tab-separated, header fields ``name:type`` with type ``token``, ``float``, ``token_seq`` or
``float_seq`` (sequences are space-separated). Interaction fields are mapped by name
(``user_id``, ``item_id``, ``rating``, ``timestamp`` by default, as in RecBole's config).
Item fields: a field whose name contains 'title' becomes the title (and ``text['title']``),
other ``token_seq`` fields multi-valued attributes (e.g. ``genre``), ``token`` fields
categorical, ``float`` fields numeric; ``float_seq`` fields are skipped (listed in info).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsae.data.dataset import InteractionDataset, ItemMeta
from recsae.data.loaders.common import (
    Column,
    ItemCatalog,
    UserCatalog,
    make_dataset,
    read_header,
    read_table,
)
from recsae.errors import DataError

TYPES = ("token", "float", "token_seq", "float_seq")


def _fields(path: Path) -> dict[str, tuple[str, str]]:
    """Header as ``field name -> (column label, type)``; every label must be ``name:type``."""
    out: dict[str, tuple[str, str]] = {}
    for label in read_header(path, "\t"):
        name, _, kind = label.partition(":")
        if kind not in TYPES:
            raise DataError(
                f"header field {label!r}: expected 'name:type' with type one of {', '.join(TYPES)}",
                path=path,
                line=1,
                field=label,
            )
        out[name] = (label, kind)
    return out


def _need(fields: dict[str, tuple[str, str]], name: str, path: Path) -> str:
    if name not in fields:
        raise DataError(
            f"missing column; the header has {', '.join(lab for lab, _ in fields.values())}",
            path=path,
            line=1,
            field=name,
        )
    return fields[name][0]


def _find_inter(root: Path) -> Path:
    if root.is_file() and root.suffix == ".inter":
        return root
    named = root / f"{root.name}.inter"
    if named.is_file():
        return named
    found = sorted(root.glob("*.inter")) if root.is_dir() else []
    if len(found) == 1:
        return found[0]
    raise DataError("not a RecBole folder: expected exactly one <name>.inter file", path=root)


def _read_items(path: Path, item_field: str) -> tuple[ItemCatalog, list[str]]:
    fields = _fields(path)
    id_label = _need(fields, item_field, path)
    others = {n: fk for n, fk in fields.items() if n != item_field}
    skipped = [n for n, (_, kind) in others.items() if kind == "float_seq"]
    cols = [Column(id_label, "str")] + [
        Column(label, "float" if kind == "float" else "str", required=False)
        for n, (label, kind) in others.items()
        if n not in skipped
    ]
    table = read_table(path, cols, sep="\t")
    meta = ItemMeta(title=[""] * len(table))
    for name, (label, kind) in others.items():
        if name in skipped:
            continue
        if kind == "float":
            meta.numeric[name] = table[label].to_numpy(dtype=np.float64)
            continue
        values = table[label].fillna("").astype(str).tolist()
        if "title" in name.lower():
            meta.title = [" ".join(v.split()) for v in values]
            meta.text["title"] = meta.title
        elif kind == "token_seq":
            meta.multi[name] = [tuple(v.split()) for v in values]
        else:
            meta.categorical[name] = values
    return ItemCatalog(table[id_label].to_numpy(), meta, path), skipped


def _read_users(path: Path, user_field: str) -> UserCatalog:
    fields = _fields(path)
    id_label = _need(fields, user_field, path)
    others = {n: label for n, (label, _) in fields.items() if n != user_field}
    cols = [Column(id_label, "str")] + [Column(label, "str", required=False) for label in others.values()]
    table = read_table(path, cols, sep="\t")
    return UserCatalog(
        table[id_label].to_numpy(),
        {n: table[label].fillna("").astype(str).tolist() for n, label in others.items()},
        path,
    )


def load(
    path: str | Path,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    rating_field: str = "rating",
    time_field: str = "timestamp",
) -> InteractionDataset:
    """Load ``<name>.inter`` (+ ``.item``, ``.user``) from a folder (or the ``.inter`` path).

    Without a time field the file order is the time order.
    """
    inter = _find_inter(Path(path))
    stem = inter.with_suffix("")
    fields = _fields(inter)
    cols = [Column(_need(fields, user_field, inter), "str"), Column(_need(fields, item_field, inter), "str")]
    has_time = time_field in fields
    has_rating = rating_field in fields
    if has_time:
        cols.append(Column(fields[time_field][0], "float"))
    if has_rating:
        cols.append(Column(fields[rating_field][0], "float"))
    table = read_table(inter, cols, sep="\t")
    time = (
        table[fields[time_field][0]].to_numpy(dtype=np.float64)
        if has_time
        else np.arange(len(table), dtype=np.float64)
    )
    item_path = stem.with_suffix(".item")
    user_path = stem.with_suffix(".user")
    items, skipped = _read_items(item_path, item_field) if item_path.is_file() else (None, [])
    users = _read_users(user_path, user_field) if user_path.is_file() else None
    return make_dataset(
        stem.name,
        table[cols[0].name].to_numpy(),
        table[cols[1].name].to_numpy(),
        time,
        rating=table[fields[rating_field][0]].to_numpy(dtype=np.float64) if has_rating else None,
        items=items,
        users=users,
        info={
            "format": "recbole",
            "path": str(inter.parent),
            "files": [str(p) for p in (inter, item_path, user_path) if p.is_file()],
            "time": "timestamp field" if has_time else "file order (no timestamp field)",
            "has_time": has_time,
            "ignored_columns": skipped,
        },
    )
