"""The many-worker lease loop of one mapping: renew, take, balance, clean up; start and stop shard processors.

Every ``renew_s`` (with jitter) the worker heartbeats its row and renews every lease it holds, in one statement.
Leases missing from the result are lost: their processors stop at once without writing. A lease whose renew
result names a requester (``handoff_to``) is drained: no new batch starts, the in-flight sub-batches finish and
checkpoint, then the lease is released to the requester. Each renewed lease gets a local deadline of
t_send + ttl - margin (monotonic clock): past it, its processor starts no batch until a renew succeeds again, so
a worker cut off from the store stops before the store lets anyone else take over.

Then the worker takes unowned or expired leases up to its share (⌈takeable / live workers⌉). Every
``balance_s`` it compares its count with the most loaded live worker and, when that one holds at least two
more, asks it for one lease (graceful handoff), or takes one whose requested handoff timed out: at most one
steal per pass, so assignments converge to max - min <= 1 without ping-pong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, Protocol, TypeVar

from ...clock import Clock
from .base import Lease, LeaseLost, LeaseStore, LeaseUnavailable, Renewal, Snapshot
from .thread import StoreThread

__all__ = ["LeaseCounters", "LeaseTiming", "LeaseWorker", "ShardHandle"]

log = logging.getLogger("shardline.runtime")
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """KCL's defaults: a 10 s lease, renewed every ttl/3 - 25 ms, takes on the renew cadence, a balance pass
    every ttl, a 30 s graceful handoff, finished parents deleted 5 min after SHARD_END."""

    ttl_s: float = 10.0
    renew_s: float | None = None  # default ttl/3 - 0.025
    take_s: float | None = None  # default = renew_s
    balance_s: float | None = None  # default = ttl_s
    handoff_timeout_s: float = 30.0
    graceful: bool = True
    cleanup_s: float = 60.0
    completed_delay_s: float = 300.0

    @property
    def renew(self) -> float:
        return self.renew_s if self.renew_s is not None else self.ttl_s / 3 - 0.025

    @property
    def take(self) -> float:
        return self.take_s if self.take_s is not None else self.renew

    @property
    def balance(self) -> float:
        return self.balance_s if self.balance_s is not None else self.ttl_s

    @property
    def margin(self) -> float:
        """Self-fencing margin: a worker stops dispatching this long before the store may expire its lease."""
        return max(min(1.0, self.ttl_s / 3), 0.1 * self.ttl_s)

    def problems(self) -> list[str]:
        out = []
        if not 0.5 <= self.ttl_s <= 3600:
            out.append("the lease TTL must be from 0.5 to 3600 seconds")
        for name, value in (("renew", self.renew), ("take", self.take), ("balance", self.balance)):
            if not 0.05 <= value <= 3600:
                out.append(f"the lease {name} interval must be from 0.05 to 3600 seconds")
        if self.renew >= self.ttl_s - self.margin:
            out.append("the lease renew interval must be shorter than the TTL minus the margin (TTL/10, >= 1 s)")
        if self.handoff_timeout_s < 0 or self.completed_delay_s < 0:
            out.append("the handoff timeout and the completed-lease delay cannot be negative")
        return out


@dataclass
class LeaseCounters:
    """For monitoring: what this worker's lease loop did, and how long the store took to answer."""

    owned: int = 0
    taken: int = 0
    stolen: int = 0
    handoffs_requested: int = 0
    handed_off: int = 0
    released: int = 0
    lost: int = 0
    cleaned: int = 0
    store_errors: int = 0
    statements: int = 0
    statement_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # the latest statement times, seconds

    def count_statement(self, took_s: float) -> None:
        """One statement answered (or failed) after ``took_s`` seconds; the latest 1024 to 2048 times are kept."""
        self.statements += 1
        self.statement_seconds += took_s
        self.latencies.append(took_s)
        if len(self.latencies) > 2048:
            del self.latencies[:1024]


class ShardHandle(Protocol):
    """A running shard processor, as the lease loop drives it."""

    deadline: float | None

    def lose(self) -> None: ...

    def drain(self) -> None: ...


@dataclass
class _Held:
    lease: Lease
    handle: ShardHandle
    draining: bool = False


