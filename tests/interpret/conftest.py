"""Fixtures of the interpretation tests."""

from __future__ import annotations

import pytest
from interpret_toy import Toy, make_toy


@pytest.fixture(scope="module")
def toy() -> Toy:
    return make_toy()
