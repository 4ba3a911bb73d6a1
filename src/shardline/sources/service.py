"""Running a project's sources: beside the streams and functions (``shardline up``) or alone (``shardline cdc``).

``start`` checks every source's server and tables first, so a setting that cannot give correct events fails the
command with its message before anything runs. Afterwards a source that loses its server (a restart, a network
error) is started again from its checkpoint after a growing pause; ``stop`` ends every source and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from .._tasks import cancel_and_wait
from ..clock import Clock, SystemClock
from .config import SourceConfig
from .monitor import SourceMonitor
from .mysql import MySqlSource
from .server import SourceSetupError, binary_logs, check_server, connect, list_tables
from .sink import EngineSink, KinesisSink, Sink
from .stats import SourceFigures, SourceStats

__all__ = ["EngineSink", "KinesisSink", "SourceFigures", "SourceSetupError", "Sources"]

log = logging.getLogger("shardline.sources")

_RESTART_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class Sources:
    """Every source of a project, each writing through the sink ``sink_for(stream_name)`` gives."""

    def __init__(
        self,
        configs: dict[str, SourceConfig],
        sink_for: Callable[[str], Sink],
        state_dir: Path,
        *,
        clock: Clock | None = None,
        report_s: float = 5.0,
        lag_alarm_s: float = 60.0,
    ) -> None:
        self.configs = configs
        self.sink_for = sink_for
        self.state_dir = state_dir
        self.clock = clock or SystemClock()
        self.running: dict[str, MySqlSource] = {}
        self.stats = {name: SourceStats(name, cfg.stream, self.clock) for name, cfg in configs.items()}
        self._tasks: list[asyncio.Task[None]] = []
        self.monitor = SourceMonitor(
            lambda: list(self.stats.values()),
            self._binary_logs,
            self.clock,
            interval_s=report_s,
            lag_alarm_s=lag_alarm_s,
        )
        self._monitor_task: asyncio.Task[None] | None = None
        self.failed: dict[str, str] = {}  # source -> why it stopped for good

    def _binary_logs(self, name: str) -> list[tuple[str, int]] | None:
        try:
            conn = connect(self.configs[name])
        except Exception:
            return None  # (the source's own reconnects report an unreachable server)
        try:
            return binary_logs(conn)
        except Exception:
            return None
        finally:
            conn.close()

    # ----------------------------------------------------------------- figures for the metrics layer
    @property
    def lag_alarm_s(self) -> float:
        return self.monitor.lag_alarm_ms / 1000

    def names(self) -> list[str]:
        return list(self.configs)

    def figures(self) -> list[SourceFigures]:
        """Every source's figures now (lag from the clock; binary-log figures from the last sample)."""
        out: list[SourceFigures] = []
        for name in list(self.stats):
            st = self.stats[name]
            h = self.monitor.health.get(name)
            done = dict(st.snapshot_rows)
            estimates = {t: max(st.snapshot_estimates.get(t, 0), done.get(t, 0)) for t in st.snapshot_tables}
            out.append(
                SourceFigures(
                    name=name,
                    stream=st.stream,
                    rows_total=dict(st.rows_total),
                    snapshot_rows=done,
                    snapshot_estimates=estimates,
                    snapshot_running=st.snapshot_running,
                    snapshot_done=st.snapshot_done,
                    lag_seconds=st.lag_ms() / 1000,
                    binlog_bytes_behind=None if h is None else h.bytes_behind,
                    binlog_at_risk=h is not None and h.at_risk,
                    binlog_purged=h is not None and h.purged,
                )
            )
        return out

    async def start(self) -> None:
        for cfg in self.configs.values():
            await asyncio.to_thread(_preflight, cfg)
            await self.sink_for(cfg.stream).check()
        for cfg in self.configs.values():
            self._tasks.append(asyncio.create_task(self._supervise(cfg), name=f"source {cfg.name}"))
        self._monitor_task = asyncio.create_task(self.monitor.run(), name="source monitor")

    async def _supervise(self, cfg: SourceConfig) -> None:
        failures = 0
        while True:
            sink = self.sink_for(cfg.stream)
            source = MySqlSource(cfg, sink, self.state_dir, clock=self.clock, stats=self.stats[cfg.name])
            self.running[cfg.name] = source
            try:
                await source.run()
                return
            except asyncio.CancelledError:
                await source.stop()
                raise
            except SourceSetupError as exc:
                log.error("source %s stopped: %s", cfg.name, exc)  # (needs the user: starting again cannot help)
                self.failed[cfg.name] = str(exc)
                return
            except Exception as exc:
                pause = _RESTART_S[min(failures, len(_RESTART_S) - 1)]
                failures += 1
                log.error(
                    "source %s (%s) failed: %s: %s; starting again from its checkpoint in %.0fs",
                    cfg.name, cfg.where, type(exc).__name__, exc, pause,
                )  # fmt: skip
                await asyncio.sleep(pause)

    async def wait_ended(self) -> None:
        """Return when every source has ended (none runs for good unless stopped)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        if self._monitor_task is not None:
            await cancel_and_wait([self._monitor_task])
            self._monitor_task = None
        for source in list(self.running.values()):
            await source.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5.0)
        await cancel_and_wait(self._tasks)


def _preflight(cfg: SourceConfig) -> None:
    try:
        conn = connect(cfg)
    except Exception as exc:
        raise SourceSetupError(f"source {cfg.name}: cannot connect to {cfg.where}: {exc}") from None
    try:
        check_server(conn)
        if not list_tables(conn, cfg):
            log.warning("source %s: no table on %s matches its tables/include/exclude yet", cfg.name, cfg.where)
    except SourceSetupError as exc:
        raise SourceSetupError(f"source {cfg.name} ({cfg.where}): {exc}") from None
    finally:
        conn.close()