class LeaseWorker:
    """The lease loop of one mapping (``app``) in this process. ``launch`` starts a processor for a lease just taken
    (with its local deadline) and returns its handle; the mapping calls ``ended`` when that processor returns."""

    def __init__(
        self,
        store: LeaseStore,
        app: str,
        timing: LeaseTiming,
        clock: Clock,
        launch: Callable[[Lease, float], ShardHandle],
    ) -> None:
        self.store = store
        self.app = app
        self.timing = timing
        self.clock = clock
        self.launch = launch
        self.counters = LeaseCounters()
        self._held: dict[str, _Held] = {}
        self._dropped: set[tuple[str, int]] = set()  # (key, epoch) given up here: never adopted again
        self._requested: tuple[str, str, int] | None = None  # (key, victim, epoch) of my handoff request
        self._stop = asyncio.Event()
        self._taking = True  # False once the owner stops (stop_taking)
        # The lease loop's own thread: its passes never wait in line behind the shards' checkpoints (queued on the
        # mapping's store thread), nor those behind a pass.
        self._thread = StoreThread(f"leases-{app[:8]}")
        # Renewals run on their own thread and timer, so a busy event loop cannot let a held lease expire.
        self._epochs: dict[str, int] = {}  # what the renew thread renews: key -> epoch (under _epochs_lock)
        self._epochs_lock = threading.Lock()
        self._renew_stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ----------------------------------------------------------------- the store, timed
    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            return await self._thread.call(fn, *args, **kwargs)
        finally:
            self.counters.count_statement(time.perf_counter() - started)

    # ----------------------------------------------------------------- the loop
    def stop(self) -> None:
        self._stop.set()

    def stop_taking(self) -> None:
        """Take, adopt and balance no more leases; renew the ones held until ``stop``. The owner is stopping and
        hands its leases back: taking them again would only start shards to stop them."""
        self._taking = False

    def owned(self) -> dict[str, Lease]:
        return {k: h.lease for k, h in self._held.items()}

    async def run(self) -> None:
        t = self.timing
        self._loop = asyncio.get_running_loop()
        renewer = threading.Thread(target=self._renew_thread, name=f"lease-renew-{self.app[:8]}", daemon=True)
        renewer.start()
        now = self.clock.monotonic()
        next_take = now
        next_balance = now + t.balance * random.uniform(0.8, 1.2)
        next_cleanup = now + t.cleanup_s
        snap: Snapshot | None = None
        try:
            while not self._stop.is_set():
                now = self.clock.monotonic()
                try:
                    if now >= next_take and self._taking:
                        snap = await self._take()
                        next_take = now + t.take
                        # A due balance pass reads the take pass's snapshot: the steady load stays 1 renew + 1 read
                        # per take interval (the pass runs at most one take interval late).
                        if now >= next_balance and not self._stop.is_set():
                            await self._balance(snap)
                            next_balance = now + t.balance * random.uniform(0.8, 1.2)
                    if now >= next_cleanup and not self._stop.is_set():
                        if snap is not None and self._cleanup_due(snap):
                            self.counters.cleaned += await self._call(self.store.cleanup, self.app, t.completed_delay_s)
                        next_cleanup = now + t.cleanup_s
                except Exception as exc:
                    self._failed(exc, "lease pass failed; the next pass tries again")
                self.counters.owned = len(self._held)
                wait = max(0.01, min(next_take, next_cleanup) - self.clock.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait)
        finally:
            self._renew_stop.set()
            await self._thread.call(renewer.join)
        with contextlib.suppress(LeaseUnavailable):
            await self._call(self.store.deregister, self.app)

    def _failed(self, exc: Exception, what: str) -> None:
        """A lease pass or a renew failed: an unreachable store is a warning, anything else is logged with its
        traceback; both count as store errors."""
        self.counters.store_errors += 1
        if isinstance(exc, LeaseUnavailable):
            log.warning("mapping %s: lease store: %s", self.app, exc)
        else:
            log.error("mapping %s: %s", self.app, what, exc_info=exc)

    def close(self) -> None:
        """After ``run`` returned and every processor ended: the lease loop's thread ends."""
        self._thread.close()

    # ----------------------------------------------------------------- renewals (their own thread)
    def _renew_thread(self) -> None:
        while not self._renew_stop.is_set():
            t_send = self.clock.monotonic()
            with self._epochs_lock:
                held = dict(self._epochs)
            started = time.perf_counter()
            try:
                renewal = self.store.keepalive(self.app, held, self.timing.ttl_s)
            except Exception as exc:
                self._failed(exc, "renew failed; the next renew tries again")
            else:
                self.counters.count_statement(time.perf_counter() - started)
                assert self._loop is not None
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    self._loop.call_soon_threadsafe(self._renewed, held, renewal, t_send)
            self._renew_stop.wait(self.timing.renew * random.uniform(0.9, 1.1))

    def _renewed(self, held: dict[str, int], renewal: Renewal, t_send: float) -> None:
        """On the event loop: apply what a renew found (only to the leases at the epochs it renewed)."""
        deadline = t_send + self.timing.ttl_s - self.timing.margin
        for key in renewal.lost:
            h = self._held.get(key)
            if h is None or h.lease.epoch != held[key]:
                continue
            self._forget(key)
            self.counters.lost += 1
            self._dropped.add((key, h.lease.epoch))
            log.warning("mapping %s: lease %s lost (epoch %d): the shard stops", self.app, key, h.lease.epoch)
            h.handle.lose()
        for key, handoff_to in renewal.kept.items():
            h = self._held.get(key)
            if h is None or h.lease.epoch != held[key]:
                continue
            h.handle.deadline = deadline
            if handoff_to is not None and not h.draining:
                h.draining = True
                log.info("mapping %s: handing %s over to %s", self.app, key, handoff_to)
                h.handle.drain()

    def _forget(self, key: str) -> _Held | None:
        with self._epochs_lock:
            self._epochs.pop(key, None)
        return self._held.pop(key, None)

    def _cleanup_due(self, snap: Snapshot) -> bool:
        """Cleanup is the leader's (the live worker with the lowest id), and only when there is something it could
        delete: the steady lease load stays 1 renew + 1 read per take interval."""
        if snap.finished == 0 and snap.stale_workers == 0:
            return False
        return snap.leader is None or snap.leader == self.store.owner

    async def _take(self) -> Snapshot:
        """Adopt handed-over leases and take unowned ones up to a fair share; returns the snapshot it read."""
        snap = await self._call(self.store.snapshot, self.app)
        me = self.store.owner
        mine_in_store = dict(snap.owners.get(me, []))
        await self._adopt(mine_in_store)
        target = math.ceil(snap.takeable / max(1, snap.workers))
        need = target - len(self._held)
        if need <= 0:
            return snap
        t_send = self.clock.monotonic()
        taken = await self._call(self.store.take_available, self.app, need, self.timing.ttl_s)
        for lease in taken:
            self.counters.taken += 1
            self._start(lease, t_send)
        return snap

    async def _adopt(self, mine_in_store: dict[str, int]) -> None:
        """Leases the store names me owner of that I do not run: handed over to me by their previous owner."""
        for key, epoch in mine_in_store.items():
            if key in self._held or (key, epoch) in self._dropped:
                continue
            stream, shard_id = key.split(":", 1)
            t_send = self.clock.monotonic()
            lease = await self._call(self.store.get, self.app, stream, shard_id)
            if lease is not None and lease.owner == self.store.owner and lease.epoch == epoch:
                self.counters.handed_off += 1
                if self._requested is not None and self._requested[0] == key:
                    self._requested = None
                self._start(lease, t_send)

    def _start(self, lease: Lease, t_send: float) -> None:
        deadline = t_send + self.timing.ttl_s - self.timing.margin
        log.info("mapping %s: took %s at epoch %d from %s", self.app, lease.key, lease.epoch, lease.checkpoint)
        self._held[lease.key] = _Held(lease, self.launch(lease, deadline))
        with self._epochs_lock:
            self._epochs[lease.key] = lease.epoch

    async def _balance(self, snap: Snapshot) -> None:
        """One move towards an even split, judged on ``snap`` (read by the take pass just before)."""
        owners = snap.owners
        me = self.store.owner
        mine = len(self._held)
        if self._requested is not None:
            key, victim, epoch = self._requested
            if (key, epoch) not in owners.get(victim, []):
                self._requested = None  # handed over, released or taken meanwhile
            else:
                stolen = await self._call(
                    self.store.steal, self.app, key, victim, epoch, self.timing.ttl_s,
                    force=False, handoff_timeout_s=self.timing.handoff_timeout_s,
                )  # fmt: skip
                if stolen is not None:
                    self._requested = None
                    self.counters.stolen += 1
                    self._start(stolen, self.clock.monotonic())
                return  # at most one move per pass
        victims = [(len(ls), o) for o, ls in owners.items() if o != me]
        if not victims:
            return
        count, victim = max(victims)
        if count - mine < 2:
            return
        key, epoch = random.choice(owners[victim])
        if self.timing.graceful:
            if await self._call(self.store.request_handoff, self.app, key, victim, epoch):
                self.counters.handoffs_requested += 1
                self._requested = (key, victim, epoch)
            return
        t_send = self.clock.monotonic()
        stolen = await self._call(
            self.store.steal, self.app, key, victim, epoch, self.timing.ttl_s, force=True, handoff_timeout_s=0.0
        )
        if stolen is not None:
            self.counters.stolen += 1
            self._start(stolen, t_send)

    # ----------------------------------------------------------------- a processor returned
    async def ended(self, lease: Lease, *, lost: bool) -> None:
        """The processor of ``lease`` returned (finished, drained, stopped or failed): release the lease unless it
        was lost (to the handoff requester if there is one, else to nobody)."""
        h = self._held.get(lease.key)
        if h is not None and h.lease.epoch == lease.epoch:
            self._forget(lease.key)
        else:
            h = None
        self._dropped.add((lease.key, lease.epoch))
        if lost or h is None:
            return
        try:
            new_owner = await self._call(self.store.release, lease, ttl_s=self.timing.ttl_s)
            self.counters.released += 1
            log.info(
                "mapping %s: released %s (epoch %d) to %s", self.app, lease.key, lease.epoch, new_owner or "nobody"
            )
        except LeaseLost:
            self.counters.lost += 1
        except LeaseUnavailable as exc:
            self.counters.store_errors += 1
            log.warning("mapping %s: could not release %s (it expires by itself): %s", self.app, lease.key, exc)
