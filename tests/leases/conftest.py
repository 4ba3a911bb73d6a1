"""Lease stores on both backends (a SQLite file per test, and one scratch PostgreSQL database per module), and for the
many-worker checks a scratch database and a real `shardline serve` per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _shardline import shardline
from shardline.runtime.leases import LeaseStore, SqliteLeaseStore
from shardline.runtime.leases.postgres import PostgresLeaseStore

from ._pg import install_audit, scratch_database

StoreFactory = Callable[[str], LeaseStore]


@pytest.fixture
def dsn() -> Iterator[str]:
    """A scratch PostgreSQL database of its own for one test (the workers' results table, and leases there)."""
    with scratch_database() as url:
        yield url


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    """A real `shardline serve` for one test's workers."""
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path / "server"), "--fsync", "never") as running:
        yield running.url
        running.proc.terminate()
        running.proc.wait(timeout=15)


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with scratch_database() as dsn:
        PostgresLeaseStore(dsn, owner="schema").close()  # creates the tables
        install_audit(dsn)
        yield dsn


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """``stores(owner)``: a store for worker ``owner``; every store of one test shares one table."""
    opened: list[LeaseStore] = []

    def make(owner: str) -> LeaseStore:
        st: LeaseStore
        if request.param == "sqlite":
            st = SqliteLeaseStore(tmp_path / "leases.db", owner=owner)
        else:
            st = PostgresLeaseStore(request.getfixturevalue("pg_dsn"), owner=owner)
        opened.append(st)
        return st

    yield make
    for st in opened:
        st.close()


@pytest.fixture
def app() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"
