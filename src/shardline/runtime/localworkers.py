"""``shardline up --workers N``: the embedded engine and endpoint in this process, the project's functions in N local
``shardline run`` worker processes that share the shards through one SQLite lease file (runtime/leases).

This process makes the project's streams ready (as ``up`` does), then starts the workers against its own endpoint;
each takes its share of the leases, and a worker that dies has its leases taken by the others after the lease TTL.
Stopping ``up`` stops the workers gracefully first (SIGTERM: in-flight batches finish and checkpoint, leases are
released), then the endpoint.
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

__all__ = ["LocalWorkers", "workers_problem"]

log = logging.getLogger("shardline.runtime")

STOP_TIMEOUT_S = 45.0  # a graceful stop drains every shard (up to the 30 s handoff timeout), then exits


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


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, SIGTERM (a graceful stop) when ``up`` dies without stopping it."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalWorkers:
    """A service of ``up``: prepares the streams of ``config`` in ``engine``, then runs ``n`` workers
    (``python -m shardline run``) against ``endpoint_url`` (set before ``start``) with the leases in
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
        self.procs: list[asyncio.subprocess.Process] = []
        self._watch: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def leases_url(self) -> str:
        return f"sqlite:{self.state_dir / 'leases.db'}"

    def worker_id(self, i: int) -> str:
        return f"up-{os.getpid()}-{i}"

    async def start(self) -> None:
        if self.endpoint_url is None:
            raise RuntimeError("the workers need the endpoint's URL before they start")
        await EngineWiring(self.engine).prepare(self.config)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**self.env}
        env.setdefault("AWS_ACCESS_KEY_ID", "local")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        for i in range(1, self.n + 1):
            argv = [
                sys.executable, "-m", "shardline", "run", str(self.config.path.resolve()),
                "--endpoint-url", self.endpoint_url, "--leases", self.leases_url, "--worker-id", self.worker_id(i),
                "--state-dir", str(self.state_dir), "--region", self.engine.settings.region,
                "--account-id", self.engine.settings.account_id, *self.extra,
            ]  # fmt: skip
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent
            )
            self.procs.append(proc)
            self._watch.append(asyncio.create_task(self._watch_one(i, proc), name=f"worker-{i}"))
        log.info("started %d workers sharing the leases in %s", self.n, self.leases_url)

    async def _watch_one(self, i: int, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if not self._stopping:
            log.error(
                "worker %s exited with %s; the other workers take its leases after the lease TTL",
                self.worker_id(i),
                code,
            )

    async def before_shutdown(self) -> None:
        """On SIGTERM/SIGINT, while the endpoint still serves: the workers stop gracefully first."""
        await self.stop()

    async def stop(self) -> None:
        self._stopping = True
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("worker pid %d did not stop in %.0f s: killed", proc.pid, STOP_TIMEOUT_S)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in self._watch:
            await task
        self.procs.clear()
        self._watch.clear()
