"""Monitoring behind a bearer token (or closed), /api/query on worker threads with a bound on how many run and wait,
and requests that used to answer 500: non-finite times, NUL bytes in dashboard paths."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from shardline.api import KinesisApp
from shardline.metrics import http as metrics_http
from shardline.metrics.access import CLOSED, OPEN, TOKEN_ENV, MonitoringAccess, monitoring_access
from shardline.metrics.series import PreparedQuery
from shardline.models import PutRecordsRequestEntry

from .test_http import Rig, call, get_json

TOKEN = "s3cr3t-t0ken_~+/=="
DATA_PATHS = ("/metrics", "/api/overview", "/api/query?name=shardline_stream_shards", "/api/catalog", "/api/alarms")
WAIT_S = 20.0  # bound on polls that succeed at once


async def call_with(app: Any, target: str, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
    """GET ``target`` (path and query) with an Authorization header."""
    path, _, query = target.partition("?")
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    scope = {"type": "http", "method": "GET", "path": path, "query_string": query.encode(), "headers": headers}
    await app(scope, receive, send)
    return sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0]["headers"]}, sent[1]["body"]


# ------------------------------------------------------------------------------------------------ access
async def test_a_token_protects_metrics_and_the_api_but_not_the_page_or_health(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        rig.monitor.app.access = MonitoringAccess(token=TOKEN)
        app = KinesisApp(rig.engine, extra_http=rig.monitor.app)
        app.ready = True  # as after the lifespan's startup, for /health
        for target in (*DATA_PATHS, "/api/streams/s/shards", "/api/nope"):
            for auth in (None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", ""):
                status, headers, body = await call_with(app, target, auth)
                assert status == 401, (target, auth)
                assert headers["www-authenticate"] == 'Bearer realm="shardline monitoring"'
                assert "token" in orjson.loads(body)["error"]
            for auth in (f"Bearer {TOKEN}", f"bearer  {TOKEN}"):
                status, _, body = await call_with(app, target, auth)
                assert status == (404 if target == "/api/nope" else 200), (target, auth, body)
        # the page and its files are the same for everyone and hold no data; /health is a liveness probe
        for target in ("/dashboard", "/dashboard/app.js", "/health"):
            assert (await call_with(app, target, None))[0] == 200, target


async def test_closed_monitoring_refuses_everyone_and_says_how_to_open_it(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        rig.monitor.app.access = CLOSED
        for target in DATA_PATHS:
            for auth in (None, f"Bearer {TOKEN}"):
                status, headers, body = await call_with(rig.monitor.app, target, auth)
                assert status == 401 and headers["www-authenticate"].startswith("Bearer")
                error = orjson.loads(body)["error"]
                assert "--monitoring-token" in error and "--monitoring open" in error
        assert (await call_with(rig.monitor.app, "/dashboard", None))[0] == 200


def test_monitoring_access_from_the_command_line(tmp_path: Path) -> None:
    no_env: dict[str, str] = {}
    assert monitoring_access(environ=no_env) == OPEN
    assert monitoring_access(api_protected=True, environ=no_env) == CLOSED
    assert monitoring_access(api_protected=True, mode="open", environ=no_env) == OPEN
    assert monitoring_access(token=TOKEN, api_protected=True, environ=no_env) == MonitoringAccess(token=TOKEN)
    assert monitoring_access(token=TOKEN, environ={TOKEN_ENV: "other"}).token == TOKEN
    assert monitoring_access(api_protected=True, environ={TOKEN_ENV: TOKEN}).token == TOKEN
    f = tmp_path / "token"
    f.write_text(f"{TOKEN}\n")
    f.chmod(0o600)
    assert monitoring_access(token_file=f, environ={TOKEN_ENV: "other"}).token == TOKEN
    assert TOKEN not in repr(MonitoringAccess(token=TOKEN))
    for kwargs, message in (
        ({"token": TOKEN, "token_file": f}, "not both"),
        ({"token": TOKEN, "mode": "open"}, "cannot be combined with --monitoring-token"),
        ({"token": "two words"}, "must be 1 to 4096 of the characters"),
        ({"token": ""}, "must be 1 to 4096 of the characters"),
        ({"token_file": tmp_path / "missing"}, "cannot read --monitoring-token-file"),
        ({"mode": "closed"}, "--monitoring must be auto or open"),
    ):
        with pytest.raises(ValueError, match=message):
            monitoring_access(environ=no_env, **kwargs)


# ------------------------------------------------------------------------------------------------ bad requests
@pytest.mark.parametrize("key", ["start", "end"])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "-1e400", "1e300", "-1e306", "-1e12", "Infinity"])
async def test_non_finite_or_out_of_range_times_answer_400_naming_the_parameter(
    tmp_path: Path, key: str, value: str
) -> None:
    async with Rig(tmp_path) as rig:
        err = await get_json(rig.monitor.app, "/api/query", f"name=shardline_stream_shards&{key}={value}", 400)
        assert err["error"].startswith(f"{key} must be epoch milliseconds") and repr(value) in err["error"]


async def test_bad_periods_and_huge_ranges_answer_400(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        app = rig.monitor.app
        for q, named in (
            ("period=-5", "period"),
            ("period=0", "period"),
            ("period=1e400", "period"),
            ("period=nan", "period"),
            ("start=1", "period"),  # since 1970 at the longest automatic period: too many points
            ("start=1&period=86400", "period"),
        ):
            err = await get_json(app, "/api/query", f"name=shardline_stream_shards&{q}", 400)
            assert named in err["error"], (q, err)


@pytest.mark.parametrize(
    "rel", ["\x00", "a\x00b", "app.js\x00.png", "..", "../http.py", "x" * 5000, ".", "/etc/passwd"]
)
async def test_odd_dashboard_paths_answer_404(tmp_path: Path, rel: str) -> None:
    async with Rig(tmp_path) as rig:
        err = await get_json(rig.monitor.app, f"/dashboard/{rel}", status=404)
        assert "no such file" in err["error"]


# ------------------------------------------------------------------------------------------------ off the loop
class Held:
    """PreparedQuery.run held at its start until released, recording the threads it ran on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Semaphore(0)
        self.go = threading.Event()
        self.threads: list[int] = []
        original = PreparedQuery.run

        def held(plan: PreparedQuery) -> Any:
            self.threads.append(threading.get_ident())
            self.entered.release()
            assert self.go.wait(WAIT_S), "never released"
            return original(plan)

        monkeypatch.setattr(PreparedQuery, "run", held)

    async def wait_entered(self, n: int) -> None:
        for _ in range(n):
            # Polled from the loop: a run on the loop's own thread would block here instead.
            deadline = asyncio.get_running_loop().time() + WAIT_S
            while not self.entered.acquire(blocking=False):
                assert asyncio.get_running_loop().time() < deadline, "the query did not start"
                await asyncio.sleep(0.01)


