"""`shardline run` that cannot start says why in one line and exits 2: a lease store it cannot reach, an endpoint
that does not answer, no credentials. No traceback: none of these is a fault of the program."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from _shardline import CLI

from ._e2e import serve
from .test_remote import project

WAIT_S = 60.0


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    with serve(tmp_path) as url:
        yield url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [*CLI, "run", str(project(tmp_path)), "--state-dir", str(tmp_path / "state"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT_S, check=False, env=env)


def _credentials() -> dict[str, str]:
    return {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("shardline run: ")]
    return line


def test_a_lease_store_that_cannot_be_reached(tmp_path: Path, endpoint: str) -> None:
    dsn = f"postgresql://shardline@127.0.0.1:{_free_port()}/leases"
    done = _run(tmp_path, "--endpoint-url", endpoint, "--create-streams", "--leases", dsn, env=_credentials())
    line = _one_line(done)
    assert line.startswith("shardline run: lease store unreachable: OperationalError: connection failed")


def test_an_endpoint_that_does_not_answer(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    line = _one_line(_run(tmp_path, "--endpoint-url", url, env=_credentials()))
    assert line == f'shardline run: Could not connect to the endpoint URL: "{url}/"'


def test_no_credentials(tmp_path: Path, endpoint: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    line = _one_line(_run(tmp_path, "--endpoint-url", endpoint, env=env))
    assert line == "shardline run: Unable to locate credentials"
