"""User-facing errors: the CLI prints their message and exits with code 2, without a traceback."""

from __future__ import annotations

from pathlib import Path


class RecsaeError(Exception):
    """An error caused by the user's input or configuration, not by a bug in recsae."""


class DataError(RecsaeError):
    """Malformed or unusable data. Names the file, line and field where known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigError(RecsaeError):
    """An invalid option value or combination of options."""


class DistributedError(RecsaeError):
    """A collective operation under ``torchrun`` failed or timed out: another rank died or
    stopped taking part."""
