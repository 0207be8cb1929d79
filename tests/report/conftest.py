"""Fixtures of the report tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from report_fake_run import ALL_PARTS, make_run


@pytest.fixture
def fake_run(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``fake_run(parts=..., n_latents=..., layout=...)`` builds a run folder."""
    counter = iter(range(1000))

    def build(parts: tuple[str, ...] = ALL_PARTS, n_latents: int = 30, layout: str = "stages") -> Path:
        return make_run(tmp_path / f"run{next(counter)}", parts, n_latents, layout)

    return build
