"""`shardline up --workers 2` keeps two workers running: a worker killed with SIGKILL is replaced by a new process
under a fresh worker id, every record put before and after the kill is processed, a crash loop backs off (1, 2, 4,
8, 16 s ... up to 30 s), and SIGTERM to `up` stops everything, restarting nothing."""

from __future__ import annotations

import os
import re
import signal
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from _shardline import Running, kinesis, shardline
from shardline.runtime.localworkers import BACKOFF_MAX_S, BACKOFF_MIN_S, BACKOFF_RESET_S, restart_delay

from ._cluster import metric_samples, wait_for
from .test_up_workers import _delivered, _owners, _project, _workers

RESTART_RE = re.compile(r"worker (\S+) \(pid (\d+)\) (.+?) after [\d.]+ s; restarting it as (\S+) in (\d+) s")
STARTED_RE = re.compile(r"started worker (\S+) \(pid (\d+)\)")


@dataclass
class Up:
    running: Running
    log: Path
    data: Path
    out: Path
    cfg: Path

    @property
    def pid(self) -> int:
        return self.running.proc.pid

    def workers(self) -> dict[int, str]:
        """The `shardline run` children of `up` now: pid -> worker id (from /proc)."""
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode().split("\0")
            except (FileNotFoundError, ProcessLookupError):
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            state = stat.rpartition(")")[2].split()[0]
            if ppid == self.pid and state != "Z" and "run" in argv and "--worker-id" in argv:
                found[int(entry)] = argv[argv.index("--worker-id") + 1]
        return found

    def restarts(self) -> list[tuple[str, str, int]]:
        """(dead worker id, how it ended, delay in s) per restart logged so far."""
        return [(m[1], m[3], int(m[5])) for m in RESTART_RE.finditer(self.log.read_text())]


@contextmanager
def up_with_two_workers(tmp_path: Path) -> Iterator[Up]:
    out = tmp_path / "out"
    out.mkdir()
    cfg = _project(tmp_path / "proj", out)
    data, log = tmp_path / "data", tmp_path / "up.log"
    with (
        log.open("w") as err,
        shardline("up", str(cfg), "--port", "0", "--data-dir", str(data), "--workers", "2", stderr=err) as running,
    ):
        up = Up(running, log, data, out, cfg)
        try:
            yield up
        finally:
            print(log.read_text()[-4000:])


def _two_workers(up: Up, without: int | None = None) -> dict[int, str] | None:
    workers = up.workers()
    return workers if len(workers) == 2 and without not in workers else None


def _put(client: Any, numbers: range) -> None:
    for n in numbers:
        client.put_record(StreamName="events", Data=str(n).encode(), PartitionKey=f"k{n}")


def _seen_all(out: Path, numbers: range) -> bool:
    want = {str(n) for n in numbers}
    return all(want <= {r["n"] for r in _delivered(out, fn)} for fn in ("first", "second"))


