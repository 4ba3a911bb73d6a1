"""Running a project's functions against any Kinesis endpoint (a `shardline serve`, or AWS itself) through boto3.

The same functions and mapping parameters as with the embedded engine; only where records come from changes.
Streams must exist on the endpoint (or be created with ``create_streams``); checkpoints stay in a local lease
store.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from ..errors import KinesisError, ResourceNotFoundException
from .checkpoints import LeaseStore
from .config import ProjectConfig
from .destinations import Destination, FileDestination, KinesisStreamDestination
from .filters import RecordFilter
from .functions import FunctionPool
from .mapping import MappingConfig, RuntimeTuning
from .source import KinesisSource
from .supervisor import Mapping, stop_all

__all__ = ["RemoteProject", "kinesis_client", "run_until_stopped"]

log = logging.getLogger("shardline.runtime")


def kinesis_client(endpoint_url: str | None, region: str) -> Any:
    """A boto3 Kinesis client; with no endpoint, boto3's usual resolution (AWS itself, AWS_ENDPOINT_URL_KINESIS)."""
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=70),
    )


class RemoteProject:
    def __init__(
        self,
        config: ProjectConfig,
        client: Any,
        state_dir: Path,
        *,
        create_streams: bool = False,
        tuning: RuntimeTuning | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.config = config
        self.client = client
        self.state_dir = state_dir
        self.create_streams = create_streams
        self.tuning = tuning or RuntimeTuning(poll_interval_s=1.0)  # AWS's cadence: remote shards are polled
        self.region = region
        self.pools: dict[str, FunctionPool] = {}
        self.mappings: list[Mapping] = []
        self.store: LeaseStore | None = None

    async def _ensure_streams(self) -> None:
        for spec in self.config.streams.values():
            try:
                await asyncio.to_thread(self.client.describe_stream_summary, StreamName=spec.name)
                continue
            except Exception as exc:
                if _code(exc) != "ResourceNotFoundException":
                    raise
            if not self.create_streams:
                raise ResourceNotFoundException(
                    f"stream {spec.name} does not exist on the endpoint (create it, or pass --create-streams)"
                )
            kwargs: dict[str, Any] = {"StreamName": spec.name}
            if spec.mode == "ON_DEMAND":
                kwargs["StreamModeDetails"] = {"StreamMode": "ON_DEMAND"}
            else:
                kwargs["ShardCount"] = spec.shards
            try:
                await asyncio.to_thread(self.client.create_stream, **kwargs)
            except Exception as exc:
                if _code(exc) != "ResourceInUseException":
                    raise
            await asyncio.to_thread(self.client.get_waiter("stream_exists").wait, StreamName=spec.name)
            log.info("created stream %s on the endpoint", spec.name)

    async def start(self) -> None:
        """Start everything; if a part fails, what was already started is stopped before the error is raised."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        await self._ensure_streams()
        self.store = LeaseStore(self.state_dir / "leases.db")
        for fn in self.config.functions.values():
            pool = FunctionPool(fn.config)
            self.pools[fn.config.name] = pool
            for mc in fn.mappings:
                mapping = await self._mapping(mc, pool)
                self.mappings.append(mapping)
                if mc.enabled:
                    mapping.start()

    async def _mapping(self, mc: MappingConfig, pool: FunctionPool) -> Mapping:
        assert self.store is not None
        destination: Destination | None = None
        if mc.on_failure is not None:
            if mc.on_failure.kind == "stream":
                destination = KinesisStreamDestination(self.client, mc.on_failure.target)
            else:
                destination = FileDestination(Path(mc.on_failure.target))
        source = await asyncio.to_thread(KinesisSource, self.client, mc.stream_name)
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
            region=self.region,
        )

    async def stop(self) -> None:
        await stop_all(self.mappings, self.pools)
        if self.store is not None:
            self.store.close()
            self.store = None


def _code(exc: BaseException) -> str:
    if isinstance(exc, KinesisError):
        return exc.type_name
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


async def run_until_stopped(project: RemoteProject, *, on_ready: Callable[[], None] | None = None) -> None:
    """Start the project, then run until SIGINT or SIGTERM; in-flight batches finish and checkpoint."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await project.start()
    try:
        if on_ready is not None:
            on_ready()
        await stop.wait()
    finally:
        await project.stop()
