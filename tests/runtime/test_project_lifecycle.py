"""A project's start and stop: a start that fails part way stops what it had started; a stop reports what failed; a
mapping that starts disabled shows the checkpoints it kept."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from shardline import Engine, PutRecordsRequestEntry
from shardline.runtime.config import load_config
from shardline.runtime.functions import Throttled
from shardline.runtime.project import Project

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


def project_file(tmp_path: Path, failures: Path) -> Path:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "app.py").write_text("def handler(event, context):\n    return None\n")
    cfg = tmp_path / "shardline.yml"
    cfg.write_text(CONFIG.format(failures=failures))
    return cfg


async def test_a_failed_start_stops_what_it_started(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the failure file's directory should be")
    config = load_config(project_file(tmp_path, blocker / "failures.jsonl"))
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        project = Project(config, engine)
        with pytest.raises(OSError):
            await project.start()  # the second function's destination cannot be made
        [first] = project.mappings  # the first function's mapping had started
        assert not first.running()
        assert project.store is None
        for pool in project.pools.values():
            with pytest.raises(Throttled, match="FunctionClosed"):
                await pool.invoke(b"{}")


async def test_stop_logs_what_failed_and_stops_the_rest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(project_file(tmp_path, tmp_path / "failures.jsonl"))
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        project = Project(config, engine)
        await project.start()

        async def failing_close() -> None:
            raise RuntimeError("the pool would not close")

        project.pools["first"].close = failing_close  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger="shardline.runtime"):
            await project.stop()
    [record] = [r for r in caplog.records if r.name == "shardline.runtime"]
    assert record.getMessage() == "closing function first failed"
    assert record.exc_info is not None and str(record.exc_info[1]) == "the pool would not close"
    with pytest.raises(Throttled, match="FunctionClosed"):
        await project.pools["second"].invoke(b"{}")
    assert project.store is None


ONE = """
streams:
  events: {{shards: 1}}
functions:
  only:
    handler: handlers/app.handler
    events:
      - stream: {{stream: events, enabled: {enabled}}}
"""


async def test_a_mapping_started_disabled_shows_the_checkpoints_it_kept(tmp_path: Path) -> None:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "app.py").write_text("def handler(event, context):\n    return None\n")
    cfg = tmp_path / "shardline.yml"
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        cfg.write_text(ONE.format(enabled="true"))
        project = Project(load_config(cfg), engine)
        await project.start()
        try:
            res = await engine.put_records([PutRecordsRequestEntry(b"x", "pk", None)] * 3, stream_name="events")
            last = res.records[-1].sequence_number
            [mapping] = project.mappings
            deadline = time.monotonic() + 60
            while [lease.checkpoint for lease in mapping.lease_view()] != [last]:
                assert time.monotonic() < deadline, "the checkpoint never reached the last record"
                await asyncio.sleep(0.02)
        finally:
            await project.stop()

        cfg.write_text(ONE.format(enabled="false"))
        project = Project(load_config(cfg), engine)
        await project.start()
        try:
            [mapping] = project.mappings
            assert not mapping.running()
            assert [(lease.shard_id, lease.checkpoint) for lease in mapping.lease_view()] == [
                ("shardId-000000000000", last)
            ]
        finally:
            await project.stop()
