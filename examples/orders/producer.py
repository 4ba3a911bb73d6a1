"""Puts realistic orders on the `orders` stream through the Kinesis API (boto3), one of them in a legacy format.

Usage: python producer.py ENDPOINT_URL [COUNT]
"""

import json
import random
import sys

import boto3


def main() -> None:
    endpoint = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    kinesis = boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    rng = random.Random(42)
    legacy_at = count // 2
    records = []
    for i in range(count):
        customer = f"customer-{rng.randrange(200)}"
        if i == legacy_at:
            data = f"{i};{customer};12.50".encode()  # an old producer's CSV line: the function cannot parse it
        else:
            data = json.dumps(
                {"order_id": i, "customer": customer, "amount_cents": rng.randrange(100, 50_000)}
            ).encode()
        records.append({"Data": data, "PartitionKey": customer})
    for start in range(0, count, 500):
        out = kinesis.put_records(StreamName="orders", Records=records[start : start + 500])
        if out["FailedRecordCount"]:
            sys.exit(f"{out['FailedRecordCount']} records were not accepted")
    print(f"put {count} orders (order {legacy_at} in the legacy CSV format)")


if __name__ == "__main__":
    main()
