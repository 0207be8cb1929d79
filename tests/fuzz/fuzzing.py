"""Shared pieces of the fuzz suite: bounded settings, the count of generated cases, file contents.

Every property states: a generated input gives a usable result or a ``RecsaeError``, never any
other exception. ``CASES`` counts the inputs each test tried; ``conftest.py`` prints the total.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from recsae.data.dataset import InteractionDataset
from recsae.data.split import make_split
from recsae.errors import RecsaeError

CASES: Counter[str] = Counter()
"""Generated cases per test, printed in the terminal summary."""


def fuzz(max_examples: int) -> Callable[[Any], Any]:
    """Seeded, bounded hypothesis settings: the same cases on every run, no example database."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@contextmanager
def scratch() -> Iterator[Path]:
    """A fresh empty folder per generated case (pytest's tmp_path is one per test, not per case)."""
    folder = Path(tempfile.mkdtemp(prefix="recsae-fuzz-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


ODD = ["", " ", "nan", "NaN", "inf", "-inf", "1e300", "-1e16", "99999999999999999999", "-9223372036854775809",
       "007", "-0", "1.5", " 3 ", '"', '"a,b"', "\ufeff1", "NULL", "None", "\\N", "1::2", "a|b", "é", "\x00"]
CELL = st.one_of(st.integers(-3, 12).map(str), st.sampled_from(ODD), st.text(max_size=5),
                 st.floats().map(repr), st.integers(-(2**70), 2**70).map(str))
"""One field of a delimited file: small ids most often, then every kind of wrong value."""


@st.composite
def delimited(draw: st.DrawFn, header: list[str] | None, sep: str, width: int) -> bytes:
    """A delimited file of ``width`` fields (with ``header`` as its first line when given):
    mostly well-formed rows, with wrong rows, wrong headers, duplicates, odd line endings and
    encodings, or plain garbage bytes."""
    mode = draw(st.sampled_from(["clean", "clean", "dirty", "dirty", "garbage"]))
    if mode == "garbage":
        return draw(st.binary(max_size=200))
    good = st.lists(st.integers(1, 9).map(str), min_size=width, max_size=width)
    row = good if mode == "clean" else st.one_of(good, good, st.lists(CELL, max_size=width + 2))
    rows = draw(st.lists(row, max_size=24))
    if rows and draw(st.booleans()):
        rows += rows[: draw(st.integers(1, len(rows)))]  # duplicate rows
    lines = [sep.join(r) for r in rows]
    if header is not None:
        head = header if mode == "clean" else draw(st.one_of(st.just(header), st.permutations(header),
                                                             st.lists(CELL, max_size=width + 1)))
        lines.insert(0, sep.join(head))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n"]))
    encoding = "utf-8" if mode == "clean" else draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


def write(path: Path, content: bytes, damage: int = 0) -> None:
    """Write ``content``; a ``.gz`` path gets it compressed, cut short by ``damage`` bytes."""
    if path.suffix == ".gz":
        content = gzip.compress(content, mtime=0)
        content = content[: len(content) - damage] if damage else content
    path.write_bytes(content)


def check_dataset(ds: InteractionDataset) -> None:
    """The invariants of a loaded dataset that every later stage relies on."""
    n = ds.n_interactions
    assert n > 0 and len(ds.item) == n and len(ds.time) == n
    assert ds.user.dtype == np.int64 and ds.item.dtype == np.int64
    assert ds.user.min() >= 1 and ds.user.max() == ds.n_users == len(ds.user_ids) - 1
    assert ds.item.min() >= 1 and ds.item.max() <= ds.n_items == len(ds.item_ids) - 1
    assert np.all(np.diff(ds.user) >= 0), "rows are sorted by user"
    assert not np.isinf(ds.time).any()
    assert len(ds.item_meta.title) == ds.n_items + 1


def loads_or_refuses(test: str, load: Callable[[], InteractionDataset]) -> str:
    """Run ``load``: a valid dataset (which then splits or is refused) or a RecsaeError.
    Any other exception fails the test. Returns how it ended, for hypothesis' statistics."""
    CASES[test] += 1
    try:
        ds = load()
    except RecsaeError:
        return "refused"
    check_dataset(ds)
    try:
        make_split(ds)
    except RecsaeError:
        return "loaded, split refused"
    return "loaded and split"
