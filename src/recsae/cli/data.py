"""CLI commands of the data stage: ``recsae data list | stats | fetch``.

The dataset options (``--dataset --data-root --format --min-rating --k-core``) are defined
here once as annotated types; other commands reuse them::

    def train(dataset: DatasetOpt = "synthetic", data_root: DataRootOpt = None, fmt: FormatOpt = None,
              min_rating: MinRatingOpt = None, k_core: KCoreOpt = None) -> None:
        ds = dataset_options(dataset, data_root, fmt, min_rating, k_core).load(seed)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsae.data.registry import DEFAULT_DATASET, DatasetOptions

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


def dataset_options(
    dataset: str = DEFAULT_DATASET,
    data_root: Path | None = None,
    fmt: str | None = None,
    min_rating: float | None = None,
    k_core: int | None = None,
) -> DatasetOptions:
    """The shared dataset options from a command's parameters."""
    return DatasetOptions(dataset, data_root, fmt, min_rating, k_core)


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
) -> None:
    """Users, items, interactions, density and sequence-length percentiles, raw and after filters."""
    from recsae.data.stats import dataset_stats, format_stats
    from recsae.io import json_text

    ds = dataset_options(dataset, data_root, fmt, min_rating, k_core).load(seed=seed)
    stats = dataset_stats(ds)
    typer.echo(json_text(stats.to_dict()) if as_json else format_stats(stats))


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
