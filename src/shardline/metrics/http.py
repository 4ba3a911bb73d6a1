"""The monitoring HTTP endpoints, an ASGI app served on the Kinesis port (KinesisApp passes it GET/HEAD requests).

```
GET /metrics                       Prometheus text format, every metric with its CloudWatch equivalent in # HELP
GET /api/overview                  {"now_ms", "streams": [...], "functions": [...], "mappings": [...], "alarms": [...],
                                    "metrics": {...}}: the current state, with totals and last-minute rates
GET /api/query?name=&label.<k>=<v>&start=&end=&period=&stat=
                                   {"name", "stat", "period", "start", "end", "series": [{"labels": {...},
                                    "points": [[ms, value or null], ...]}]}; start/end are epoch ms, or negative
                                    seconds relative to now (start=-3600); end defaults to now, start to -3600;
                                    period (s) defaults to about 360 points; stat defaults to Rate for counters and
                                    Average otherwise (Average, Maximum, Minimum, Sum, SampleCount, Rate, pNN)
GET /api/catalog                   every metric: name, kind, unit, help, CloudWatch equivalent, labels
GET /api/streams/<name>/shards     {"stream", "shards": [...]}: the shard map with lineage, hash ranges, counters
                                    and each mapping's checkpoint
GET /api/failures?limit=           {"failures": [{"mapping", "function", "stream", "record": <on-failure message>}],
                                    "function_errors": [{"timestamp", "function", "requestId", "errorType",
                                    "errorMessage"}]}: discarded batches and failed invocations (Lambda's error
                                    types: Runtime.ExitError, Sandbox.Timedout, ...), each newest first (limit
                                    1..500, default 50)
GET /api/alarms?name=&limit=       {"alarms": [states], "history": [transitions, newest first]}
GET /dashboard, /dashboard/<file>  the dashboard page and its assets, from the package
```
Errors are JSON: ``{"error": "..."}`` with 400 (bad parameter), 401 (monitoring is protected, see metrics.access;
the dashboard's files are served to everyone), 404, or 503 with Retry-After (too many queries waiting).

A query reads every point of every matching series, which for hundreds of series is seconds of work: it runs on a
worker thread, at most ``max_queries`` at once with ``max_waiting`` more queued, over a copy of the slots it reads
taken on the event loop (SeriesStore.prepare), and an answer holds at most MAX_QUERY_SERIES series and
MAX_QUERY_VALUES values. The other endpoints answer on the loop from the metrics snapshot and the engine's read view
(metrics.overview builds their JSON).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from . import overview
from .access import OPEN, MonitoringAccess
from .overview import MonitoringSource, NoSuchStream
from .prometheus import CONTENT_TYPE, render
from .series import STATS, PreparedQuery, is_counter
from .statistic import percentile

__all__ = ["MetricsApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
MAX_QUERY_SERIES = 500
MAX_QUERY_VALUES = 100_000  # series × points: about 2.5 MB of JSON; the dashboard asks for 180 points a series
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_NICE_PERIODS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


class BadRequest(Exception):
    pass


class NotFound(Exception):
    pass


class Busy(Exception):
    pass


Response = tuple[int, str, bytes]


@dataclass(frozen=True, slots=True)
class _Query:
    """An /api/query request, checked."""

    name: str
    labels: dict[str, str]
    stat: str
    period: int  # seconds
    start: int  # epoch ms
    end: int


class MetricsApp:
    """``access`` says who may read (metrics.access); ``max_queries`` queries run at once on worker threads and
    ``max_waiting`` more wait their turn, further ones are answered 503. One at a time by default: the GIL lets
    only one compute anyway, and every further thread that wants it delays the event loop's turns (measured with
    benchmarks/monitoring_load.py: put p99 23 ms with one running, 100 ms with two). A dashboard refresh sends 12
    queries at once: 32 waiting let a few dashboards and `shardline top` refresh together."""

    def __init__(
        self, monitor: MonitoringSource, access: MonitoringAccess = OPEN, *, max_queries: int = 1, max_waiting: int = 32
    ) -> None:
        self.monitor = monitor
        self.access = access
        self.dashboard_dir = DASHBOARD_DIR
        self.max_queries = max_queries
        self.max_waiting = max_waiting
        self._running = asyncio.Semaphore(max_queries)
        self._admitted = 0  # queries running or waiting; only the event loop changes it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope.get("path", "/")
        params = urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        head = scope.get("method") == "HEAD"
        extra: list[tuple[bytes, bytes]] = []
        try:
            if scope.get("method") not in ("GET", "HEAD"):
                raise NotFound(f"{scope.get('method')} {path}: only GET and HEAD are served here")
            if path == "/dashboard" or path.startswith("/dashboard/"):
                status, ctype, body = self._asset(path.removeprefix("/dashboard").lstrip("/") or "index.html")
            elif (refusal := self.access.refusal(_header(scope, b"authorization"))) is not None:
                status, ctype, body = 401, "application/json", orjson.dumps({"error": refusal})
                extra.append((b"www-authenticate", b'Bearer realm="shardline monitoring"'))
            elif path == "/api/query":
                status, ctype, body = await self.query(params)
            else:
                status, ctype, body = self.route(path, params)
        except BadRequest as exc:
            status, ctype, body = 400, "application/json", orjson.dumps({"error": str(exc)})
        except NotFound as exc:
            status, ctype, body = 404, "application/json", orjson.dumps({"error": str(exc)})
        except Busy as exc:
            status, ctype, body = 503, "application/json", orjson.dumps({"error": str(exc)})
            extra.append((b"retry-after", b"1"))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", ctype.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-cache"),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if head else body})

    def route(self, path: str, params: list[tuple[str, str]]) -> Response:
        m = self.monitor
        if path == "/metrics":
            return 200, CONTENT_TYPE, render(m.snapshot())
        if path == "/api/overview":
            return _json(overview.overview(m))
        if path == "/api/catalog":
            return _json(self.catalog())
        if path == "/api/failures":
            return _json(overview.failures(m.project, _int(params, "limit", 50, 1, 500)))
        if path == "/api/alarms":
            return _json(overview.alarms(m.alarms, _get(params, "name"), _int(params, "limit", 100, 1, 1000)))
        if path.startswith("/api/streams/") and path.endswith("/shards"):
            name = urllib.parse.unquote(path.removeprefix("/api/streams/").removesuffix("/shards"))
            try:
                return _json(overview.shard_map(m, name))
            except NoSuchStream as exc:
                raise NotFound(str(exc)) from None
        raise NotFound(
            f"{path} is not served here; try /metrics, /dashboard, /api/overview, /api/query, /api/catalog, "
            "/api/streams/<name>/shards, /api/failures, /api/alarms"
        )

    # ----------------------------------------------------------------- dashboard files
    def _asset(self, rel: str) -> Response:
        """A file of the (flat) dashboard directory, looked up by name among the files listed there: no path built
        from the request ever reaches the file system."""
        try:
            files = {p.name: p for p in self.dashboard_dir.iterdir() if not p.name.startswith(".") and p.is_file()}
        except OSError:
            files = {}
        if "index.html" not in files:
            raise NotFound("the dashboard is not installed (no index.html in shardline/metrics/dashboard)")
        target = files.get(rel)
        if target is None:
            raise NotFound(f"/dashboard/{rel}: no such file")
        return 200, _TYPES.get(target.suffix, "application/octet-stream"), target.read_bytes()

    # ----------------------------------------------------------------- /api/query
    async def query(self, params: list[tuple[str, str]]) -> Response:
        request = self._query_request(params)
        if self._admitted >= self.max_queries + self.max_waiting:
            raise Busy(
                f"{self.max_queries} queries are running and {self.max_waiting} waiting, the most this server "
                "takes at once; retry in a second"
            )
        self._admitted += 1
        try:
            async with self._running:
                # The copy is taken on the loop, once the query's turn has come: only running queries hold one.
                plan = self._prepare(request)
                return await asyncio.to_thread(_answer, request, plan)
        finally:
            self._admitted -= 1

    def _query_request(self, params: list[tuple[str, str]]) -> _Query:
        name = _get(params, "name")
        if not name:
            raise BadRequest("name is required (a metric name, see /api/catalog)")
        labels = {k.removeprefix("label."): v for k, v in params if k.startswith("label.")}
        now = self.monitor.clock.now_ms()
        end = _time(params, "end", now, now)
        start = _time(params, "start", now - 3600_000, now)
        if start >= end:
            raise BadRequest("start must be before end")
        period = _int(params, "period", 0, 1, 86400 * 7)
        if not period:
            want = (end - start) / 1000 / 360
            period = next((p for p in _NICE_PERIODS if p >= want), _NICE_PERIODS[-1])
        known = self.monitor.catalog().get(name)
        counter = is_counter(name) or (known is not None and known.kind == "counter")
        stat = _get(params, "stat") or ("Rate" if counter else "Average")
        if stat not in STATS and percentile(stat) is None:
            raise BadRequest(f"stat must be one of {', '.join(STATS)} or a percentile such as p99, not {stat!r}")
        return _Query(name, labels, stat, period, start, end)

    def _prepare(self, q: _Query) -> PreparedQuery:
        try:
            return self.monitor.store.prepare(
                q.name,
                q.labels,
                start_ms=q.start,
                end_ms=q.end,
                period_s=q.period,
                stat=q.stat,
                max_series=MAX_QUERY_SERIES,
                max_values=MAX_QUERY_VALUES,
            )
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    def catalog(self) -> dict[str, Any]:
        out = [dataclasses.asdict(m) for m in self.monitor.catalog().values()]
        custom = [
            {"name": fam, "kind": "summary", "unit": self.monitor.emf.units.get(fam, "None"), "labels": None}
            for fam, _ in self.monitor.emf.families()
        ]
        return {"metrics": out, "custom": custom, "stored": self.monitor.store.names()}


def _json(data: Any) -> Response:
    return 200, "application/json", orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)


def _answer(q: _Query, plan: PreparedQuery) -> Response:
    """The /api/query answer, on a worker thread: reads only the plan's own copy."""
    series = [{"labels": lb, "points": pts} for lb, pts in plan.run()]  # orjson writes tuples as arrays
    return _json({"name": q.name, "stat": q.stat, "period": q.period, "start": q.start, "end": q.end, "series": series})


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return bytes(v).decode("latin-1")
    return None


def _get(params: list[tuple[str, str]], key: str) -> str | None:
    for k, v in params:
        if k == key:
            return v
    return None


def _int(params: list[tuple[str, str]], key: str, default: int, lo: int, hi: int) -> int:
    raw = _get(params, key)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{key} must be an integer, not {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{key} must be from {lo} to {hi}, not {value}")
    return value


def _time(params: list[tuple[str, str]], key: str, default: int, now: int) -> int:
    """Epoch milliseconds, or a negative number of seconds before now."""
    raw = _get(params, key)
    if not raw:
        return default
    ms = _epoch_ms(raw, now)
    if not 0 <= ms <= MAX_TIME_MS:  # also false for nan and the infinities (1e400 reads as inf)
        raise BadRequest(
            f"{key} must be epoch milliseconds up to {MAX_TIME_MS} or negative seconds (-3600) after 1970, not {raw!r}"
        )
    return round(ms)


def _epoch_ms(raw: str, now: int) -> float:
    try:
        value = float(raw)
    except ValueError:
        return math.nan
    return now + value * 1000 if value <= 0 else value
