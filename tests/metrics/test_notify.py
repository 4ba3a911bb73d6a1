"""Delivery of alarm transitions: a real HTTP server on 127.0.0.1 receives each transition exactly once (through a
failing first attempt, a backoff by the ManualClock and a restart), the JSONL file survives a crash between its
append and the cursor, the log, the state filter, and the ``notify`` config."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shardline import ManualClock
from shardline.metrics.alarms import ALARM, INSUFFICIENT_DATA, OK, AlarmManager, AlarmRule
from shardline.metrics.notify import (
    FileNotifier,
    LogNotifier,
    Notifier,
    NotifyConfig,
    WebhookConfig,
    WebhookNotifier,
    build_notifiers,
    parse_notify,
)
from shardline.metrics.series import SeriesStore, series_key

T0 = 1_699_999_980_000
G = series_key("shardline_esm_iterator_age_seconds", {"mapping": "m1"})
RULE = AlarmRule(
    "age", "shardline_esm_iterator_age_seconds", 5, "GreaterThanThreshold", "Maximum", 10, labels={"mapping": "m1"}
)


class Hook:
    """A local webhook endpoint. Each POST gets the next status of ``script`` (200 once it is used up); bodies of
    the 2xx answers are kept."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.script = list(script or [])
        self.attempts = 0
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.attempts += 1
                status = hook.script.pop(0) if hook.script else 200
                if status == 200:
                    hook.received.append(json.loads(body))
                    hook.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alarms"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


class Rig:
    """A manager over a real store; ``alarm`` / ``ok`` produce one transition each by feeding a 10 s period."""

    def __init__(self, tmp: Path, notifiers: list[Notifier], clock: ManualClock | None = None, **kw: Any) -> None:
        self.clock = clock or ManualClock(T0)
        self.store = SeriesStore(None)
        self.path = tmp / "alarms.json"
        self.manager = AlarmManager(self.store, [RULE], notifiers, self.clock, state_path=self.path, **kw)

    def feed(self, value: float | None) -> list[str]:
        out = []
        for _ in range(10):
            self.store.record(self.clock.now_ms(), {} if value is None else {G: value})
            self.clock.advance(1)
            out += [t.new_state for t in self.manager.evaluate(self.clock.now_ms())]
        return out

    def alarm(self) -> None:
        assert self.feed(9) == [ALARM]

    def ok(self) -> None:
        assert self.feed(1) == [OK]

    def deliver(self) -> None:
        asyncio.run(self.manager.deliver())

    def restart(self, notifiers: list[Notifier]) -> None:
        self.manager = AlarmManager(self.store, [RULE], notifiers, self.clock, state_path=self.path)


def test_webhook_gets_each_transition_once_through_a_failed_attempt_and_a_restart(tmp_path: Path) -> None:
    hook = Hook(script=[500])
    try:
        rig = Rig(tmp_path, [WebhookNotifier(hook.url, retries=3, backoff_s=2)])
        rig.feed(1)  # INSUFFICIENT_DATA -> OK: not news for a notifier
        rig.alarm()
        rig.deliver()
        assert (hook.attempts, hook.received) == (1, [])
        assert rig.manager.pending() == {"webhook": 1}
        rig.deliver()  # still backing off: the ManualClock has not moved
        assert hook.attempts == 1
        rig.clock.advance(2)
        rig.deliver()
        assert hook.attempts == 2 and len(hook.received) == 1
        rig.deliver()
        rig.restart([WebhookNotifier(hook.url)])
        rig.deliver()
        assert hook.attempts == 2
        rig.ok()
        rig.deliver()
        rig.deliver()
    finally:
        hook.close()
    assert [(e["old_state"], e["new_state"]) for e in hook.received] == [(OK, ALARM), (ALARM, OK)]
    first = hook.received[0]
    assert first["alarm"] == first["AlarmName"] == "age" and first["NewStateValue"] == ALARM
    assert first["reason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [9]")
    assert first["Trigger"]["ComparisonOperator"] == "GreaterThanThreshold"
    assert [h["Idempotency-Key"] for h in hook.headers] == [e["id"] for e in hook.received] == ["age#2", "age#3"]
    assert hook.headers[0]["Content-Type"] == "application/json"


