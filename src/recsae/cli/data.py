"""CLI commands of the data stage: ``recsae data list | stats | fetch``.

The dataset options (``--dataset --data-root --format --min-rating --k-core``) are defined
here once as annotated types; other commands reuse them::

    def train(dataset: DatasetOpt = "synthetic", data_root: DataRootOpt = None, fmt: FormatOpt = None,
              min_rating: MinRatingOpt = None, k_core: KCoreOpt = None) -> None:
        ds = dataset_options(dataset, data_root, fmt, min_rating, k_core).load(seed)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from recsae.data.registry import DEFAULT_DATASET, DatasetOptions
from recsae.errors import ConfigError

DatasetOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        help="Dataset name (synthetic, ml-100k, ml-1m, ml-latest-small; see `recsae data list`) "
        "or a path (with --format).",
    ),
]
DataRootOpt = Annotated[
    Path | None,
    typer.Option("--data-root", help="Folder holding ml-100k/, ml-1m/, ... Default: $RECSAE_DATA."),
]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="Format of a path dataset: movielens-100k, movielens-1m, ml-latest, rechorus, recbole, table "
        "(default: inferred from its files).",
    ),
]
MinRatingOpt = Annotated[
    float | None,
    typer.Option(
        "--min-rating",
        help="Keep interactions with rating >= this as positives. Default: 4 for MovieLens, none "
        "otherwise; 0 keeps every MovieLens rating.",
    ),
]
KCoreOpt = Annotated[
    int | None,
    typer.Option("--k-core", help="Iterative k-core on users and items. Default: 5 for MovieLens, 0 (none) otherwise."),
]


SepOpt = Annotated[
    str | None,
    typer.Option("--sep", help="Plain table: field separator of the table(s), e.g. ';' or tab. Default: from the "
                 "extension (.csv comma, .tsv/.txt tab, .parquet).", rich_help_panel="Plain table"),
]
UserColOpt = Annotated[
    str | None,
    typer.Option("--user-col", help="Plain table: user id column. Default: user_id.", rich_help_panel="Plain table"),
]
ItemColOpt = Annotated[
    str | None,
    typer.Option("--item-col", help="Plain table: item id column (of the item table too). Default: item_id.",
                 rich_help_panel="Plain table"),
]
TimeColOpt = Annotated[
    str | None,
    typer.Option("--time-col", help="Plain table: timestamp column (numbers, or datetimes in Parquet). Default: "
                 "timestamp when present, else none (the split then draws the held-out items at random).",
                 rich_help_panel="Plain table"),
]
RatingColOpt = Annotated[
    str | None,
    typer.Option("--rating-col", help="Plain table: rating column, for --min-rating.", rich_help_panel="Plain table"),
]
TitleColOpt = Annotated[
    str | None,
    typer.Option("--title-col", help="Plain table: item title column (of --item-table, else of the table).",
                 rich_help_panel="Plain table"),
]
MultiColOpt = Annotated[
    list[str] | None,
    typer.Option("--multi-col", metavar="NAME[:SEP]", help="Plain table: multi-valued item column as NAME[:SEP], e.g. genres:'|' for "
                 "'Action|Comedy' (SEP default '|'; repeatable).", rich_help_panel="Plain table"),
]
ItemTableOpt = Annotated[
    Path | None,
    typer.Option("--item-table", help="Plain table: a separate item table (keyed by --item-col) holding the "
                 "title and attribute columns.", rich_help_panel="Plain table"),
]


def table_options(
    sep: str | None = None,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    rating_col: str | None = None,
    title_col: str | None = None,
    multi_col: list[str] | None = None,
    item_table: Path | None = None,
) -> dict[str, Any]:
    """The column options of a plain table as the keys of its JSON spec (empty when none is given)."""
    if sep is not None:
        sep = {"tab": "\t", "\\t": "\t"}.get(sep, sep)  # a literal backslash-t from the shell
        if not sep:
            raise ConfigError("--sep must not be empty")
    multi: dict[str, str] = {}
    for spec in multi_col or ():
        name, _, multi_sep = spec.partition(":")
        if not name:
            raise ConfigError(f"--multi-col {spec!r}: expected NAME or NAME:SEP, e.g. genres:|")
        multi[name] = multi_sep or "|"
    mapping: dict[str, Any] = {"user": user_col, "item": item_col, "time": time_col, "rating": rating_col,
                               "title": title_col}
    mapping = {k: v for k, v in mapping.items() if v is not None}
    if item_col is not None:
        mapping["item_id"] = item_col
    if multi:
        mapping["multi"] = multi
    table: dict[str, Any] = {"sep": sep, "item_sep": sep if item_table is not None else None,
                             "items": None if item_table is None else str(item_table), "mapping": mapping}
    return {k: v for k, v in table.items() if v}


def dataset_options(
    dataset: str = DEFAULT_DATASET,
    data_root: Path | None = None,
    fmt: str | None = None,
    min_rating: float | None = None,
    k_core: int | None = None,
    table: dict[str, Any] | None = None,
) -> DatasetOptions:
    """The shared dataset options from a command's parameters (``table``: from ``table_options``)."""
    return DatasetOptions(dataset, data_root, fmt, min_rating, k_core, table or {})


