from __future__ import annotations

from collections.abc import Iterator

import pytest

from shardline.storage.log import FileCache


@pytest.fixture
def files() -> Iterator[FileCache]:
    cache = FileCache(4)
    yield cache
    cache.close()
