"""A running project: the streams, functions and mappings of one ``shardline.yml``.

One composition for every place records can come from. A ``Wiring`` says what differs: how the project's streams
are made ready, where a mapping reads (a source factory) and where an on-failure stream destination writes (a
destination factory). ``EngineWiring`` is the embedded engine (``Project(config, engine)``); remote.py's
``KinesisWiring`` is any Kinesis endpoint. Starting, the mappings and stopping are the same for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Protocol

from ..clock import Clock, SystemClock
from ..engine import Engine
from ..errors import ResourceInUseException
from .checkpoints import LeaseStore as SqliteStore
from .config import ConfigError, ProjectConfig
from .destinations import Destination, FileDestination, StreamDestination, local_stream_for
from .fanout import EngineSubscriber, FanoutSource, Subscriber
from .filters import RecordFilter
from .functions import FunctionPool
from .leases import LeaseStore, open_lease_store
from .leases.coordinator import LeaseTiming
from .mapping import MappingConfig, RuntimeTuning
from .source import EngineSource, ShardSource
from .supervisor import Mapping, stop_all

__all__ = ["EngineWiring", "Project", "Wiring"]

log = logging.getLogger("shardline.runtime")


class Wiring(Protocol):
    """Where a project's records come from and where its on-failure stream destinations write."""

    region: str

    async def prepare(self, config: ProjectConfig) -> None:
        """Make the project's streams ready (create the missing ones, or check that they exist)."""
        ...

    async def source(self, stream_name: str) -> ShardSource:
        """The source that polls ``stream_name``."""
        ...

    def subscriber(self, stream_arn: str, consumer: str) -> Subscriber:
        """Subscriptions through the enhanced fan-out consumer ``consumer`` of the stream (registered by
        ``prepare``)."""
        ...

    def stream_destination(self, stream_name: str) -> Destination:
        """An on-failure destination that puts its records into ``stream_name``."""
        ...

    def notification_destination(self, kind: str, arn: str) -> Destination:
        """An on-failure destination for an SQS queue or SNS topic ARN (``kind`` ``sqs`` or ``sns``)."""
        ...


class EngineWiring:
    """The embedded engine: missing streams are created; sources and destinations call it in-process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.region = engine.settings.region

    async def prepare(self, config: ProjectConfig) -> None:
        for spec in config.streams.values():
            try:
                await self.engine.create_stream(spec.name, spec.shards, stream_mode=spec.mode, active=True)
                if spec.retention_hours != 24:
                    await self.engine.increase_stream_retention_period(spec.retention_hours, stream_name=spec.name)
                log.info("created stream %s", spec.name)
            except ResourceInUseException:
                pass  # exists from an earlier run: its data and shards are kept as they are
        # SQS queues and SNS topics named as on-failure destinations are kept in a local stream of their name
        for _fn, mc in config.mappings:
            if mc.on_failure is not None and mc.on_failure.kind in ("sqs", "sns"):
                with contextlib.suppress(ResourceInUseException):
                    await self.engine.create_stream(local_stream_for(mc.on_failure.target), 1, active=True)
        present = set(self.engine.view.stream_names())
        for _fn, mc in config.mappings:
            if mc.uuid in config.undeclared and mc.stream_name not in present:
                raise ConfigError(config.undeclared[mc.uuid])
        for consumer in config.consumers:
            summary = await self.engine.describe_stream_summary(consumer.stream)
            arn = summary.stream_arn
            with contextlib.suppress(ResourceInUseException):  # registered by an earlier run
                await self.engine.register_stream_consumer(arn, consumer.name)

    async def source(self, stream_name: str) -> ShardSource:
        return EngineSource(self.engine, stream_name)

    def subscriber(self, stream_arn: str, consumer: str) -> Subscriber:
        return EngineSubscriber(self.engine, stream_arn, consumer)

    def stream_destination(self, stream_name: str) -> Destination:
        return StreamDestination(self.engine, stream_name)

    def notification_destination(self, kind: str, arn: str) -> Destination:
        return StreamDestination(self.engine, local_stream_for(arn))


class Project:
    """Makes the streams ready, starts a warm pool per function and a Mapping per stream event.

    ``over`` is the embedded engine, or any ``Wiring``; without ``state_dir`` the lease store lives in the engine's
    data directory (a Wiring other than the engine's needs one).

    Without ``leasing`` this process holds every lease of its SQLite file. With it, shards are shared with every
    other worker on the same lease store (``leases``: ``postgresql://...`` or ``sqlite:PATH``, default the SQLite
    file in ``state_dir``) under the given timings; ``worker_id`` names this worker (default host:pid:random)."""

    def __init__(
        self,
        config: ProjectConfig,
        over: Engine | Wiring,
        *,
        tuning: RuntimeTuning | None = None,
        clock: Clock | None = None,
        state_dir: Path | None = None,
        leasing: LeaseTiming | None = None,
        leases: str | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.config = config
        self.leasing = leasing
        self.leases_url = leases
        self.worker_id = worker_id
        self.wiring: Wiring = EngineWiring(over) if isinstance(over, Engine) else over
        if state_dir is None:
            if not isinstance(over, Engine):
                raise ValueError("a project not over the embedded engine needs a state_dir for its checkpoints")
            state_dir = Path(over.settings.data_dir) / "runtime"
        self.state_dir = state_dir
        self.tuning = tuning or RuntimeTuning()
        self.clock = clock or SystemClock()
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
        await self.wiring.prepare(self.config)
        if self.leasing is None:
            self.store = SqliteStore(self.state_dir / "leases.db", clock=self.clock)
        else:
            url = self.leases_url or f"sqlite:{self.state_dir / 'leases.db'}"
            self.store = await asyncio.to_thread(
                open_lease_store, url, owner=self.worker_id, clock=self.clock, timeout_s=self.leasing.renew
            )
        for fn in self.config.functions.values():
            pool = FunctionPool(fn.config, clock=self.clock)
            self.pools[fn.config.name] = pool
            for mc in fn.mappings:
                mapping = await self._mapping(mc, pool)
                self.mappings.append(mapping)
                if mc.enabled:
                    mapping.start()
                else:
                    await mapping.read_lease_view()
        self.running = True

    async def _mapping(self, mc: MappingConfig, pool: FunctionPool) -> Mapping:
        assert self.store is not None
        destination: Destination | None = None
        if mc.on_failure is not None:
            if mc.on_failure.kind == "stream":
                destination = self.wiring.stream_destination(mc.on_failure.target)
            elif mc.on_failure.kind in ("sqs", "sns"):
                destination = self.wiring.notification_destination(mc.on_failure.kind, mc.on_failure.target)
            else:
                destination = FileDestination(Path(mc.on_failure.target))
        source = await self.wiring.source(mc.stream_name)
        consumer = self.config.mapping_consumers.get(mc.uuid)
        if consumer is not None:
            source = FanoutSource(source, self.wiring.subscriber(source.stream_arn, consumer.name))
        return Mapping(
            mc,
            function=pool,
            function_arn=pool.config.arn,
            role_arn=pool.config.role_arn,
            source=source,
            store=self.store,
            destination=destination,
            matcher=RecordFilter(list(mc.filter_patterns)) if mc.filter_patterns else None,
            tuning=self.tuning,
            clock=self.clock,
            region=self.wiring.region,
            leasing=self.leasing,
        )

    async def stop(self) -> None:
        self.running = False
        await stop_all(self.mappings, self.pools)
        if self.store is not None:
            self.store.close()
            self.store = None