data_app = typer.Typer(help="Datasets: list them, show statistics, download them.", no_args_is_help=True)


@data_app.command("list")
def list_command(data_root: DataRootOpt = None) -> None:
    """List the named datasets and the formats a path dataset can have."""
    import os

    from recsae.data.registry import DATA_ENV, FORMATS, list_datasets

    root = data_root or (Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None)
    typer.echo("datasets (--dataset NAME):")
    for spec in list_datasets():
        where = ""
        if spec.folder:
            present = root is not None and (root / spec.folder).is_dir()
            where = f"  [{'found' if present else 'not found'} in {root}]" if root else "  [needs --data-root]"
        typer.echo(f"  {spec.name:<16} {spec.description}{where}")
    typer.echo("formats (--dataset PATH --format F):")
    for f in FORMATS.values():
        defaults = f"rating>={f.min_rating:g}, {f.k_core}-core" if f.min_rating is not None else "no filters"
        typer.echo(f"  {f.name:<16} {f.description} [defaults: {defaults}]")


@data_app.command("stats")
def stats_command(
    dataset: DatasetOpt = DEFAULT_DATASET,
    data_root: DataRootOpt = None,
    fmt: FormatOpt = None,
    min_rating: MinRatingOpt = None,
    k_core: KCoreOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic dataset.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
    concepts: Annotated[bool, typer.Option("--concepts", help="Also list every concept a --concept option can name "
                                           "(attribute values, popularity bands, decades, title words, frequent single "
                                           "items), with its number of items.")] = False,
    sep: SepOpt = None,
    user_col: UserColOpt = None,
    item_col: ItemColOpt = None,
    time_col: TimeColOpt = None,
    rating_col: RatingColOpt = None,
    title_col: TitleColOpt = None,
    multi_col: MultiColOpt = None,
    item_table: ItemTableOpt = None,
) -> None:
    """Users, items, interactions, density and sequence-length percentiles, raw and after filters.

    List the concepts `recsae run --concept` and `recsae steer --concept` accept on a dataset:
    recsae data stats --dataset synthetic --concepts
    """
    from recsae.data.stats import dataset_stats, format_stats
    from recsae.io import json_text

    table = table_options(sep, user_col, item_col, time_col, rating_col, title_col, multi_col, item_table)
    ds = dataset_options(dataset, data_root, fmt, min_rating, k_core, table).load(seed=seed)
    stats = dataset_stats(ds)
    sizes = _concept_sizes(ds, seed) if concepts else {}
    if as_json:
        typer.echo(json_text(stats.to_dict() | ({"concepts": sizes} if concepts else {})))
        return
    typer.echo(format_stats(stats))
    if concepts:
        typer.echo(f"concepts (--concept NAME; items): {len(sizes)}")
        typer.echo("\n".join(f"  {name}\t{n}" for name, n in sizes.items()))


def _concept_sizes(ds: Any, seed: int) -> dict[str, int]:
    """Every concept name of ``ds`` -> its number of items; the popularity bands and single items
    come from the training split that `recsae run` makes by default."""
    from recsae.data.split import make_split
    from recsae.steer.targets import concept_items

    items = concept_items(make_split(ds, seed=seed))
    return {name: int(items.single(name).sum()) for name in items.names()}  # type: ignore[union-attr]


@data_app.command("fetch")
def fetch_command(
    name: Annotated[str, typer.Argument(help="Dataset to download: ml-100k, ml-1m or ml-latest-small.")],
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Where to put it (then use it as --data-root). Default: ~/.cache/recsae/data."),
    ] = None,
    url: Annotated[str | None, typer.Option(help="Download from this URL instead.")] = None,
    checksum: Annotated[
        str | None,
        typer.Option(help="Expected 'sha256:<hex>' (or md5:<hex>) of the archive, overriding the built-in one."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Download again even if the folder exists.")] = False,
) -> None:
    """Download a dataset archive, verify its checksum and extract it into the cache folder."""
    from recsae.data.fetch import fetch

    target = fetch(name, cache_dir, url=url, checksum=checksum, force=force)
    typer.echo(str(target))


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.add_typer(data_app, name="data")
