"""A remote project (functions against a real `shardline serve`) that fails to start stops what it had started."""

from __future__ import annotations

from pathlib import Path

import pytest

from _shardline import shardline
from shardline.runtime.config import load_config
from shardline.runtime.functions import Throttled
from shardline.runtime.remote import RemoteProject, kinesis_client

CONFIG = """
streams:
  events: {{shards: 1}}
functions:
  first:
    handler: handlers/app.handler
    events:
      - stream: {{stream: events}}
  second:
    handler: handlers/app.handler
    events:
      - stream:
          stream: events
          destinations:
            onFailure: {{type: file, path: "{failures}"}}
"""


async def test_a_failed_start_stops_what_it_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "app.py").write_text("def handler(event, context):\n    return None\n")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the failure file's directory should be")
    cfg = tmp_path / "shardline.yml"
    cfg.write_text(CONFIG.format(failures=blocker / "failures.jsonl"))
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path / "server"), "--fsync", "never") as server:
        client = kinesis_client(server.url, "us-east-1")
        project = RemoteProject(load_config(cfg), client, tmp_path / "state", create_streams=True)
        with pytest.raises(OSError):
            await project.start()  # the second function's destination cannot be made
    [first] = project.mappings  # the first function's mapping had started
    assert not first.running()
    assert project.store is None
    for pool in project.pools.values():
        with pytest.raises(Throttled, match="FunctionClosed"):
            await pool.invoke(b"{}")