def test_a_transition_recorded_before_a_crash_is_delivered_after_the_restart(tmp_path: Path, hook: Hook) -> None:
    rig = Rig(tmp_path, [WebhookNotifier(hook.url)])
    rig.alarm()  # persisted with the state; the process dies before delivering it
    rig.restart([WebhookNotifier(hook.url)])
    rig.deliver()
    rig.deliver()
    assert [e["new_state"] for e in hook.received] == [ALARM]


def test_webhook_gives_up_after_its_retries_and_carries_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    hook = Hook(script=[503, 500])
    try:
        rig = Rig(tmp_path, [WebhookNotifier(hook.url, retries=1, backoff_s=1)])
        rig.alarm()
        with caplog.at_level(logging.WARNING, logger="shardline.alarms"):
            rig.deliver()
            rig.clock.advance(1)
            rig.deliver()
        assert hook.attempts == 2 and hook.received == []
        assert "gave up sending age#1 to webhook after 2 attempts" in caplog.text
        assert rig.manager.undeliverable == 1 and rig.manager.pending() == {"webhook": 0}
        rig.ok()
        rig.deliver()
    finally:
        hook.close()
    assert [e["new_state"] for e in hook.received] == [OK]


def test_an_unreachable_webhook_backs_off_exponentially(tmp_path: Path, hook: Hook) -> None:
    url = hook.url
    hook.close()
    sent: list[int] = []

    class Counting(WebhookNotifier):
        async def send(self, event: dict[str, Any]) -> None:
            sent.append(rig.clock.now_ms())
            await super().send(event)

    rig = Rig(tmp_path, [Counting(url, retries=3, backoff_s=1, timeout_s=2)])
    rig.alarm()
    start = rig.clock.now_ms()
    for _ in range(8):
        rig.deliver()
        rig.clock.advance(1)
    assert [(t - start) // 1000 for t in sent] == [0, 1, 3, 7]  # 1 s, 2 s, 4 s apart; then it gave up
    assert rig.manager.undeliverable == 1


def test_jsonl_file_is_exact_after_a_crash_between_append_and_cursor(tmp_path: Path) -> None:
    out = tmp_path / "alarms.jsonl"
    rig = Rig(tmp_path, [FileNotifier(out)])
    rig.alarm()
    before = rig.path.read_bytes()  # the state as it was on disk before the delivery moved the cursor
    rig.deliver()
    rig.path.write_bytes(before)  # the crash: the line is in the file, the cursor never reached the disk
    with out.open("a") as f:
        f.write('{"seq": 99, "alarm": "torn')  # and a line torn by the crash is ignored
    rig.restart([FileNotifier(out)])
    rig.deliver()
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["new_state"] == ALARM
    rig.ok()
    rig.deliver()
    events = [json.loads(line) for line in out.read_text().splitlines() if line.endswith("}")]
    assert [e["new_state"] for e in events] == [ALARM, OK]


def test_log_notifier_warns_on_alarm_and_informs_on_recovery(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(tmp_path, [LogNotifier()])
    with caplog.at_level(logging.INFO, logger="shardline.alarms"):
        rig.alarm()
        rig.deliver()
        rig.ok()
        rig.deliver()
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("alarm age:")]
    assert [lvl for lvl, _ in records] == [logging.WARNING, logging.INFO]
    assert records[0][1].startswith("alarm age: INSUFFICIENT_DATA -> ALARM: Threshold Crossed")
    assert records[1][1].startswith("alarm age: ALARM -> OK")


class Recorder(Notifier):
    name = "recorder"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.events: list[dict[str, Any]] = []
        self.gate: asyncio.Event | None = None
        self.failing = False

    async def send(self, event: dict[str, Any]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise OSError("down")
        self.events.append(event)


def test_default_filter_is_into_or_out_of_alarm_and_states_narrow_it(tmp_path: Path) -> None:
    default, only_ok = Recorder(), Recorder(states=frozenset({OK, INSUFFICIENT_DATA}))
    only_ok.name = "only-ok"
    rig = Rig(tmp_path, [default, only_ok])
    rig.feed(1)
    rig.alarm()
    rig.ok()
    assert rig.feed(None) == []
    rig.feed(None)
    assert rig.feed(None) == [INSUFFICIENT_DATA]  # 3 empty periods: the range is empty
    rig.alarm()
    rig.deliver()
    assert [(e["old_state"], e["new_state"]) for e in default.events] == [
        (OK, ALARM),
        (ALARM, OK),
        (INSUFFICIENT_DATA, ALARM),
    ]
    assert [e["new_state"] for e in only_ok.events] == [OK, OK, INSUFFICIENT_DATA]


def test_overlapping_deliver_calls_never_send_twice(tmp_path: Path) -> None:
    slow = Recorder()
    rig = Rig(tmp_path, [slow])
    rig.alarm()

    async def main() -> None:
        slow.gate = asyncio.Event()
        first = asyncio.create_task(rig.manager.deliver())
        await asyncio.sleep(0)
        # the notifier is busy with the first call: nothing to do here (bounded, so a regression fails, not hangs)
        await asyncio.wait_for(rig.manager.deliver(), 30)
        slow.gate.set()
        await first
        await rig.manager.deliver()

    asyncio.run(main())
    assert [e["id"] for e in slow.events] == ["age#1"]


def test_history_is_bounded_and_what_falls_off_undelivered_is_counted(tmp_path: Path) -> None:
    down = Recorder(retries=100)
    down.failing = True
    rig = Rig(tmp_path, [down], max_history=2)
    for _ in range(3):
        rig.alarm()
        rig.ok()
    rig.deliver()
    assert len(rig.manager.history()) == 2
    assert rig.manager.undeliverable == 4
    assert rig.manager.pending() == {"recorder": 2}
    down.failing = False
    rig.clock.advance(300)
    rig.deliver()
    assert [e["seq"] for e in down.events] == [5, 6]


def test_notifier_names_must_be_unique(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        Rig(tmp_path, [Recorder(), Recorder()])


def test_notify_config_builds_notifiers(tmp_path: Path) -> None:
    cfg = parse_notify(
        {
            "file": "out/alarms.jsonl",
            "webhook": [
                {"url": "http://127.0.0.1:1/a", "headers": {"Authorization": "Bearer t"}, "timeoutSeconds": 2},
                {"url": "https://example.invalid/b", "states": "ALARM", "backoffSeconds": 0.5},
            ],
            "states": [ALARM, OK],
        },
        tmp_path / "shardline.yml",
    )
    assert cfg == NotifyConfig(
        log=True,
        file=(tmp_path / "out/alarms.jsonl").resolve(),
        webhooks=(
            WebhookConfig("http://127.0.0.1:1/a", timeout_s=2, headers={"Authorization": "Bearer t"}),
            WebhookConfig("https://example.invalid/b", backoff_s=0.5, states=frozenset({ALARM})),
        ),
        states=frozenset({ALARM, OK}),
    )
    log, file, a, b = build_notifiers(cfg)
    assert [n.name for n in (log, file, a, b)] == ["log", "file", "webhook", "webhook-2"]
    assert isinstance(a, WebhookNotifier) and a.headers == {"Authorization": "Bearer t"} and a.timeout_s == 2
    assert a.states == frozenset({ALARM, OK}) and b.states == frozenset({ALARM})
    assert isinstance(file, FileNotifier) and file.path == (tmp_path / "out/alarms.jsonl").resolve()
    assert build_notifiers(parse_notify(None, tmp_path / "x.yml"))[0].name == "log"
    assert build_notifiers(parse_notify({"log": False}, tmp_path / "x.yml")) == []


def test_webhook_sends_configured_headers(tmp_path: Path, hook: Hook) -> None:
    rig = Rig(tmp_path, [WebhookNotifier(hook.url, headers={"Authorization": "Bearer t"})])
    rig.alarm()
    rig.deliver()
    assert hook.headers[0]["Authorization"] == "Bearer t"
    assert hook.headers[0]["User-Agent"] == "shardline-alarms"
