"""The ``recsae`` command line: a thin layer over the Python API.

Each stage registers its commands from its own module; user errors (``RecsaeError``) are
printed as one line and exit with code 2, without a traceback, and so are operating-system
errors naming a file (a file where a folder should be, no permission, a full disk). Ctrl-C
(SIGINT) prints that the finished stages are kept and exits with code 130, SIGTERM likewise
with code 143 (128 + the signal number, as shells report a process the signal ended).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

import typer
from typer.core import TyperGroup

from recsae.errors import RecsaeError

INTERRUPTED = "interrupted; finished stages are kept and a rerun resumes from them"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds like Ctrl-C (temporaries deleted)."""


def _exit_code(err: KeyboardInterrupt) -> int:
    return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)


class _Group(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        # typer turns KeyboardInterrupt into a silent exit before main() could see it
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as err:
            typer.echo(INTERRUPTED, err=True)
            raise typer.Exit(_exit_code(err)) from None


app = typer.Typer(
    name="recsae",
    help="Open up recommendation models with sparse autoencoders: probe, train a TopK SAE, "
    "interpret its latents, steer recommendations, and report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_Group,
)


def _register() -> None:
    from recsae.cli import data, explain, interpret, report, run, sae, steer, train

    for module in (run, data, train, sae, interpret, explain, steer, report):
        module.register(app)


_register()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    from recsae.utils import setup_logging, yield_when_busy

    setup_logging()
    yield_when_busy()  # before any command imports torch
    # signal handlers can only be set from the main thread (main() may be called from others)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main_thread else None
    try:
        app(args=argv, standalone_mode=True)
    except RecsaeError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except OSError as err:
        if err.filename is None:
            raise
        # a place that cannot be written (a file where a folder should be, no permission, full disk)
        typer.echo(f"error: {err.filename}: {err.strerror or err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt as err:  # outside a command, e.g. while parsing
        typer.echo(INTERRUPTED, err=True)
        sys.exit(_exit_code(err))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