def _restart_counts(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        samples = metric_samples(resp.read().decode())
    return {labels["worker"]: value for labels, value in samples.get("shardline_worker_restarts_total", [])}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _stop(up: Up) -> str:
    """SIGTERM to `up`: it exits 0; the log it wrote from then on."""
    before = len(up.log.read_text())
    up.running.proc.send_signal(signal.SIGTERM)
    assert up.running.proc.wait(timeout=120) == 0
    return up.log.read_text()[before:]


def test_the_restart_back_off_doubles_to_the_cap_and_starts_afresh_after_a_healthy_run() -> None:
    delays, delay = [], None
    for _ in range(8):
        delay = restart_delay(delay, ran_s=0.5)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert BACKOFF_MIN_S == 1 and BACKOFF_MAX_S == 30
    assert restart_delay(30, ran_s=BACKOFF_RESET_S) == BACKOFF_MIN_S
    assert restart_delay(8, ran_s=BACKOFF_RESET_S - 1) == 16


def test_a_killed_worker_is_replaced_under_a_fresh_id_and_stop_restarts_nothing(tmp_path: Path) -> None:
    with up_with_two_workers(tmp_path) as up:
        first = wait_for("two workers", lambda: _two_workers(up))
        victim, victim_id = min(first.items())
        os.kill(victim, signal.SIGKILL)
        now = wait_for("a new worker in place of the killed one", lambda: _two_workers(up, without=victim))
        [(new, new_id)] = [(pid, wid) for pid, wid in now.items() if pid not in first]
        assert new_id == f"{victim_id}-r1"
        [(dead, how, delay)] = up.restarts()
        assert (dead, how, delay) == (victim_id, "killed by SIGKILL", BACKOFF_MIN_S)
        counts = wait_for("the restart in /metrics", lambda: c if (c := _restart_counts(up.running.url)) else None)
        assert counts == {victim_id: 1, first[max(first)]: 0}
        after = _stop(up)
    assert not RESTART_RE.search(after) and not STARTED_RE.search(after), after
    assert not [pid for pid in (*first, new) if _alive(pid)]


@pytest.mark.slow
def test_records_put_before_and_after_a_worker_is_killed_are_all_processed(tmp_path: Path) -> None:
    with up_with_two_workers(tmp_path) as up:
        client = kinesis(up.running.url)
        first = wait_for("two workers", lambda: _two_workers(up))
        _put(client, range(100))
        wait_for("both functions to see records 0..99", lambda: _seen_all(up.out, range(100)), timeout=120)
        db = up.data / "runtime" / "leases.db"
        held = Counter(owner for shards in _owners(db).values() for _, owner in shards)
        victim_id = held.most_common(1)[0][0]  # one that holds leases: they move only once the TTL runs out
        [victim] = [pid for pid, wid in first.items() if wid == victim_id]
        os.kill(victim, signal.SIGKILL)
        wait_for("a new worker in place of the killed one", lambda: _two_workers(up, without=victim))
        _put(client, range(100, 200))
        # The killed worker's leases are taken after the lease TTL (10 s), by its replacement or the other worker.
        wait_for("both functions to see records 0..199", lambda: _seen_all(up.out, range(200)), timeout=180)
        wait_for("the replacement in the lease file", lambda: f"{victim_id}-r1" in _workers(db))
        after = _stop(up)
    assert [(dead, how) for dead, how, _ in up.restarts()] == [(victim_id, "killed by SIGKILL")]
    assert not RESTART_RE.search(after) and not STARTED_RE.search(after), after


@pytest.mark.slow
def test_a_crash_loop_backs_off_and_a_stop_ends_the_pending_back_off(tmp_path: Path) -> None:
    with up_with_two_workers(tmp_path) as up:
        first = wait_for("two workers", lambda: _two_workers(up))
        # The project file edited into an error: every new worker exits at once (status 2) on reading it.
        up.cfg.write_text("streams: [not closed\n")
        for pid in first:
            os.kill(pid, signal.SIGKILL)

        def delays() -> dict[str, list[int]] | None:
            out: dict[str, list[int]] = {}
            for dead, _, delay in up.restarts():
                out.setdefault(re.sub(r"-r\d+$", "", dead), []).append(delay)
            return out if len(out) == 2 and all(len(d) >= 5 for d in out.values()) else None

        logged = wait_for("five restarts of each worker", delays, timeout=300)
        after = _stop(up)
    assert set(logged) == set(first.values())
    for slot, got in logged.items():
        assert got[:5] == [1, 2, 4, 8, 16], (slot, got)
        assert got == sorted(got) and max(got) <= BACKOFF_MAX_S
    ends = [how for _, how, _ in up.restarts()]
    assert ends[:2] == ["killed by SIGKILL"] * 2 and set(ends[2:]) == {"exited with status 2"}, ends
    # SIGTERM came during a back-off of up to 16 s: it ended it and started nothing.
    assert "is not restarted" in after, after
    assert not RESTART_RE.search(after) and not STARTED_RE.search(after), after
