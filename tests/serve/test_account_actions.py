"""DescribeAccountSettings, UpdateAccountSettings and the resource-policy actions through boto3 and a real
`shardline serve`, kept across a restart of the server."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from _shardline import kinesis, shardline

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kinesis:GetRecords"}]})


def test_account_settings_and_resource_policies_over_the_wire(tmp_path: Path) -> None:
    args = ["serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "never"]
    with shardline(*args) as running:
        k = kinesis(running.url)
        assert k.describe_account_settings()["MinimumThroughputBillingCommitment"] == {"Status": "DISABLED"}
        on = k.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})
        c = on["MinimumThroughputBillingCommitment"]
        assert c["Status"] == "ENABLED"
        assert c["EarliestAllowedEndAt"] - c["StartedAt"] == dt.timedelta(hours=24)
        k.create_stream(StreamName="s", ShardCount=1)
        arn = k.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["StreamARN"]
        assert k.get_resource_policy(ResourceARN=arn)["Policy"] == "{}"
        k.put_resource_policy(ResourceARN=arn, Policy=POLICY)
        with pytest.raises(ClientError) as err:
            k.put_resource_policy(ResourceARN=arn, Policy="not json")
        assert err.value.response["Error"] == {
            "Code": "InvalidArgumentException",
            "Message": "Policy must be a JSON object.",
        }
        with pytest.raises(ClientError) as err:
            k.get_resource_policy(ResourceARN=arn.replace("stream/s", "stream/t"))
        assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
        running.proc.terminate()
        running.proc.wait(timeout=30)
    with shardline(*args) as running:
        k = kinesis(running.url)
        assert k.describe_account_settings()["MinimumThroughputBillingCommitment"] == c
        assert k.get_resource_policy(ResourceARN=arn)["Policy"] == POLICY
        k.delete_resource_policy(ResourceARN=arn)
        with pytest.raises(ClientError) as err:
            k.delete_resource_policy(ResourceARN=arn)
        assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
