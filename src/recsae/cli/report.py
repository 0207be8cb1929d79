"""CLI commands of the report stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report(
    run: Annotated[Path, typer.Option("--run", help="Run folder written by `recsae run --out`.")],
    out: Annotated[
        Optional[Path],  # noqa: UP045 (typer needs Optional on Python 3.10)
        typer.Option("--out", help="Where to write the page (default: RUN/report/index.html)."),
    ] = None,
) -> None:
    """Write a self-contained HTML report of a run (opens offline from disk, no network)."""
    from recsae.errors import DataError
    from recsae.io import check_writable_folder
    from recsae.report import write_report
    from recsae.rundir import RunDir

    if out is not None and out.is_dir():
        raise DataError("is a folder; --out takes the HTML file to write, e.g. report.html", path=out)
    check_writable_folder((out or RunDir(run).report_page).parent)  # before the page is rendered
    path = write_report(run, out)
    size = path.stat().st_size / 1e6
    typer.echo(f"report written to {path} ({size:.2f} MB); open it in a browser")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.command("report")(report)
