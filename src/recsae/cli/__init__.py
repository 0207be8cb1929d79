"""The ``recsae`` command line: a thin layer over the Python API.

Each stage registers its commands from its own module; user errors (``RecsaeError``) are
printed as one line and exit with code 2, without a traceback.
"""

from __future__ import annotations

import sys

import typer

from recsae.errors import RecsaeError

app = typer.Typer(
    name="recsae",
    help="Open up recommendation models with sparse autoencoders: probe, train a TopK SAE, "
    "interpret its latents, steer recommendations, and report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from recsae.cli import data, interpret, report, run, sae, steer, train

    for module in (run, data, train, sae, interpret, steer, report):
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    from recsae.utils import setup_logging

    setup_logging()
    try:
        app(args=argv, standalone_mode=True)
    except RecsaeError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; finished stages are kept and a rerun resumes from them", err=True)
        sys.exit(130)
