"""Database -> stream -> function in one command: start a private MariaDB with its binary log on, fill shop.orders,
run `shardline up` on this project (its source snapshots the table, then follows the binary log), change orders
while it runs (inserts, updates, deletes, an id change), and check that the function's SQLite replica ends up
equal to the table.

Usage: python examples/cdc/demo.py [--orders 500] [--data-dir DIR]     (needs mariadbd and mariadb-install-db)
"""

import argparse
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymysql

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mariadb(base: Path, port: int) -> subprocess.Popen:
    server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [install, "--no-defaults", f"--datadir={base / 'db'}", "--auth-root-authentication-method=normal",
         "--skip-test-db", *user],
        check=True, capture_output=True,
    )  # fmt: skip
    return subprocess.Popen(
        [server, "--no-defaults", f"--datadir={base / 'db'}", f"--socket={base / 'mysqld.sock'}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--log-error={base / 'mariadb.log'}", "--skip-name-resolve",
         "--log-bin=binlog", "--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL",
         "--server-id=1", "--character-set-server=utf8mb4", *user],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def connect(port: int, user: str = "root", password: str = "") -> pymysql.Connection:
    deadline = time.monotonic() + 60
    while True:
        try:
            return pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, autocommit=True)
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def replica(path: Path) -> dict[int, tuple]:
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        try:
            return {r[0]: tuple(r[1:]) for r in db.execute("SELECT id, customer, total, status FROM orders")}
        except sqlite3.OperationalError:
            return {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=500)
    ap.add_argument("--data-dir", type=Path, help="default: a new temporary directory")
    args = ap.parse_args()
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="shardline-cdc-"))
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    print(f"1. a private MariaDB on 127.0.0.1:{port} (data in {data})")
    mariadb = start_mariadb(data, port)
    up = None
    try:
        with connect(port) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE shop")
            cur.execute(
                "CREATE TABLE shop.orders (id INT PRIMARY KEY, customer VARCHAR(40), total DECIMAL(10,2), "
                "status VARCHAR(12))"
            )
            cur.execute("CREATE USER cdc@'127.0.0.1' IDENTIFIED BY 'demo-password'")
            cur.execute("GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO cdc@'127.0.0.1'")
            rows = [(i, f"customer-{i % 37}", f"{i * 1.25:.2f}", "new") for i in range(1, args.orders + 1)]
            cur.executemany("INSERT INTO shop.orders VALUES (%s, %s, %s, %s)", rows)
        project = data / "project"
        shutil.copytree(HERE, project, ignore=shutil.ignore_patterns("demo.py", "__pycache__"))
        config = project / "shardline.yml"
        config.write_text(config.read_text().replace("127.0.0.1:3306", f"127.0.0.1:{port}"))
        replica_db = data / "replica.sqlite"
        env = {**os.environ, "SHOP_DB_PASSWORD": "demo-password", "REPLICA_DB": str(replica_db)}
        print(f"2. shardline up {config}  (log in {data / 'up.log'})")
        with (data / "up.log").open("w") as log:
            up = subprocess.Popen(
                [sys.executable, "-m", "shardline.cli", "up", str(config), "--port", "0",
                 "--data-dir", str(data / "shardline")],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        print("3. changing orders while the source runs")
        rng = random.Random(1)
        with connect(port) as conn, conn.cursor() as cur:
            for n in range(200):
                cur.execute("BEGIN")
                cur.execute("UPDATE shop.orders SET status = 'paid', total = total + 1 WHERE id = %s",
                            (rng.randint(1, args.orders),))  # fmt: skip
                if n % 10 == 0:
                    cur.execute("DELETE FROM shop.orders WHERE id = %s", (rng.randint(1, args.orders),))
                if n % 25 == 0:
                    cur.execute("INSERT INTO shop.orders VALUES (%s, 'late', 9.99, 'new')", (args.orders + 1 + n,))
                cur.execute("COMMIT")
            cur.execute("UPDATE shop.orders SET id = 100000 WHERE id = (SELECT MIN(id) FROM shop.orders)")
            cur.execute("SELECT id, customer, total, status FROM shop.orders")
            table = {r[0]: (r[1], f"{r[2]:.2f}", r[3]) for r in cur.fetchall()}
        print(f"4. waiting for the replica to match the table ({len(table)} rows)")
        deadline = time.monotonic() + 120
        while replica(replica_db) != table:
            if up.poll() is not None or time.monotonic() > deadline:
                print(f"   the replica does not match; see {data / 'up.log'}")
                return 1
            time.sleep(0.2)
        print(f"   replica {replica_db} matches shop.orders: {len(table)} rows")
        return 0
    finally:
        if up is not None and up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(30)
        mariadb.terminate()
        mariadb.wait(60)


if __name__ == "__main__":
    sys.exit(main())
