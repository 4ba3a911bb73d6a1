"""A handler whose behaviour each invocation picks with ``event["action"]``: the worker-isolation cases.

Module state (``STATE``) lives as long as the execution environment, as it does on Lambda.
"""

import logging
import os
import sys
import time

log = logging.getLogger("behaviours")
STATE = {"invocations": 0, "loaded_at_ns": time.monotonic_ns()}
_hoard: list[bytearray] = []


def handler(event, context):
    STATE["invocations"] += 1
    action = event.get("action", "echo")
    if action == "echo":
        return {"pid": os.getpid(), "invocations": STATE["invocations"], "loaded_at_ns": STATE["loaded_at_ns"]}
    if action == "sleep":
        time.sleep(event["seconds"])
        return {"pid": os.getpid(), "slept": event["seconds"]}
    if action == "exit":
        os._exit(3)
    if action == "system_exit":
        sys.exit(7)
    if action == "hoard":
        # Grow in 16 MiB steps, the way a leak does, until the memory limit stops it.
        for _ in range(event["mib"] // 16):
            _hoard.append(bytearray(16 << 20))
        return {"pid": os.getpid(), "hoarded_mib": 16 * len(_hoard)}
    if action == "unserializable":
        return {"when": object()}
    if action == "raise":
        raise ValueError(f"bad input {event.get('value')!r}")
    if action == "context":
        first = context.get_remaining_time_in_millis()
        time.sleep(0.05)
        second = context.get_remaining_time_in_millis()
        return {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining": [first, second],
            "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
            "client_context": context.client_context,
        }
    if action == "env":
        return {name: os.environ.get(name) for name in event["names"]}
    if action == "talk":
        tag = event["tag"]
        print(f"stdout {tag}")
        print(f"stderr {tag}", file=sys.stderr)
        log.warning("logging %s", tag)
        context.log(f"context.log {tag}\n")
        return {"pid": os.getpid()}
    raise ValueError(f"unknown action {action!r}")
