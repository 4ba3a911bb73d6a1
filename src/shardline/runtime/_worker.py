"""An execution environment: one process that imports a handler once and runs invocations one at a time.

Started by ``functions.Worker``. It talks to its parent over two inherited pipe descriptors with frames

```
 u32 header length | header (JSON) | u32 body length | body (bytes)
```
Parent -> worker: header {"id", "deadline_ms"}, body = the event as JSON bytes.
Worker -> parent: first an init frame {"init_ms", "error"?}; then per invocation {"id", "error"?, "logs",
"duration_ms", "max_rss_kb"} with body = the handler's return value as JSON bytes.

User code's prints and logging are captured per invocation and returned with its result, so every line is
attributed to the request that wrote it.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import resource
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

_LEN = struct.Struct(">I")


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
    def __init__(self, sink: list[str]) -> None:
        self._sink = sink

    def write(self, s: str) -> int:
        self._sink.append(s)
        return len(s)

    def writable(self) -> bool:
        return True


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:]),
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
    fd_in, fd_out = int(sys.argv[1]), int(sys.argv[2])
    handler_name = os.environ["_HANDLER"]
    memory_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    if os.environ.get("SHARDLINE_ENFORCE_MEMORY", "1") == "1":
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    sink: list[str] = []
    capture = _Capture(sink)
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
    write_frame(fd_out, {"init_ms": (time.perf_counter() - t0) * 1000, "error": init_error, "logs": "".join(sink)})
    sink.clear()
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
        out: dict[str, Any] = {"id": request_id}
        result = b""
        start = time.perf_counter()
        fatal = False
        try:
            value = fn(json.loads(body), ctx)
            try:
                result = json.dumps(value).encode()
            except (TypeError, ValueError) as exc:
                out["error"] = {
                    "errorMessage": f"Unable to marshal response: {exc}",
                    "errorType": "Runtime.MarshalError",
                    "requestId": request_id,
                    "stackTrace": [],
                }
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
        if "error" in out:
            out["error"]["requestId"] = request_id
        out["duration_ms"] = (time.perf_counter() - start) * 1000
        out["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["logs"] = "".join(sink)
        sink.clear()
        write_frame(fd_out, out, result)
        if fatal:
            os._exit(1)


if __name__ == "__main__":
    main()
