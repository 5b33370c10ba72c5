"""The trainer's tests read ``data``: the shared tiny shards (tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def data(tiny_shards):
    return tiny_shards
