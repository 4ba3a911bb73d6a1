"""``shardline up`` runs a project's sources beside its streams and functions; ``shardline cdc`` runs them alone."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from _shardline import CLI, shardline

from ._mariadb import MariaDB

HANDLER = """
import base64, json, os

def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        for r in event["Records"]:
            change = json.loads(base64.b64decode(r["kinesis"]["data"]))
            f.write(json.dumps([change["op"], change["after"]]) + "\\n")
"""


def test_up_runs_sources_beside_streams_and_functions(mariadb: MariaDB, schema: str, tmp_path: Path) -> None:
    mariadb.execute(
        "CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(8,2))",
        "INSERT INTO orders VALUES (1, 9.50)",
        database=schema,
    )
    out = tmp_path / "out.jsonl"
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "orders.py").write_text(HANDLER)
    (tmp_path / "shardline.yml").write_text(
        f"""
streams:
  order-changes: {{shards: 2}}
functions:
  copy:
    handler: handlers/orders.handler
    environment: {{OUT: "{out}"}}
    events: [{{stream: order-changes}}]
sources:
  shop:
    dsn: mysql://root@127.0.0.1:{mariadb.port}/{schema}
    stream: order-changes
"""
    )
    env = {**os.environ, "SHOP_DB_PASSWORD": ""}
    args = ["up", str(tmp_path / "shardline.yml"), "--port", "0", "--data-dir", str(tmp_path / "data")]
    with shardline(*args, env=env, cwd=tmp_path) as srv:

        def lines(n: int) -> None:
            deadline = time.monotonic() + 60
            while not out.exists() or len(out.read_text().splitlines()) < n:
                assert srv.proc.poll() is None, "shardline up stopped"
                assert time.monotonic() < deadline, f"the function did not write {n} lines"
                time.sleep(0.05)

        lines(1)  # the snapshot's row, through the stream and the function
        mariadb.execute("UPDATE orders SET total = 12.25 WHERE id = 1", database=schema)
        lines(2)
        srv.proc.terminate()
        assert srv.proc.wait(30) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        ["r", {"id": 1, "total": "9.50"}],
        ["u", {"id": 1, "total": "12.25"}],
    ]
    assert json.loads((tmp_path / "data" / "sources" / "shop.json").read_text())["snapshot"]["done"] is True


def _cdc(project: Path, url: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "SHOP_DB_PASSWORD": "not-shown"}
    return subprocess.run(
        [*CLI, "cdc", str(project), "--endpoint-url", url, "--state-dir", str(state)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_cdc_names_what_is_wrong_and_never_shows_the_password(mariadb: MariaDB, schema: str, tmp_path: Path) -> None:
    project = tmp_path / "shardline.yml"
    project.write_text(
        f"sources:\n  shop:\n    dsn: mysql://nobody@127.0.0.1:{mariadb.port}/{schema}\n    stream: missing\n"
    )
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path / "serve")) as srv:
        denied = _cdc(project, srv.url, tmp_path / "state")
        # A user with only the privileges a source needs (and the password from the environment).
        mariadb.execute(
            "CREATE USER IF NOT EXISTS cdc@'127.0.0.1' IDENTIFIED BY 'not-shown'",
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO cdc@'127.0.0.1'",
        )
        project.write_text(project.read_text().replace("nobody@", "cdc@"))
        no_stream = _cdc(project, srv.url, tmp_path / "state")
    assert denied.returncode == 2
    assert f"source shop: cannot connect to nobody@127.0.0.1:{mariadb.port}" in denied.stderr
    assert "Access denied" in denied.stderr
    for result in (denied, no_stream):
        assert "not-shown" not in result.stderr + result.stdout
    assert no_stream.returncode == 2, no_stream.stderr
    assert "stream missing does not exist on the endpoint" in no_stream.stderr
