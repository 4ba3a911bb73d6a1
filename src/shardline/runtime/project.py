"""A running project: the streams, functions and mappings of one ``shardline.yml`` over one engine."""

from __future__ import annotations

import logging
from pathlib import Path

from ..clock import Clock, SystemClock
from ..engine import Engine
from ..errors import ResourceInUseException
from .checkpoints import LeaseStore
from .config import ProjectConfig
from .destinations import Destination, FileDestination, StreamDestination
from .filters import RecordFilter
from .functions import FunctionPool
from .mapping import MappingConfig, RuntimeTuning
from .source import EngineSource
from .supervisor import Mapping, stop_all

__all__ = ["Project"]

log = logging.getLogger("shardline.runtime")


class Project:
    """Creates missing streams, starts a warm pool per function and a Mapping per stream event."""

    def __init__(
        self,
        config: ProjectConfig,
        engine: Engine,
        *,
        tuning: RuntimeTuning | None = None,
        clock: Clock | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.tuning = tuning or RuntimeTuning()
        self.clock = clock or SystemClock()
        self.state_dir = state_dir or Path(engine.settings.data_dir) / "runtime"
        self.pools: dict[str, FunctionPool] = {}
        self.mappings: list[Mapping] = []
        self.store: LeaseStore | None = None
        self.running = False

    async def start(self) -> None:
        """Start everything; if a part fails, what was already started is stopped before the error is raised."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        for spec in self.config.streams.values():
            try:
                await self.engine.create_stream(spec.name, spec.shards, stream_mode=spec.mode)
                if spec.retention_hours != 24:
                    await self.engine.increase_stream_retention_period(spec.retention_hours, stream_name=spec.name)
                log.info("created stream %s", spec.name)
            except ResourceInUseException:
                pass  # exists from an earlier run: its data and shards are kept as they are
        self.store = LeaseStore(self.state_dir / "leases.db")
        for fn in self.config.functions.values():
            pool = FunctionPool(fn.config, clock=self.clock)
            self.pools[fn.config.name] = pool
            for mc in fn.mappings:
                mapping = self._mapping(mc, pool)
                self.mappings.append(mapping)
                if mc.enabled:
                    mapping.start()
        self.running = True

    def _mapping(self, mc: MappingConfig, pool: FunctionPool) -> Mapping:
        assert self.store is not None
        destination: Destination | None = None
        if mc.on_failure is not None:
            if mc.on_failure.kind == "stream":
                destination = StreamDestination(self.engine, mc.on_failure.target)
            else:
                destination = FileDestination(Path(mc.on_failure.target))
        return Mapping(
            mc,
            function=pool,
            function_arn=pool.config.arn,
            role_arn=pool.config.role_arn,
            source=EngineSource(self.engine, mc.stream_name),
            store=self.store,
            destination=destination,
            matcher=RecordFilter(list(mc.filter_patterns)) if mc.filter_patterns else None,
            tuning=self.tuning,
            clock=self.clock,
            region=self.engine.settings.region,
        )

    async def stop(self) -> None:
        self.running = False
        await stop_all(self.mappings, self.pools)
        if self.store is not None:
            self.store.close()
            self.store = None
