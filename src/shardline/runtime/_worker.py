"""An execution environment: one process that imports a handler once and runs invocations one at a time.

Started by ``functions.Worker``. It talks to its parent over two inherited pipe descriptors with frames

```
 u32 header length | header (JSON) | u32 body length | body (bytes)
```
Parent -> worker: header {"id", "deadline_ms", "timeout_ms", optional "lease_epoch"}, body = the event as JSON bytes.
Worker -> parent: first an init frame {"init_ms", "error"?}; then per invocation {"id", "error"?, "logs",
"duration_ms", "max_rss_kb"} with body = the handler's return value as JSON bytes.

User code's prints and logging are captured per invocation and returned with its result, so every line is
attributed to the request that wrote it.

What the worker sends is bounded, so the parent's memory does not follow user code's: a body is at most
MAX_RESPONSE_BYTES (a larger return value is Function.ResponseSizeTooLarge, as on Lambda) and a header at most
MAX_HEADER_BYTES (the captured log output of one invocation is cut at MAX_LOG_CHARS, error texts at
MAX_ERROR_CHARS). The parent refuses a frame over those bounds without reading it.

A worker does not outlive its parent: on Linux the kernel kills it when the parent dies (PR_SET_PDEATHSIG), and a
watchdog thread checks the parent too (everywhere) and ends an invocation that runs WATCHDOG_GRACE_S past its
timeout, in case the parent is no longer there to enforce it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import io
import json
import logging
import os
import resource
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

_LEN = struct.Struct(">I")

# AWS quirk: Lambda's synchronous response limit is "6 MB" but the check is against 6 MiB + 100 bytes; a larger
# response fails the invocation with Function.ResponseSizeTooLarge (a function error: the batch is retried).
MAX_RESPONSE_BYTES = 6_291_556
RESPONSE_TOO_LARGE = {
    "errorType": "Function.ResponseSizeTooLarge",
    "errorMessage": f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
}
# CloudWatch Logs keeps at most 256 KiB in one event; one invocation's log output is cut there too.
MAX_LOG_CHARS = 256 * 1024
MAX_ERROR_CHARS = 16 * 1024  # errorMessage, and the stackTrace as a whole
# A header's text fields hold at most MAX_LOG_CHARS + 2 * MAX_ERROR_CHARS characters; JSON (ASCII-escaped) spends
# at most 12 bytes on one (an astral character becomes two \uXXXX escapes); the rest of the header is small.
MAX_HEADER_BYTES = 12 * (MAX_LOG_CHARS + 2 * MAX_ERROR_CHARS) + 64 * 1024
WATCHDOG_GRACE_S = 2.0  # the parent kills a timed-out worker first; this is for when the parent cannot
WATCHDOG_POLL_S = 0.25
EXIT_ORPHANED = 125
EXIT_OVERRAN = 124  # as timeout(1)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _read_exact(fd: int, n: int) -> bytes:
    chunks: list[bytes] = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> tuple[dict[str, Any], bytes]:
    (hlen,) = _LEN.unpack(_read_exact(fd, 4))
    header = json.loads(_read_exact(fd, hlen))
    (blen,) = _LEN.unpack(_read_exact(fd, 4))
    return header, _read_exact(fd, blen)


def write_frame(fd: int, header: dict[str, Any], body: bytes = b"") -> None:
    h = json.dumps(header).encode()
    data = memoryview(_LEN.pack(len(h)) + h + _LEN.pack(len(body)) + body)
    while data:
        n = os.write(fd, data)
        data = data[n:]


class Identity:
    cognito_identity_id = None
    cognito_identity_pool_id = None


class LambdaContext:
    """The context object a Lambda Python handler receives (in a worker and in-process alike)."""

    def __init__(
        self,
        request_id: str,
        deadline_ms: int,
        *,
        function_name: str,
        function_arn: str,
        memory_mb: str,
        log_group_name: str,
        log_stream_name: str,
        function_version: str = "$LATEST",
    ) -> None:
        self.aws_request_id = request_id
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = memory_mb  # a str, as the real runtime reads it from its environment
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.identity = Identity()
        self.client_context = None
        self.tenant_id = None
        # shardline's own: the shard lease's epoch when `shardline run` shares shards between workers (None
        # otherwise). It goes up on every change of the shard's owner, so a sink can refuse writes that carry an
        # epoch lower than one it has already seen for that shard (a fencing token).
        self.lease_epoch: int | None = None
        self._deadline_ms = deadline_ms

    @classmethod
    def from_environment(cls, request_id: str, deadline_ms: int) -> LambdaContext:
        env = os.environ
        return cls(
            request_id,
            deadline_ms,
            function_name=env["AWS_LAMBDA_FUNCTION_NAME"],
            function_version=env["AWS_LAMBDA_FUNCTION_VERSION"],
            function_arn=env["SHARDLINE_FUNCTION_ARN"],
            memory_mb=env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
            log_group_name=env["AWS_LAMBDA_LOG_GROUP_NAME"],
            log_stream_name=env["AWS_LAMBDA_LOG_STREAM_NAME"],
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - time.time_ns() // 1_000_000)

    def log(self, msg: str) -> None:
        sys.stdout.write(msg)


class _Capture(io.TextIOBase):
    """One invocation's log output, kept up to MAX_LOG_CHARS; what is written past that is only counted."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._kept = 0
        self._dropped = 0

    def write(self, s: str) -> int:
        room = MAX_LOG_CHARS - self._kept
        if len(s) <= room:
            self._parts.append(s)
            self._kept += len(s)
        else:
            if room > 0:
                self._parts.append(s[:room])
                self._kept = MAX_LOG_CHARS
            self._dropped += len(s) - max(room, 0)
        return len(s)

    def writable(self) -> bool:
        return True

    def take(self) -> str:
        """The output so far (with a note of what was cut), and start afresh."""
        text = "".join(self._parts)
        if self._dropped:
            if not text.endswith("\n"):
                text += "\n"
            text += (
                f"[log output truncated: {self._dropped} more characters were written than the "
                f"{MAX_LOG_CHARS} one invocation keeps]\n"
            )
        self._parts.clear()
        self._kept = self._dropped = 0
        return text