async def test_queries_run_on_worker_threads_while_the_loop_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held(monkeypatch)
    async with Rig(tmp_path) as rig:
        app = rig.monitor.app
        q = "name=shardline_stream_incoming_records_total&label.stream=s&start=-4&period=1&stat=Sum"
        task = asyncio.create_task(get_json(app, "/api/query", q))
        await held.wait_entered(1)
        # The loop goes on: puts and samples while the query is being computed, over every slot it reads.
        for _ in range(3):
            await rig.engine.put_records([PutRecordsRequestEntry(b"x", "k")] * 7, stream_name="s")
            rig.monitor.tick()
            rig.clock.advance(1)
        held.go.set()
        data = await task
        assert [v for _, v in data["series"][0]["points"]] == [10, 20, 30, 40]
        assert held.threads and threading.get_ident() not in held.threads


async def test_running_and_waiting_queries_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held = Held(monkeypatch)
    async with Rig(tmp_path) as rig:
        app = metrics_http.MetricsApp(rig.monitor, max_queries=2, max_waiting=1)
        q = "name=shardline_stream_incoming_records_total&start=-4&period=1&stat=Sum"
        tasks = [asyncio.create_task(call(app, "/api/query", q)) for _ in range(3)]
        await held.wait_entered(2)  # two run, the third waits its turn
        status, headers, body = await call(app, "/api/query", q)
        assert status == 503 and headers["retry-after"] == "1"
        assert "2 queries are running and 1 waiting" in orjson.loads(body)["error"]
        # a bad query is refused before it waits
        assert (await call(app, "/api/query", "name=x&start=nan"))[0] == 400
        held.go.set()
        assert [s for s, _, _ in await asyncio.gather(*tasks)] == [200, 200, 200]
        assert len(held.threads) == 3
        assert (await call(app, "/api/query", q))[0] == 200  # the slots are free again


async def test_answers_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_http, "MAX_QUERY_VALUES", 3599)
    async with Rig(tmp_path) as rig:
        app = rig.monitor.app
        q = "name=shardline_stream_incoming_records_total&label.stream=s&start=-3600&stat=Sum"
        err = await get_json(app, "/api/query", q + "&period=1", 400)
        assert err["error"].startswith("1 series × 3600 points = 3600 values; at most 3599 per query")
        assert len((await get_json(app, "/api/query", q + "&period=2"))["series"][0]["points"]) == 1800
        monkeypatch.setattr(metrics_http, "MAX_QUERY_SERIES", 1)
        err = await get_json(app, "/api/query", "name=shardline_stream_get_records_requests_total&period=60", 400)
        assert err["error"].startswith("2 series match; at most 1 per query")
