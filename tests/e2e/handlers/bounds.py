"""A handler for the bounds of an execution environment: oversized output, spinning, writing past the runtime.

``event["action"]`` picks the behaviour; ``event["reached"]``, when given, is a file created once the invocation is
under way, so a test knows the worker is busy.
"""

import os
import struct
import sys
import time


def handler(event, context):
    if event.get("reached"):
        open(event["reached"], "w").close()
    action = event["action"]
    if action == "return":
        return "r" * event["chars"]
    if action == "print":
        print("p" * event["chars"])
        return {"pid": os.getpid()}
    if action == "raise":
        raise ValueError("e" * event["chars"])
    if action == "spin":
        while True:
            pass
    if action == "sleep":
        time.sleep(event["seconds"])
        return {"pid": os.getpid()}
    if action == "forge":
        # Announce a 100 MiB response on the runtime's own pipe, then never send it.
        header = b'{"id": "forged", "duration_ms": 0, "logs": ""}'
        os.write(int(sys.argv[2]), struct.pack(">I", len(header)) + header + struct.pack(">I", 100 << 20))
        time.sleep(600)
    if action == "pid":
        return {"pid": os.getpid()}
    raise ValueError(f"unknown action {action!r}")
