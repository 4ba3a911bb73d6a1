"""`shardline serve` over a data directory where one stream's metadata is damaged: it starts, names the file and
the reason, answers for that stream with a clear error and keeps serving the others."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from _shardline import kinesis, shardline


def test_one_damaged_stream_does_not_stop_the_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    args = ("serve", "--port", "0", "--data-dir", str(data_dir))
    with shardline(*args) as running:
        k = kinesis(running.url)
        for name in ("good", "bad"):
            k.create_stream(StreamName=name, ShardCount=2)
            k.put_record(StreamName=name, Data=b"kept", PartitionKey="p")
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(timeout=15) == 0
    (bad,) = [p for p in data_dir.glob("streams/*/stream.json") if json.loads(p.read_bytes())["meta"]["name"] == "bad"]
    bad.write_bytes(bad.read_bytes().replace(b'"retention_hours":24', b'"retention_hours":94'))
    with (tmp_path / "serve.log").open("w") as log, shardline(*args, stderr=log) as running:
        k = kinesis(running.url)
        assert k.list_streams()["StreamNames"] == ["good"]
        k.put_record(StreamName="good", Data=b"more", PartitionKey="p")
        got = []
        for sh in k.list_shards(StreamName="good")["Shards"]:
            it = k.get_shard_iterator(StreamName="good", ShardId=sh["ShardId"], ShardIteratorType="TRIM_HORIZON")
            got += [r["Data"] for r in k.get_records(ShardIterator=it["ShardIterator"])["Records"]]
        assert got == [b"kept", b"more"]
        with pytest.raises(ClientError) as exc:
            k.describe_stream(StreamName="bad")
        err = exc.value.response
        assert err["Error"]["Code"] == "ResourceInUseException"
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert (
            f"its metadata file {bad.relative_to(data_dir)} is damaged (checksum mismatch)" in err["Error"]["Message"]
        )
    assert f"stream bad: metadata file {bad} is damaged (checksum mismatch)" in (tmp_path / "serve.log").read_text()
