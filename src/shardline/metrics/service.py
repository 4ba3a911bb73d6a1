"""The Monitor: a service beside the Kinesis endpoint that samples every metric once a second into the series store,
evaluates and delivers alarms, and picks custom metrics out of handler output.

It runs on the engine's event loop and only reads counters the engine and the runtime keep anyway, so a sample
costs well under a millisecond for a few hundred series. The store is written to ``<data dir>/metrics/series.bin``
every ``persist_interval_s`` (on a worker thread) and when the monitor stops, and read back when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from .._tasks import cancel_and_wait
from ..clock import Clock
from ..engine import Engine
from ..runtime.functions import FunctionPool, InvocationResult
from .access import OPEN, MonitoringAccess
from .catalog import Metric
from .collect import Collector, FamilyHook, ProjectLike, Snapshot
from .emf import EmfMetrics
from .http import MetricsApp
from .leases import lease_hook
from .series import SeriesStore, peek_coarse_points

__all__ = ["AlarmsLike", "Monitor"]

log = logging.getLogger("shardline.metrics")

MAX_COARSE_POINTS = 7 * 1440  # one-minute points are kept for the longest retention, up to 7 days
DEFAULT_COARSE_POINTS = 1440
FINAL_DELIVERY_S = 5.0


class AlarmsLike(Protocol):
    """What the monitor needs from the alarm manager (metrics.alarms.AlarmManager)."""

    def evaluate(self, now_ms: int) -> Sequence[Any]: ...

    def states(self) -> list[dict[str, Any]]: ...

    def history(self, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    async def deliver(self) -> None: ...


class RuleSink(Protocol):
    def set_rules(self, rules: Any) -> None: ...


class Monitor:
    """Samples, stores, alarms and serves metrics for one engine (and its project, under ``shardline up``).

    ``alarms`` is a ready alarm manager; ``alarms_factory`` builds one from the store when the monitor starts (after
    the engine opened and the project started, so the built-in rules see every stream and mapping); ``rules``, when
    given, recomputes the rule set whenever streams, mappings or functions come and go. ``access`` says who may read
    /metrics and /api/* (metrics.access.monitoring_access builds it from the command line)."""

    def __init__(
        self,
        engine: Engine,
        *,
        project: ProjectLike | None = None,
        alarms: AlarmsLike | None = None,
        alarms_factory: Callable[[SeriesStore], AlarmsLike] | None = None,
        rules: Callable[[], list[Any]] | None = None,
        path: Path | None = None,
        persist: bool = True,
        clock: Clock | None = None,
        interval_s: float = 1.0,
        persist_interval_s: float = 60.0,
        max_series: int = 1000,
        max_bytes: int = 128 * 1024 * 1024,
        access: MonitoringAccess = OPEN,
        hooks: Sequence[FamilyHook] = (),
    ) -> None:
        self.view = engine.view
        self.project = project
        self.clock = clock or engine.clock
        self.interval_ms = max(1, round(interval_s * 1000))
        self.persist_interval_ms = round(persist_interval_s * 1000)
        self.path = (path or Path(engine.settings.data_dir) / "metrics" / "series.bin") if persist else None
        coarse = DEFAULT_COARSE_POINTS
        if self.path is not None:
            coarse = min(MAX_COARSE_POINTS, max(coarse, peek_coarse_points(self.path) or 0))
        self.store = SeriesStore(self.path, coarse_points=coarse, max_series=max_series, max_bytes=max_bytes)
        self.emf = EmfMetrics()
        self.alarms: AlarmsLike | None = alarms
        self._alarms_factory = alarms_factory
        self._rules = rules
        self._topology: object = None
        self.collector = Collector(engine, project=project, emf=self.emf, alarms=alarms)
        # More families: the given hooks' (CDC sources: metrics.sources.source_hook), then the project's leases
        self.collector.hooks += [*hooks, *([lease_hook(project)] if project is not None else [])]
        self.app = MetricsApp(self, access)
        self.sample_seconds = 0.0
        self.samples = 0
        self.last: Snapshot | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._listening: dict[FunctionPool, Callable[[], None]] = {}  # pool -> removes the monitor's listener
        self._deliver = asyncio.Event()
        self._last_persist_ms = 0
        self._writing: asyncio.Future[None] | None = None
        self.running = False

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self.alarms is None and self._alarms_factory is not None:
            self.alarms = self._alarms_factory(self.store)
            self.collector.alarms = self.alarms
        self._fit_retention()
        self._listen_to_pools()
        self._last_persist_ms = self.clock.now_ms()
        if self.app.access.closed:
            log.warning("%s", self.app.access.refusal(None))
        self.running = True
        self._tasks = [
            asyncio.create_task(self._run(), name="shardline-metrics"),
            asyncio.create_task(self._deliver_loop(), name="shardline-alarm-delivery"),
        ]

    async def stop(self) -> None:
        self.running = False
        await cancel_and_wait(self._tasks)
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        if self.alarms is not None:
            # One last attempt for transitions of the final samples; a dead webhook must not hold up the shutdown.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.alarms.deliver(), FINAL_DELIVERY_S)
        self._stop_listening()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.store.snapshot())
        except OSError as exc:
            log.error("metrics: cannot write %s: %s", self.path, exc)

    async def _run(self) -> None:
        while True:
            now = self.clock.now_ms()
            await self.clock.sleep((self.interval_ms - now % self.interval_ms) / 1000)
            try:
                self.tick()
            except Exception:
                log.exception("metrics: sampling failed")
            now = self.clock.now_ms()
            if (
                self.path is not None
                and self._writing is None
                and now - self._last_persist_ms >= self.persist_interval_ms
            ):
                self._last_persist_ms = now
                self._writing = asyncio.get_running_loop().run_in_executor(None, self.store.snapshot())
                self._writing.add_done_callback(self._written)

    def _written(self, fut: asyncio.Future[None]) -> None:
        self._writing = None
        if not fut.cancelled() and fut.exception() is not None:
            log.error("metrics: cannot write %s: %s", self.path, fut.exception())

    async def _deliver_loop(self) -> None:
        while True:
            await self._deliver.wait()
            self._deliver.clear()
            if self.alarms is None:
                continue
            try:
                await self.alarms.deliver()
            except Exception:
                log.exception("metrics: alarm delivery failed")

    # ----------------------------------------------------------------- one sample
    def tick(self, now_ms: int | None = None) -> Snapshot:
        """Sample everything into the store, then evaluate alarms. The sampling loop calls it once a second; tests
        call it directly with a ManualClock."""
        started = time.perf_counter()
        now = self.clock.now_ms() if now_ms is None else now_ms
        self._listen_to_pools()
        if self.samples % 60 == 0:
            self._fit_retention()
        self._refresh_rules()
        self.collector.store_series = len(self.store)
        self.collector.sample_seconds = self.sample_seconds
        snap = self.collector.collect(now)
        self.store.record(now, snap.series())
        self.last = snap
        self.samples += 1
        if self.alarms is not None:
            self.alarms.evaluate(now)
            # Delivery also retries earlier failures once their backoff is over, so it is attempted every tick.
            self._deliver.set()
        self.sample_seconds += time.perf_counter() - started
        return snap

    def snapshot(self, now_ms: int | None = None) -> Snapshot:
        """The current values of every metric (for /metrics and the JSON API), without storing them."""
        self.collector.store_series = len(self.store)
        self.collector.sample_seconds = self.sample_seconds
        return self.collector.collect(self.clock.now_ms() if now_ms is None else now_ms)

    def catalog(self) -> dict[str, Metric]:
        """Every metric a snapshot may hold, by name, but the custom (EMF) ones (``/api/catalog``)."""
        return self.collector.catalog()

    def _fit_retention(self) -> None:
        hours = [st.retention_hours for st in self.view.streams()]
        if hours:
            self.store.set_coarse_points(min(MAX_COARSE_POINTS, max(DEFAULT_COARSE_POINTS, max(hours) * 60)))

    def _refresh_rules(self) -> None:
        if self._rules is None or self.alarms is None:
            return
        topology = (
            tuple(sorted((st.name, st.retention_hours) for st in self.view.streams())),
            tuple(m.uuid for m in self.project.mappings) if self.project is not None else (),
            tuple(self.project.pools) if self.project is not None else (),
        )
        if topology == self._topology:
            return
        self._topology = topology
        sink: Any = self.alarms
        if hasattr(sink, "set_rules"):
            sink.set_rules(self._rules())

    # ----------------------------------------------------------------- custom metrics from handler output
    def _listen_to_pools(self) -> None:
        """Route every invocation result of the project's functions through the EMF parser (pools that appear
        later are picked up at the next sample)."""
        if self.project is None:
            return
        for pool in self.project.pools.values():
            if pool not in self._listening:
                self._listening[pool] = pool.add_result_listener(self._emf_listener(pool.config.name))

    def _emf_listener(self, function: str) -> Callable[[InvocationResult], None]:
        emf = self.emf

        def listen(result: InvocationResult) -> None:
            if result.logs:
                emf.feed(function, result.logs)

        return listen

    def _stop_listening(self) -> None:
        for remove in self._listening.values():
            remove()
        self._listening.clear()
