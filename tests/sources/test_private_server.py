"""The private server the CDC tests run against has what a change-data-capture source needs."""

from __future__ import annotations

from ._mariadb import MariaDB


def test_private_server_logs_full_row_images(mariadb: MariaDB) -> None:
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@port, @@version")
        log_bin, fmt, image, metadata, port, version = cur.fetchone()
    assert (log_bin, fmt, image, metadata, port) == (1, "ROW", "FULL", "FULL", mariadb.port)
    assert "MariaDB" in version
    assert mariadb.port != 3306
