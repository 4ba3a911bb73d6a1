// The AWS SDK for JavaScript v3 Kinesis client with its default settings (its HTTP/2 request handler) against the
// shardline serve whose URL is in SHARDLINE_ENDPOINT (run by tests/clients/test_node_sdk.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  AddTagsToStreamCommand,
  CreateStreamCommand,
  DeleteStreamCommand,
  DescribeStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  KinesisClient,
  ListShardsCommand,
  ListStreamsCommand,
  ListTagsForResourceCommand,
  ListTagsForStreamCommand,
  PutRecordCommand,
  PutRecordsCommand,
  RemoveTagsFromStreamCommand,
  ResourceNotFoundException,
  TagResourceCommand,
  waitUntilStreamExists,
  waitUntilStreamNotExists,
} from "@aws-sdk/client-kinesis";

const endpoint = process.env.SHARDLINE_ENDPOINT;
assert.ok(endpoint, "SHARDLINE_ENDPOINT is not set");
const credentials = {
  accessKeyId: process.env.SHARDLINE_KEY_ID ?? "x",
  secretAccessKey: process.env.SHARDLINE_SECRET ?? "x",
};
const client = new KinesisClient({ endpoint, region: "us-east-1", credentials });
const text = new TextEncoder();
const name = `node-${process.pid}`;

test("the default client uses its HTTP/2 handler", () => {
  assert.equal(client.config.requestHandler.constructor.name, "NodeHttp2Handler");
});

test("control plane: create, wait, describe, list, tags, delete", async () => {
  await client.send(new CreateStreamCommand({ StreamName: name, ShardCount: 2 }));
  const waited = await waitUntilStreamExists({ client, maxWaitTime: 60 }, { StreamName: name });
  assert.equal(waited.state, "SUCCESS");

  const summary = (await client.send(new DescribeStreamSummaryCommand({ StreamName: name })))
    .StreamDescriptionSummary;
  assert.equal(summary.StreamStatus, "ACTIVE");
  assert.equal(summary.OpenShardCount, 2);
  assert.ok(summary.StreamCreationTimestamp instanceof Date);
  const arn = summary.StreamARN;

  const listed = await client.send(new ListStreamsCommand({}));
  assert.ok(listed.StreamNames.includes(name));

  await client.send(new AddTagsToStreamCommand({ StreamName: name, Tags: { team: "data", env: "test" } }));
  await client.send(new RemoveTagsFromStreamCommand({ StreamName: name, TagKeys: ["env"] }));
  await client.send(new TagResourceCommand({ ResourceARN: arn, Tags: { owner: "node" } }));
  const tags = (await client.send(new ListTagsForStreamCommand({ StreamName: name }))).Tags;
  assert.deepEqual(
    tags.map((t) => [t.Key, t.Value]).sort(),
    [
      ["owner", "node"],
      ["team", "data"],
    ],
  );
  const byArn = (await client.send(new ListTagsForResourceCommand({ ResourceARN: arn }))).Tags;
  assert.equal(byArn.length, 2);

  await assert.rejects(
    client.send(new DescribeStreamCommand({ StreamName: `${name}-missing` })),
    (err) => err instanceof ResourceNotFoundException && err.$metadata.httpStatusCode === 400,
  );

  await client.send(new DeleteStreamCommand({ StreamName: name }));
  const gone = await waitUntilStreamNotExists({ client, maxWaitTime: 60 }, { StreamName: name });
  assert.equal(gone.state, "SUCCESS");
});

test("data plane: PutRecord, PutRecords, GetShardIterator, GetRecords", async () => {
  const stream = `${name}-data`;
  await client.send(new CreateStreamCommand({ StreamName: stream, ShardCount: 1 }));
  await waitUntilStreamExists({ client, maxWaitTime: 60 }, { StreamName: stream });

  const one = await client.send(
    new PutRecordCommand({ StreamName: stream, PartitionKey: "k", Data: text.encode("record-0") }),
  );
  assert.equal(one.ShardId, "shardId-000000000000");
  const batch = Array.from({ length: 200 }, (_, i) => ({
    PartitionKey: `k${i}`,
    Data: text.encode(`record-${i + 1}`.padEnd(2000, ".")),
  }));
  const many = await client.send(new PutRecordsCommand({ StreamName: stream, Records: batch }));
  assert.equal(many.FailedRecordCount, 0);
  assert.equal(many.Records.length, 200);

  const shards = (await client.send(new ListShardsCommand({ StreamName: stream }))).Shards;
  assert.equal(shards.length, 1);
  const iterator = (
    await client.send(
      new GetShardIteratorCommand({
        StreamName: stream,
        ShardId: shards[0].ShardId,
        ShardIteratorType: "AT_SEQUENCE_NUMBER",
        StartingSequenceNumber: one.SequenceNumber,
      }),
    )
  ).ShardIterator;
  const got = [];
  let next = iterator;
  while (got.length < 201) {
    const page = await client.send(new GetRecordsCommand({ ShardIterator: next, Limit: 150 }));
    got.push(...page.Records);
    next = page.NextShardIterator;
  }
  const decoded = got.map((r) => new TextDecoder().decode(r.Data).replace(/\.+$/, ""));
  assert.deepEqual(decoded, Array.from({ length: 201 }, (_, i) => `record-${i}`));
  assert.ok(got[0].ApproximateArrivalTimestamp instanceof Date);
  assert.equal(got[0].SequenceNumber, one.SequenceNumber);

  await client.send(new DeleteStreamCommand({ StreamName: stream }));
  client.destroy();
});
