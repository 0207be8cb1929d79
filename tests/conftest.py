"""Shared fixtures: the real-data root (never copied into the repository), a tiny sequential model
and split (``tiny_sequences.py``), a tiny finished run (``tiny_pipeline.py``), the in-process CLI."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """$RECSAE_DATA, else <repo>/../shared/data; skips the test when the folder is absent."""
    root = Path(os.environ.get("RECSAE_DATA") or REPO_ROOT.parent / "shared" / "data")
    if not root.is_dir():
        pytest.skip(f"real datasets not found at {root} (set RECSAE_DATA to run this test)")
    return root


@pytest.fixture
def tiny_split() -> Any:
    """Five hand-built users (see ``tiny_sequences.tiny_split``)."""
    from tiny_sequences import tiny_split

    return tiny_split()


@pytest.fixture
def tiny_model() -> Any:
    """``tiny_sequences.AvgSeqModel``: states are a projection of the window's mean item embedding."""
    from tiny_sequences import AvgSeqModel

    return AvgSeqModel()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``recsae run`` folder of ``tiny_pipeline.tiny_config()`` (every stage, report
    included), made once per session: tests read it or copy it, never change what it holds."""
    from recsae.pipeline import run_pipeline
    from tiny_pipeline import tiny_config

    out = tmp_path_factory.mktemp("tiny_run")
    run_pipeline(out, tiny_config())
    return out


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The process umask set to 0o022 for the test (restored after), so file modes are known."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """A command that sets torch's threads (``--threads``, default from the load) leaves later tests theirs."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    if torch is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


CliRun = Callable[[list[str]], tuple[int, str, str]]
"""``recsae ARGV`` in this process: (exit code, stdout, stderr)."""


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> CliRun:
    """Run the ``recsae`` CLI in-process, as ``main`` runs it (exit codes included)."""
    from recsae.cli import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
