"""``python -m recsae``: the command line."""

from recsae.cli import main

main()
