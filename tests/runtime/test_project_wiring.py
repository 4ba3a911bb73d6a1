"""Project over any Wiring: the streams are made ready, then every mapping reads through the wiring's source factory
and writes on-failure records through its destination factory; nothing else differs between wirings."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardline import Engine
from shardline.models import PutRecordsRequestEntry
from shardline.runtime.config import ProjectConfig, load_config
from shardline.runtime.destinations import Destination
from shardline.runtime.project import EngineWiring, Project
from shardline.runtime.source import ShardSource

CONFIG = """
streams:
  events: {shards: 1}
  failed: {shards: 1}
functions:
  fn:
    handler: handlers/app.handler
    events:
      - stream:
          stream: events
          maximumRetryAttempts: 0
          destinations:
            onFailure: {type: stream, name: failed}
"""


class Recording(EngineWiring):
    """The embedded engine, noting what the project asked of it."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.asked: list[str] = []

    async def prepare(self, config: ProjectConfig) -> None:
        self.asked.append(f"prepare {sorted(config.streams)}")
        await super().prepare(config)

    async def source(self, stream_name: str, consumer: str | None = None) -> ShardSource:
        self.asked.append(f"source {stream_name}")
        return await super().source(stream_name)

    def stream_destination(self, stream_name: str) -> Destination:
        self.asked.append(f"destination {stream_name}")
        return super().stream_destination(stream_name)


def project_file(tmp_path: Path) -> Path:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "app.py").write_text("def handler(event, context):\n    raise ValueError('no')\n")
    cfg = tmp_path / "shardline.yml"
    cfg.write_text(CONFIG)
    return cfg


async def test_a_project_reads_and_discards_through_its_wiring(tmp_path: Path) -> None:
    config = load_config(project_file(tmp_path))
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        wiring = Recording(engine)
        project = Project(config, wiring, state_dir=tmp_path / "state")
        await project.start()
        try:
            assert wiring.asked == ["prepare ['events', 'failed']", "destination failed", "source events"]
            await engine.put_records([PutRecordsRequestEntry(b"x", "k")], stream_name="events")
            [mapping] = project.mappings
            await mapping.idle()
            assert mapping.stats().totals["dead_lettered"] == 1
        finally:
            await project.stop()
    assert (tmp_path / "state" / "leases.db").exists()


async def test_a_project_over_a_wiring_needs_a_state_dir(tmp_path: Path) -> None:
    """Only a project given the engine itself knows where its checkpoints live (the engine's data directory)."""
    config = load_config(project_file(tmp_path))
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        with pytest.raises(ValueError, match="needs a state_dir"):
            Project(config, EngineWiring(engine))
