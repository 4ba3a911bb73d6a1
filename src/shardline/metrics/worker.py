"""The monitoring endpoint of one ``shardline run`` worker (``--metrics-port``): /metrics with the lease families
(metrics.leases) and /api/overview with every mapping's lease table, so Prometheus and ``shardline top --endpoint``
can watch each worker of a many-machine deployment. It has no engine, so it shows no stream metrics: those come from
the Kinesis endpoint.

A small HTTP/1.1 server (one GET per connection, bounded header size, time and connection count) with the same
access rules as ``serve`` (metrics.access).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from ..runtime.leases import Lease
from ..runtime.supervisor import Mapping
from .access import MonitoringAccess
from .collect import Snapshot
from .leases import lease_families, mapping_leases
from .prometheus import CONTENT_TYPE, render

__all__ = ["WorkerMonitor", "serving", "worker_overview"]

log = logging.getLogger("shardline.metrics")

MAX_HEADER_BYTES = 16 * 1024
READ_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 16


class _Project(Protocol):
    mappings: list[Mapping]


def worker_overview(
    project: _Project, now_ms: int, rows: dict[str, list[Lease] | None] | None = None
) -> dict[str, Any]:
    """/api/overview of a worker: its mappings with their leases (the document ``shardline top`` reads). ``rows``:
    each mapping's lease table already read (None: unreadable now); without it the tables are read here."""
    mappings = []
    for mp in list(project.mappings):
        if rows is None:
            leases = mapping_leases(mp)
        else:
            got = rows.get(mp.uuid)
            leases = None if got is None else mapping_leases(mp, got)
        cfg = mp.config
        stats = mp.stats()
        mappings.append(
            {
                "uuid": mp.uuid,
                "function": cfg.function_name,
                "stream": cfg.stream_name,
                "state": stats.state,
                "last_result": stats.last_processing_result,
                "behind_latest_ms": stats.millis_behind,
                "shards_active": stats.shards_active,
                "shards_finished": stats.shards_finished,
                "totals": dict(stats.totals),
                "leases": leases,
            }
        )
    return {"now_ms": now_ms, "streams": [], "functions": [], "mappings": mappings, "alarms": []}


def _read_leases(mp: Mapping) -> list[Lease] | None:
    if mp.store is None:
        return None
    try:
        return mp.store.leases(mp.uuid)
    except Exception as exc:  # the lease store unreachable: the rest still shows
        log.debug("metrics: cannot read the leases of %s: %s", mp.uuid, exc)
        return None


@contextlib.asynccontextmanager
async def serving(monitor: WorkerMonitor | None) -> AsyncIterator[None]:
    """Serve ``monitor`` (when there is one) for the duration of the block."""
    if monitor is None:
        yield
        return
    await monitor.start()
    try:
        yield
    finally:
        await monitor.stop()


class WorkerMonitor:
    """Serves /metrics and /api/overview of ``project`` on ``host``:``port`` (0 picks a free port)."""

    def __init__(self, project: _Project, access: MonitoringAccess, host: str = "127.0.0.1", port: int = 0) -> None:
        self.project = project
        self.access = access
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_HEADER_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots.locked():
            await self._send(writer, 503, b"too many monitoring connections\n", "text/plain")
            return
        async with self._slots:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                writer.close()
                return
            status, body, ctype = await self._answer(head)
            await self._send(writer, status, body, ctype)

    async def _answer(self, head: bytes) -> tuple[int, bytes, str]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, b"bad request\n", "text/plain"
        method, target = parts[0], parts[1]
        if method != "GET":
            return 405, b"only GET\n", "text/plain"
        authorization = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "authorization":
                authorization = value.strip()
        refusal = self.access.refusal(authorization)
        if refusal is not None:
            return (403 if self.access.closed else 401), orjson.dumps({"message": refusal}), "application/json"
        path = target.split("?", 1)[0]
        if path == "/metrics":
            snap = Snapshot(int(time.time() * 1000), lease_families(self.project.mappings))
            return 200, render(snap), CONTENT_TYPE
        if path == "/api/overview":
            rows: dict[str, list[Lease] | None] = {}
            for mp in list(self.project.mappings):
                rows[mp.uuid] = await asyncio.to_thread(_read_leases, mp)  # off the event loop
            doc = worker_overview(self.project, int(time.time() * 1000), rows)
            return 200, orjson.dumps(doc), "application/json"
        return 404, b"not found: /metrics and /api/overview are served here\n", "text/plain"

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str) -> None:
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}.get(
            status, "Error"
        )
        extra = 'WWW-Authenticate: Bearer realm="shardline"\r\n' if status == 401 else ""
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
