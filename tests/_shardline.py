"""What tests share besides fixtures: the manual clock's start, the boto3 client for a local endpoint, and running
`shardline` as a real process (start it on a free port, wait until it answers, always clean up)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config

START_MS = 1_700_000_000_000  # where ManualClocks start (November 2023)
URL_RE = re.compile(r"serving Kinesis at (http://\S+)")
# The module when this interpreter has shardline; otherwise the script installed beside it (the conformance suite can
# run from an environment that only has the command).
CLI = (
    [sys.executable, "-m", "shardline.cli"]
    if importlib.util.find_spec("shardline") is not None
    else [str(Path(sys.executable).with_name("shardline"))]
)


@dataclass
class Running:
    proc: subprocess.Popen[str]
    url: str


@contextmanager
def shardline(
    *args: str,
    stderr: int | IO[Any] = subprocess.DEVNULL,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    wait_s: float = 20.0,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Running]:
    """`shardline <args>` (a `serve` or `up` that prints its URL first); yields once GET /health answers 200. The
    process is killed on the way out if the test did not stop it. ``preexec_fn`` runs in the child before shardline
    (to lower a resource limit, say)."""
    proc = subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=cwd,
        env=env,
        preexec_fn=preexec_fn,  # noqa: PLW1509 (tests pass resource.setrlimit, which takes no lock)
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = URL_RE.search(line)
        assert match, f"shardline did not start: {line!r}"
        url = match.group(1)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
        yield Running(proc, url)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=wait_s)
        if proc.stdout is not None:
            proc.stdout.close()


def kinesis(url: str, *, region: str = "us-east-1", key_id: str = "x", secret: str = "x", **config: Any) -> Any:
    """A boto3 Kinesis client for a local endpoint: dummy credentials unless given, no retries (errors surface at
    once). ``config`` adds botocore Config options (``parameter_validation=False``, say)."""
    return boto3.client(
        "kinesis",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 0}, connect_timeout=10, read_timeout=60, **config),
    )