class _Watchdog(threading.Thread):
    """Ends the worker when its parent is gone, or when an invocation runs past its deadline (a tight loop in user
    code still lets this thread run: the interpreter switches threads every few milliseconds)."""

    def __init__(self, parent_pid: int) -> None:
        super().__init__(name="shardline-watchdog", daemon=True)
        self._parent_pid = parent_pid
        self._deadline: float | None = None  # time.monotonic()

    def arm(self, timeout_s: float) -> None:
        self._deadline = time.monotonic() + timeout_s + WATCHDOG_GRACE_S

    def disarm(self) -> None:
        self._deadline = None

    def run(self) -> None:
        while True:
            time.sleep(WATCHDOG_POLL_S)
            if os.getppid() != self._parent_pid:
                os._exit(EXIT_ORPHANED)
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                os._exit(EXIT_OVERRAN)


def _die_with_parent(parent_pid: int) -> _Watchdog:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # without it, the watchdog notices a little later
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the kernel was told
        os._exit(EXIT_ORPHANED)
    # A small stack: with the memory limit enforced, a thread's stack counts against memorySize.
    previous = threading.stack_size(256 * 1024)
    try:
        watchdog = _Watchdog(parent_pid)
        watchdog.start()
    finally:
        threading.stack_size(previous)
    return watchdog


def _clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} characters truncated]"


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    trace: list[str] = []
    room = MAX_ERROR_CHARS
    for frame in traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:]):
        if len(frame) > room:
            break
        trace.append(frame)
        room -= len(frame)
    return {
        "errorMessage": _clip(str(exc)),
        "errorType": _clip(error_type or type(exc).__name__, 256),
        "requestId": "",
        "stackTrace": trace,
    }


def _load(handler: str) -> Callable[..., Any]:
    module_name, _, func_name = handler.rpartition(".")
    if not module_name:
        raise ValueError(f"Bad handler '{handler}': not enough values to unpack (expected 2, got 1)")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    fn = getattr(module, func_name, None)
    if fn is None:
        raise _InitError("Runtime.HandlerNotFound", f"Handler '{func_name}' missing on module '{module_name}'")
    return fn  # type: ignore[no-any-return]


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def main() -> None:
    fd_in, fd_out, parent_pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    watchdog = _die_with_parent(parent_pid)
    handler_name = os.environ["_HANDLER"]
    memory_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    if os.environ.get("SHARDLINE_ENFORCE_MEMORY", "1") == "1":
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    capture = _Capture()
    sys.stdout = capture
    sys.stderr = capture
    request_filter = _RequestIdFilter()
    handler = logging.StreamHandler(capture)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n", "%Y-%m-%dT%H:%M:%S"
        )
    )
    handler.terminator = ""
    handler.addFilter(request_filter)
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO"))

    t0 = time.perf_counter()
    fn: Callable[..., Any] | None = None
    init_error: dict[str, Any] | None = None
    try:
        fn = _load(handler_name)
    except _InitError as exc:
        init_error = _error(exc, exc.error_type)
    except MemoryError as exc:
        init_error = _error(exc, "Runtime.OutOfMemory")
    except BaseException as exc:  # user code failed at import time
        init_error = _error(exc, "Runtime.UserCodeSyntaxError" if isinstance(exc, SyntaxError) else None)
    write_frame(fd_out, {"init_ms": (time.perf_counter() - t0) * 1000, "error": init_error, "logs": capture.take()})
    if init_error is not None:
        return

    assert fn is not None
    while True:
        try:
            header, body = read_frame(fd_in)
        except EOFError:
            return
        request_id = header["id"]
        request_filter.request_id = request_id
        ctx = LambdaContext.from_environment(request_id, header["deadline_ms"])
        ctx.lease_epoch = header.get("lease_epoch")
        out: dict[str, Any] = {"id": request_id}
        result = b""
        start = time.perf_counter()
        fatal = False
        watchdog.arm(header["timeout_ms"] / 1000)
        try:
            value = fn(json.loads(body), ctx)
            try:
                result = json.dumps(value).encode()
            except (TypeError, ValueError) as exc:
                out["error"] = {
                    "errorMessage": _clip(f"Unable to marshal response: {exc}"),
                    "errorType": "Runtime.MarshalError",
                    "requestId": request_id,
                    "stackTrace": [],
                }
            if len(result) > MAX_RESPONSE_BYTES:
                result = b""
                out["error"] = {**RESPONSE_TOO_LARGE, "requestId": request_id, "stackTrace": []}
        except MemoryError as exc:
            out["error"] = _error(exc, "Runtime.OutOfMemory")
            out["error"]["errorMessage"] = f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
            fatal = True
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            out["error"] = _error(exc, "Runtime.ExitError")
            out["error"]["errorMessage"] = (
                f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}"
            )
            fatal = True
        except BaseException as exc:
            out["error"] = _error(exc)
            traceback.print_exc(file=capture)
        watchdog.disarm()
        if "error" in out:
            out["error"]["requestId"] = request_id
        out["duration_ms"] = (time.perf_counter() - start) * 1000
        out["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["logs"] = capture.take()
        write_frame(fd_out, out, result)
        if fatal:
            os._exit(1)


if __name__ == "__main__":
    main()
