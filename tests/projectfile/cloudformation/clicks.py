from __future__ import annotations

import base64
import json
import os
from typing import Any


def handler(event: dict[str, Any], context: Any) -> Any:
    out = os.environ.get("OBSERVED")
    for record in event["Records"]:
        body = json.loads(base64.b64decode(record["kinesis"]["data"]))
        if out:
            with open(out, "a") as f:
                seen = {
                    "id": body.get("id"),
                    "memory": context.memory_limit_in_mb,
                    "remaining_ms": context.get_remaining_time_in_millis(),
                    "function": context.function_name,
                    "stream": os.environ.get("STREAM"),
                }
                f.write(json.dumps(seen) + "\n")
        if body.get("poison"):
            raise ValueError(f"cannot count click {body.get('id')}")
    return None
