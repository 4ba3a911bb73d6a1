from __future__ import annotations

import base64
import json
import os
from typing import Any


def handler(event: dict[str, Any], context: Any) -> Any:
    failures = []
    for record in event["Records"]:
        body = json.loads(base64.b64decode(record["kinesis"]["data"]))
        out = os.environ.get("OBSERVED")
        if out:
            with open(out, "a") as f:
                f.write(
                    json.dumps(
                        {
                            "id": body.get("id"),
                            "memory": context.memory_limit_in_mb,
                            "remaining_ms": context.get_remaining_time_in_millis(),
                            "function": context.function_name,
                            "stage": os.environ.get("STAGE"),
                            "region": os.environ.get("REGION"),
                            "table": os.environ.get("TABLE"),
                            "log_level": os.environ.get("LOG_LEVEL"),
                            "batch": len(event["Records"]),
                        }
                    )
                    + "\n"
                )
        if body.get("poison"):
            failures.append({"itemIdentifier": record["kinesis"]["sequenceNumber"]})
    return {"batchItemFailures": failures}
