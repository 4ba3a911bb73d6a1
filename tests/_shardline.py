"""What tests share besides fixtures: the manual clock's start, the boto3 client for a local endpoint, and running
`shardline` as a real process (start it on a free port, wait until it answers, always clean up)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import ssl
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
import cbor2
from botocore.config import Config

START_MS = 1_700_000_000_000  # where ManualClocks start (November 2023)
URL_RE = re.compile(r"serving Kinesis at (https?://\S+)")
# Headers with a signature of the shape AWS requires (without one it answers MissingAuthenticationToken, and so does
# `shardline serve --auth none`), for raw requests; not a valid signature.
UNVERIFIED_SIGNATURE = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, "
    "Signature=0",
    "X-Amz-Date": "20260101T000000Z",
}
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
    status_delay: float | None = 0.0,
) -> Iterator[Running]:
    """`shardline <args>` (a `serve` or `up` that prints its URL first); yields once GET /health answers 200. The
    process is killed on the way out if the test did not stop it. ``preexec_fn`` runs in the child before shardline
    (to lower a resource limit, say). ``status_delay`` is passed as --status-delay (0 by default: streams created
    through the API are ACTIVE at once, for tests whose subject is not the status machine; None keeps the command's
    own default, which code must wait out as on AWS)."""
    if status_delay is not None and args[:1] in (("serve",), ("up",)) and "--status-delay" not in args:
        args = (*args, "--status-delay", str(status_delay))
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
                # (a TLS test's certificate is its own, self-signed: readiness is all that is asked here)
                context = ssl._create_unverified_context() if url.startswith("https:") else None
                with urllib.request.urlopen(f"{url}/health", timeout=5, context=context) as resp:
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


def kinesis_cbor(data: bytes) -> Any:
    """A Kinesis CBOR body decoded as the Java SDK reads it: tag 1 holds epoch milliseconds (RFC 8949's holds
    seconds, which is what cbor2 assumes)."""
    return cbor2.loads(data, semantic_decoders={1: _from_epoch_ms})


def _from_epoch_ms(value: Any, _immutable: bool) -> dt.datetime:
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC)


def kinesis(url: str, *, region: str = "us-east-1", key_id: str = "x", secret: str = "x", **config: Any) -> Any:
    """A boto3 Kinesis client for a local endpoint: dummy credentials unless given, no retries (errors surface at
    once). ``config`` adds or overrides botocore Config options (``parameter_validation=False``, say)."""
    return boto3.client(
        "kinesis",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(**{"retries": {"max_attempts": 0}, "connect_timeout": 10, "read_timeout": 60, **config}),
    )


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key, made with the openssl command (for
    `serve --tls-cert/--tls-key`)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key
