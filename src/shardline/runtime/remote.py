"""Running a project's functions against any Kinesis endpoint (a `shardline serve`, or AWS itself) through boto3.

The same functions and mapping parameters as with the embedded engine; only where records come from changes.
Streams must exist on the endpoint (or be created with ``create_streams``); checkpoints stay in a local lease
store. ``KinesisWiring`` is what differs from the embedded engine; project.py's ``Project`` does the rest.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from ..errors import KinesisError, ResourceNotFoundException
from .config import ConfigError, ProjectConfig
from .destinations import Destination, KinesisStreamDestination, SnsDestination, SqsDestination
from .fanout import KinesisSubscriber, Subscriber
from .leases.coordinator import LeaseTiming
from .mapping import RuntimeTuning
from .project import Project
from .source import KinesisSource, ShardSource

__all__ = ["KinesisWiring", "RemoteProject", "kinesis_client"]

log = logging.getLogger("shardline.runtime")


def kinesis_client(endpoint_url: str | None, region: str) -> Any:
    """A boto3 Kinesis client; with no endpoint, boto3's usual resolution (AWS itself, AWS_ENDPOINT_URL_KINESIS)."""
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=70),
    )


class KinesisWiring:
    """A Kinesis endpoint through a boto3 client: streams must exist (or are created with ``create_streams``)."""

    def __init__(self, client: Any, *, create_streams: bool = False, region: str = "us-east-1") -> None:
        self.client = client
        self.create_streams = create_streams
        self.region = region

    async def prepare(self, config: ProjectConfig) -> None:
        for spec in config.streams.values():
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
            # Polled every second (the waiter's default is every 10 s): a new stream is ACTIVE in half a second on a
            # shardline serve, in seconds on AWS; ten minutes at most.
            waiter = self.client.get_waiter("stream_exists")
            await asyncio.to_thread(waiter.wait, StreamName=spec.name, WaiterConfig={"Delay": 1, "MaxAttempts": 600})
            log.info("created stream %s on the endpoint", spec.name)
        for _fn, mc in config.mappings:
            if mc.uuid not in config.undeclared:
                continue
            try:
                await asyncio.to_thread(self.client.describe_stream_summary, StreamName=mc.stream_name)
            except Exception as exc:
                if _code(exc) != "ResourceNotFoundException":
                    raise
                raise ConfigError(config.undeclared[mc.uuid]) from None
        for consumer in config.consumers:
            summary = await asyncio.to_thread(self.client.describe_stream_summary, StreamName=consumer.stream)
            arn = summary["StreamDescriptionSummary"]["StreamARN"]
            try:
                await asyncio.to_thread(self.client.register_stream_consumer, StreamARN=arn, ConsumerName=consumer.name)
            except Exception as exc:
                if _code(exc) != "ResourceInUseException":
                    raise

    async def source(self, stream_name: str) -> ShardSource:
        return await asyncio.to_thread(KinesisSource, self.client, stream_name)

    def subscriber(self, stream_arn: str, consumer: str) -> Subscriber:
        return KinesisSubscriber(self.client, stream_arn, consumer)

    def stream_destination(self, stream_name: str) -> Destination:
        return KinesisStreamDestination(self.client, stream_name)

    def notification_destination(self, kind: str, arn: str) -> Destination:
        """The real queue or topic, through boto3's usual endpoint resolution (AWS, AWS_ENDPOINT_URL_SQS/_SNS) in the
        ARN's region."""
        client = boto3.client(kind, region_name=arn.split(":")[3], config=Config(retries={"mode": "standard"}))
        return SqsDestination(client, arn) if kind == "sqs" else SnsDestination(client, arn)


class RemoteProject(Project):
    """A Project over a Kinesis endpoint (a named constructor: the composition is Project's)."""

    def __init__(
        self,
        config: ProjectConfig,
        client: Any,
        state_dir: Path,
        *,
        create_streams: bool = False,
        tuning: RuntimeTuning | None = None,
        region: str = "us-east-1",
        leasing: LeaseTiming | None = None,
        leases: str | None = None,
        worker_id: str | None = None,
    ) -> None:
        wiring = KinesisWiring(client, create_streams=create_streams, region=region)
        # AWS's cadence: remote shards are polled.
        super().__init__(
            config,
            wiring,
            state_dir=state_dir,
            # Shared shards read ahead less: what a shard has fetched is processed before it is handed over.
            tuning=tuning or RuntimeTuning(poll_interval_s=1.0, read_limit=10_000 if leasing is None else 1_000),
            leasing=leasing,
            leases=leases,
            worker_id=worker_id,
        )
        self.client = client


def _code(exc: BaseException) -> str:
    if isinstance(exc, KinesisError):
        return exc.type_name
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
