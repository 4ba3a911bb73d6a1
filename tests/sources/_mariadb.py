"""A private MariaDB server for the CDC tests: its own data directory, socket and free loopback port.

It is started with the binary log on, in ROW format with FULL row images and FULL row metadata (what the source
needs), and stopped (SIGTERM, then SIGKILL after a deadline) at teardown. The system service is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

__all__ = ["MariaDB", "install_datadir", "mariadb_server", "server_binaries"]

BINLOG_FLAGS = (
    "--log-bin=binlog",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
    "--server-id=1",
)


def server_binaries() -> tuple[str, str] | None:
    server = shutil.which("mariadbd") or ("/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None)
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    return (server, install) if server and install else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MariaDB:
    port: int
    datadir: Path
    process: subprocess.Popen[bytes]

    @property
    def dsn(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}"

    def connect(self, database: str | None = None, **kwargs: Any) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            password="",
            database=database,
            charset="utf8mb4",
            autocommit=True,
            **kwargs,
        )

    def execute(self, *statements: str, database: str | None = None) -> None:
        with self.connect(database) as conn, conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)


def install_datadir(datadir: Path) -> Path:
    """A fresh server data directory (system tables only); servers start from copies of it."""
    found = server_binaries()
    if found is None:
        raise RuntimeError("mariadbd and mariadb-install-db are needed for the CDC tests")
    subprocess.run(
        [found[1], "--no-defaults", f"--datadir={datadir}", "--auth-root-authentication-method=normal",
         "--skip-test-db", *_user()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return datadir


def _user() -> list[str]:
    return ["--user=root"] if os.geteuid() == 0 else []


@contextlib.contextmanager
def mariadb_server(base: Path, template: Path, *extra: str, binlog: bool = True) -> Iterator[MariaDB]:
    """A server on a copy of ``template`` (see ``install_datadir``) under ``base``."""
    found = server_binaries()
    assert found is not None
    server = found[0]
    datadir = base / "data"
    shutil.copytree(template, datadir)
    user = _user()
    port = _free_port()
    args = [
        server, "--no-defaults", f"--datadir={datadir}", f"--socket={base / 'mysqld.sock'}", f"--port={port}",
        "--bind-address=127.0.0.1", f"--pid-file={base / 'mysqld.pid'}", f"--log-error={base / 'error.log'}",
        "--skip-name-resolve", "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
        "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci", *user,
        *(BINLOG_FLAGS if binlog else ()), *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = MariaDB(port, datadir, proc)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                db.execute("SELECT 1")
                break
            except pymysql.err.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (base / "error.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"mariadbd did not start:\n{log}") from None
                time.sleep(0.1)
        yield db
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
