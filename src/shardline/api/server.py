"""Running the Kinesis app on a socket with uvicorn (httptools parser, uvloop when available)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn
import uvloop

from .app import KinesisApp

__all__ = ["bind", "is_loopback", "serve"]

log = logging.getLogger("shardline.api")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after shutting down, turning a clean stop into a signal exit status; the
    handlers installed by ``serve`` make a stop a normal return instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(app: KinesisApp, sock: socket.socket, *, on_ready: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM: then stop accepting, let in-flight requests finish, close the engine. A second
    signal forces the exit without waiting for open connections."""
    config = uvicorn.Config(
        app,
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=75,
        backlog=1024,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started and on_ready is not None:
        on_ready()
    await task


def run(app: KinesisApp, sock: socket.socket, *, on_ready: Callable[[], None] | None = None) -> None:
    uvloop.run(serve(app, sock, on_ready=on_ready))
