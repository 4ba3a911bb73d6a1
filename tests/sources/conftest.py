from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._mariadb import MariaDB, install_datadir, mariadb_server

_names = itertools.count()


@pytest.fixture(scope="session")
def mariadb_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_datadir(tmp_path_factory.mktemp("mariadb-template") / "data")


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory, mariadb_template: Path) -> Iterator[MariaDB]:
    """One private server for the whole session; each test gets its own database (``schema``)."""
    with mariadb_server(tmp_path_factory.mktemp("mariadb"), mariadb_template) as db:
        yield db


@pytest.fixture
def schema(mariadb: MariaDB) -> Iterator[str]:
    name = f"cdc{next(_names)}"
    mariadb.execute(f"CREATE DATABASE {name}")
    yield name
    mariadb.execute(f"DROP DATABASE {name}")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
