"""The pipeline's function: records every item it processed, one id per line, in the file PROCESSED_FILE names.

A poison item fails the whole batch before anything is written, so a batch is recorded entirely or not at all.
An item marked ``gate`` holds its batch until the file GATE_FILE names exists (it first creates GATE_FILE.reached),
which lets a test stop the runtime while that batch is certainly in flight.
"""

import base64
import json
import os
import time


def decode(event):
    return [json.loads(base64.b64decode(r["kinesis"]["data"])) for r in event["Records"]]


def record(items):
    line = "".join(f"{item['id']}\n" for item in items)
    fd = os.open(os.environ["PROCESSED_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def hold_at_gate(items):
    gate = os.environ.get("GATE_FILE")
    if not gate or not any(item.get("gate") for item in items):
        return
    open(gate + ".reached", "w").close()
    while not os.path.exists(gate):
        time.sleep(0.01)


def handler(event, context):
    items = decode(event)
    for item in items:
        if item.get("poison"):
            raise ValueError(f"cannot process item {item['id']}: {item['poison']}")
    hold_at_gate(items)
    record(items)
