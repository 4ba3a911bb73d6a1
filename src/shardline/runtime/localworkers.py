"""``shardline up --workers N``: the embedded engine and endpoint in this process, the project's functions in N local
``shardline run`` worker processes that share the shards through one SQLite lease file (runtime/leases).

This process makes the project's streams ready (as ``up`` does), then starts the workers against its own endpoint;
each takes its share of the leases. Stopping ``up`` stops the workers gracefully first (SIGTERM: in-flight batches
finish and checkpoint, leases are released), then the endpoint.

A supervisor keeps N workers running: a worker that exits while ``up`` is not stopping (a crash, an OOM kill, a
SIGKILL, even a clean exit) is started again after a back-off that doubles from 1 s to 30 s while its
replacements keep dying young, and starts again from 1 s once one has run for 60 s, so a crash loop (a project
file edited into an error, say) costs a start every 30 s rather than a spinning CPU. Each exit is logged with its
status or signal and the delay before the restart, and each slot counts its restarts (``restart_counts``,
exported as ``shardline_worker_restarts_total`` by metrics.leases). A stop wakes the pending back-offs (nothing is
restarted once the stop has begun, nor is a worker that dies during it) and waits for every worker it started.

Worker ids: the first process of slot ``i`` is ``up-<pid>-<i>``, its k-th replacement ``up-<pid>-<i>-r<k>``: a
fresh id per process start, as spec/leases.md asks (``lease_worker``: "new per process start"). The replacement
does not try to resume the dead worker's leases under its old name: the store's take requires ``owner IS NULL OR
expires_at < now``, so the same name would not make the rows takeable any sooner, and a lease is only ever renewed
or checkpointed with the epoch its holder took it at, which a new process does not know. Reusing the name would only
make two processes one in the table: a handoff requested to the dead worker would be completed to its successor,
which never took it and so never renews it (the shard then waits out the TTL anyway), and the worker count the
balancing pass divides by would not show the dead row expiring. With a fresh id the dead worker's leases are taken
after the lease TTL, by its replacement or by the others, exactly as after any SIGKILL; its ``lease_worker`` row
expires with it. A replacement starts only after its predecessor was reaped, and the restart count makes its id
unique within this ``up``, so no two live processes of one ``up`` share an id.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..engine import Engine
from .config import ProjectConfig
from .project import EngineWiring

__all__ = ["BACKOFF_MAX_S", "BACKOFF_MIN_S", "BACKOFF_RESET_S", "LocalWorkers", "restart_delay", "workers_problem"]

log = logging.getLogger("shardline.runtime")

STOP_TIMEOUT_S = 45.0  # a graceful stop drains every shard (up to the 30 s handoff timeout), then exits
BACKOFF_MIN_S = 1.0  # the delay before the first restart, and again after a worker that ran BACKOFF_RESET_S
BACKOFF_MAX_S = 30.0
BACKOFF_RESET_S = 60.0  # a worker that ran this long was healthy: its death starts the back-off afresh


def workers_problem(config: ProjectConfig, n: int) -> str | None:
    """Why ``config`` cannot run on ``n`` local workers, or None."""
    if not 1 <= n <= 64:
        return "--workers must be from 1 to 64"
    for fn, mc in config.mappings:
        if mc.on_failure is not None and mc.on_failure.kind in ("sqs", "sns"):
            return (
                f"--workers: function {fn.config.name} sends failed batches to {mc.on_failure.kind.upper()} "
                f"{mc.on_failure.target}, which only the embedded runtime keeps in a local stream; run it without "
                "--workers, or use a stream or file on-failure destination"
            )
    return None


def restart_delay(previous_s: float | None, ran_s: float) -> float:
    """The back-off before restarting a worker that exited after running ``ran_s`` seconds, when the delay before
    its own start was ``previous_s`` (None: it was the slot's first process)."""
    if previous_s is None or ran_s >= BACKOFF_RESET_S:
        return BACKOFF_MIN_S
    return min(previous_s * 2, BACKOFF_MAX_S)


def exit_status(code: int) -> str:
    """A worker's return code in words: ``exited with status 1``, ``killed by SIGKILL``."""
    if code >= 0:
        return f"exited with status {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, SIGTERM (a graceful stop) when ``up`` dies without stopping it."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalWorkers:
    """A service of ``up``: prepares the streams of ``config`` in ``engine``, then keeps ``n`` workers
    (``python -m shardline run``) running against ``endpoint_url`` (set before ``start``) with the leases in
    ``state_dir``/leases.db. ``extra`` are passed to every worker (project-file and monitoring options)."""

    def __init__(
        self,
        config: ProjectConfig,
        engine: Engine,
        n: int,
        state_dir: Path,
        *,
        extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.n = n
        self.state_dir = state_dir
        self.extra = list(extra)
        self.env = dict(env if env is not None else os.environ)
        self.endpoint_url: str | None = None
        self.procs: dict[int, asyncio.subprocess.Process] = {}  # slot -> its current process
        self.restarts: dict[int, int] = {}  # slot -> processes started after its first
        self._slots: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stop = asyncio.Event()

    @property
    def leases_url(self) -> str:
        return f"sqlite:{self.state_dir / 'leases.db'}"

    def worker_id(self, i: int, restart: int = 0) -> str:
        """The lease-table id of slot ``i``'s process after ``restart`` restarts (see the module docstring)."""
        base = f"up-{os.getpid()}-{i}"
        return base if restart == 0 else f"{base}-r{restart}"

    def restart_counts(self) -> dict[str, int]:
        """Restarts so far per slot, keyed by the id of the slot's first process (zero for every slot)."""
        return {self.worker_id(i): self.restarts.get(i, 0) for i in range(1, self.n + 1)}

    async def start(self) -> None:
        if self.endpoint_url is None:
            raise RuntimeError("the workers need the endpoint's URL before they start")
        await EngineWiring(self.engine).prepare(self.config)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for i in range(1, self.n + 1):
            try:
                proc = await self._spawn(i, self.worker_id(i))  # the first start fails loudly, not in a back-off
            except BaseException:
                await self.stop()  # (the workers started so far)
                raise
            self._slots.append(asyncio.create_task(self._supervise(i, proc), name=f"worker-{i}"))
        log.info("started %d workers sharing the leases in %s", self.n, self.leases_url)

    async def _spawn(self, i: int, worker_id: str) -> asyncio.subprocess.Process:
        assert self.endpoint_url is not None
        env = {**self.env}
        env.setdefault("AWS_ACCESS_KEY_ID", "local")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        argv = [
            sys.executable, "-m", "shardline", "run", str(self.config.path.resolve()),
            "--endpoint-url", self.endpoint_url, "--leases", self.leases_url, "--worker-id", worker_id,
            "--state-dir", str(self.state_dir), "--region", self.engine.settings.region,
            "--account-id", self.engine.settings.account_id, *self.extra,
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent
        )
        self.procs[i] = proc
        if self._stopping:  # the stop began while this one was starting: it signalled the processes it saw
            self._terminate(proc)
        return proc

    async def _supervise(self, i: int, proc: asyncio.subprocess.Process) -> None:
        """Slot ``i``: wait for its process, and while ``up`` is not stopping, start the next one after the
        back-off. Returns once the stop has begun and the slot's process (if any) has exited."""
        loop = asyncio.get_running_loop()
        worker_id, delay, started = self.worker_id(i), None, loop.time()
        running: asyncio.subprocess.Process | None = proc
        not_started = ""
        while True:
            if running is not None:
                code = await running.wait()
                if self._stopping:
                    return
                ran_s = loop.time() - started
                what = f"worker {worker_id} (pid {running.pid}) {exit_status(code)} after {ran_s:.1f} s"
            else:
                ran_s, what = 0.0, f"worker {worker_id} could not start ({not_started})"
            delay = restart_delay(delay, ran_s)
            restart = self.restarts.get(i, 0) + 1
            following = self.worker_id(i, restart)
            log.error("%s; restarting it as %s in %.0f s (restart %d of this worker)", what, following, delay, restart)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stopping:
                log.info("stopping: worker %s is not restarted", following)
                return
            self.restarts[i] = restart
            worker_id, started = following, loop.time()
            try:
                running = await self._spawn(i, worker_id)
            except OSError as exc:  # fork or exec refused (out of memory, processes, files): back off and retry
                running, not_started = None, str(exc)
                continue
            log.info("started worker %s (pid %d)", worker_id, running.pid)

    def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    async def before_shutdown(self) -> None:
        """On SIGTERM/SIGINT, while the endpoint still serves: the workers stop gracefully first."""
        await self.stop()

    async def stop(self) -> None:
        self._stopping = True
        self._stop.set()
        for running in list(self.procs.values()):
            self._terminate(running)
        deadline = asyncio.get_running_loop().time() + STOP_TIMEOUT_S
        for i, task in enumerate(self._slots, start=1):
            left = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(asyncio.shield(task), max(left, 0.0))
            except TimeoutError:
                proc = self.procs.get(i)
                if proc is not None and proc.returncode is None:
                    log.warning("worker pid %d did not stop in %.0f s: killed", proc.pid, STOP_TIMEOUT_S)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                await task
        self.procs.clear()
        self._slots.clear()
