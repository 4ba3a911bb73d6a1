"""A record processor for the KCL's MultiLangDaemon (amazon_kclpy): appends one JSON line per record it is given to
the file named by KCL_RECORDS_FILE, and checkpoints after each batch and at the end of its shard."""

from __future__ import annotations

import json
import os
from typing import Any

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor


class RecordLogger(processor.RecordProcessorBase):  # type: ignore[misc]
    def __init__(self, path: str) -> None:
        self.path = path
        self.shard = ""

    def initialize(self, initialize_input: Any) -> None:
        self.shard = initialize_input.shard_id

    def process_records(self, process_records_input: Any) -> None:
        lines = "".join(
            json.dumps(
                {
                    "shard": self.shard,
                    "sequence": r.sequence_number,
                    "key": r.partition_key,
                    "data": r.binary_data.decode("latin-1"),
                }
            )
            + "\n"
            for r in process_records_input.records
        )
        if lines:
            # One O_APPEND write per batch: the processors of several shards share the file.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                data = lines.encode()
                while data:
                    data = data[os.write(fd, data) :]
            finally:
                os.close(fd)
        process_records_input.checkpointer.checkpoint()

    def lease_lost(self, lease_lost_input: Any) -> None:
        pass

    def shard_ended(self, shard_ended_input: Any) -> None:
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        shutdown_requested_input.checkpointer.checkpoint()


if __name__ == "__main__":
    kcl.KCLProcess(RecordLogger(os.environ["KCL_RECORDS_FILE"])).run()
