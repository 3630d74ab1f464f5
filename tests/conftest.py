from __future__ import annotations

import pytest

from freshlink import Cache


@pytest.fixture
def cache() -> Cache:
    return Cache(namespace="test")
