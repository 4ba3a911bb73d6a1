"""Source monitoring: rows/s per table, lag, bytes behind, the snapshot's progress line and the two alarms."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from shardline import ManualClock
from shardline.sources.envelope import Position
from shardline.sources.monitor import SourceMonitor, bytes_behind, progress_bar
from shardline.sources.mysql import MySqlSource
from shardline.sources.server import SourceSetupError
from shardline.sources.sink import EngineSink
from shardline.sources.stats import SourceStats

from ._cdc import source_config
from ._mariadb import MariaDB


def test_rates_lag_and_the_falling_behind_alarm() -> None:
    clock = ManualClock(1_000_000)
    st = SourceStats("shop", "changes", clock)
    logs = {"shop": [("binlog.000001", 1000), ("binlog.000002", 500)]}
    mon = SourceMonitor(lambda: [st], lambda _n: None, clock, lag_alarm_s=60)
    st.checkpointed(Position("binlog.000001", 400))
    mon.sample(logs)
    st.rows("shop.orders", 500, snapshot=False)
    st.rows("shop.lines", 50, snapshot=False)
    st.event(clock.now_ms() - 90_000)  # a change committed 90 s ago, just seen: 90 s behind
    clock.advance(5)
    lines = mon.sample(logs)
    h = mon.health["shop"]
    assert h.rows_per_s == {"shop.orders": 100.0, "shop.lines": 10.0}
    assert h.bytes_behind == 600 + 500 and h.lag_ms == 95_000
    assert lines == [("source shop: shop.lines 10/s, shop.orders 100/s; lag 95.0s, 1,100 binlog bytes behind", 20)]
    clock.advance(5)
    lines = mon.sample(logs)  # the second sample above the threshold raises the alarm, once
    assert lines[0] == ("ALARM source shop: falling behind: 100s behind the database (alarm above 60s)", 30)
    clock.advance(5)
    assert not any("ALARM" in line for line, _ in mon.sample(logs))
    st.idle()  # caught up with the server's end
    lines = mon.sample(logs)
    assert lines[0] == ("OK source shop: caught up with the database", logging.INFO)
    assert not mon.health["shop"].falling_behind
    # The server purged the file the checkpoint is in.
    lines = mon.sample({"shop": [("binlog.000002", 500)]})
    assert lines[0][1] == logging.ERROR and "binlog purged: the server no longer has binlog.000001" in lines[0][0]


def test_snapshot_progress_line() -> None:
    clock = ManualClock()
    st = SourceStats("shop", "changes", clock)
    st.snapshot_started({}, ["shop.a", "shop.b"])
    st.snapshot_estimates = {"shop.a": 100, "shop.b": 300}
    st.rows("shop.a", 100, snapshot=True)
    ((line, _),) = SourceMonitor(lambda: [st], lambda _n: None, clock).sample({})
    assert line == f"source shop: snapshot {progress_bar(100, 400)} 100/~400 rows"
    assert progress_bar(100, 400, width=8) == "[##......]  25.0%"
    assert bytes_behind([("b.1", 10)], Position("b.0", 4)) is None


async def test_a_checkpoint_in_a_purged_binlog_is_refused(mariadb: MariaDB, schema: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "shop.json").write_bytes(
        orjson.dumps({"binlog": {"file": "binlog.000000", "pos": 4, "gtid": None}, "snapshot": {"done": True}})
    )
    source = MySqlSource(source_config(mariadb, schema), EngineSink(None, "x"), state)  # type: ignore[arg-type]
    with pytest.raises(SourceSetupError, match=r"no longer has binlog\.000000, where its checkpoint is"):
        await source.run()
