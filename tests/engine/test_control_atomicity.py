"""Control-plane changes are all or nothing: an action whose metadata cannot be saved fails and leaves the stream
exactly as it was (in memory and on disk), and a reshard whose children cannot be opened, or whose new map cannot
be saved, changes nothing and is carried out by a later tick.

The faults are real where they can be: file descriptors run out through RLIMIT_NOFILE, and processes die by
SIGKILL. A full disk cannot be made here, so ENOSPC (and EIO) come from the one low-level write seam every file
write of the data directory goes through (os.write, os.writev, os.pwrite), as in test_disk_full.py.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shardline import Engine, ManualClock
from shardline.errors import ServiceUnavailable
from shardline.models import StreamStatus

from ._kit import MAX_KEY, Kit
from .test_resharding import assert_lineage_is_valid

S0, S1 = "shardId-000000000000", "shardId-000000000001"
POLICY = '{"Version":"2012-10-17","Statement":[]}'
CHANNEL_ROLE = "arn:aws:iam::123456789012:role/channel"
CHANNEL_S3 = {"DataFreshnessInSeconds": 300, "StorageConfiguration": {"BucketARN": "arn:aws:s3:::bucket"}}


class Faults:
    """Makes every write to a file under ``root`` fail with ``errno`` while ``error`` is set."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = str(root.resolve())
        self.error: int | None = None
        self.refused = 0
        for name in ("write", "writev", "pwrite"):
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))

    def _wrap(self, real: Any) -> Any:
        def call(fd: int, *args: Any) -> Any:
            if self.error is not None and os.readlink(f"/proc/self/fd/{fd}").startswith(self.root):
                self.refused += 1
                raise OSError(self.error, os.strerror(self.error))
            return real(fd, *args)

        return call


@pytest.fixture
def faults(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> Faults:
    return Faults(kit.data_dir, monkeypatch)


def _limit_leaving(spare: int) -> int:
    """The RLIMIT_NOFILE under which exactly ``spare`` more descriptors can be opened (a new one takes the lowest
    free number, which must be below the limit)."""
    listing = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        used = {int(name) for name in os.listdir(listing)} - {listing}
    finally:
        os.close(listing)
    fd = free = 0
    while fd in used or free < spare:
        free += fd not in used
        fd += 1
    return fd


@contextmanager
def descriptors_left(spare: int) -> Iterator[None]:
    """Only ``spare`` more file descriptors can be opened (RLIMIT_NOFILE) until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (_limit_leaving(spare), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _observe(kit: Kit, engine: Engine) -> dict[str, Any]:
    """What the API answers about the stream ``s`` and the account."""
    names = (await engine.list_streams()).stream_names
    out: dict[str, Any] = {
        "streams": await engine.list_streams(),
        "limits": await engine.describe_limits(),
        "account": await engine.describe_account_settings(),
        "channels": await engine.list_channels(),
    }
    if "s" in names:
        arn = engine.stream_arn("s")
        out["describe"] = await engine.describe_stream("s")
        out["summary"] = await engine.describe_stream_summary("s")
        out["tags"] = await engine.list_tags_for_stream(stream_name="s")
        out["consumers"] = await engine.list_stream_consumers(arn)
        out["policy"] = await engine.get_resource_policy(arn)
        if out["describe"].stream_status in (StreamStatus.ACTIVE, StreamStatus.UPDATING):
            out["shards"] = await kit.all_shards(engine, "s")
    return out


Step = Callable[[Engine], Awaitable[object]]


@dataclass(frozen=True)
class Action:
    name: str
    call: Step
    setup: tuple[Step, ...] = ()

    def __str__(self) -> str:
        return self.name


def _arn(e: Engine) -> str:
    return e.stream_arn("s")


async def _on_demand(e: Engine) -> None:
    await e.update_stream_mode(_arn(e), "ON_DEMAND")


async def _create_channel(e: Engine) -> None:
    await e.create_channel("c", CHANNEL_ROLE, [(_arn(e), {"RecordFormatType": "JSON"})], s3=CHANNEL_S3)


async def _channel_arn(e: Engine) -> str:
    (channel,), _token = await e.list_channels()
    return channel.channel_arn


async def _update_channel(e: Engine) -> None:
    await e.update_channel(await _channel_arn(e), s3={"DataFreshnessInSeconds": 60})


async def _delete_channel(e: Engine) -> None:
    await e.delete_channel(await _channel_arn(e))


ACTIONS = [
    Action("AddTagsToStream", lambda e: e.add_tags_to_stream({"team": "a"}, stream_name="s")),
    Action(
        "RemoveTagsFromStream",
        lambda e: e.remove_tags_from_stream(["team"], stream_name="s"),
        (lambda e: e.add_tags_to_stream({"team": "a", "keep": "b"}, stream_name="s"),),
    ),
    Action("IncreaseStreamRetentionPeriod", lambda e: e.increase_stream_retention_period(48, stream_name="s")),
    Action(
        "DecreaseStreamRetentionPeriod",
        lambda e: e.decrease_stream_retention_period(24, stream_name="s"),
        (lambda e: e.increase_stream_retention_period(72, stream_name="s"),),
    ),
    Action("StartStreamEncryption", lambda e: e.start_stream_encryption("KMS", "alias/aws/kinesis", stream_name="s")),
    Action(
        "StopStreamEncryption",
        lambda e: e.stop_stream_encryption("KMS", "alias/aws/kinesis", stream_name="s"),
        (lambda e: e.start_stream_encryption("KMS", "alias/aws/kinesis", stream_name="s"),),
    ),
    Action("UpdateStreamMode", _on_demand),
    Action("EnableEnhancedMonitoring", lambda e: e.enable_enhanced_monitoring(["ALL"], stream_name="s")),
    Action(
        "DisableEnhancedMonitoring",
        lambda e: e.disable_enhanced_monitoring(["IncomingBytes"], stream_name="s"),
        (lambda e: e.enable_enhanced_monitoring(["ALL"], stream_name="s"),),
    ),
    Action("RegisterStreamConsumer", lambda e: e.register_stream_consumer(_arn(e), "c1")),
    Action(
        "DeregisterStreamConsumer",
        lambda e: e.deregister_stream_consumer(stream_arn=_arn(e), consumer_name="c1"),
        (lambda e: e.register_stream_consumer(_arn(e), "c1"),),
    ),
    Action("UpdateShardCount", lambda e: e.update_shard_count(target_shard_count=3, stream_name="s")),
    Action("SplitShard", lambda e: e.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key="99")),
    Action("MergeShards", lambda e: e.merge_shards(stream_name="s", shard_to_merge=S0, adjacent_shard_to_merge=S1)),
    Action("DeleteStream", lambda e: e.delete_stream("s")),
    Action("UpdateMaxRecordSize", lambda e: e.update_max_record_size(2048, stream_arn=_arn(e))),
    Action(
        "UpdateStreamWarmThroughput",
        lambda e: e.update_stream_warm_throughput(100, stream_name="s"),
        (lambda e: e.update_account_settings("ENABLED"), _on_demand),
    ),
    Action(
        "UpdateStreamRecordDistributionStrategy",
        lambda e: e.update_stream_record_distribution_strategy(_arn(e), "AUTO"),
        (_on_demand,),
    ),
    Action("PutResourcePolicy", lambda e: e.put_resource_policy(_arn(e), POLICY)),
    Action(
        "DeleteResourcePolicy",
        lambda e: e.delete_resource_policy(_arn(e)),
        (lambda e: e.put_resource_policy(_arn(e), POLICY),),
    ),
    Action("UpdateAccountSettings", lambda e: e.update_account_settings("ENABLED")),
    Action("CreateChannel", _create_channel, (_on_demand,)),
    Action("UpdateChannel", _update_channel, (_on_demand, _create_channel)),
    Action("DeleteChannel", _delete_channel, (_on_demand, _create_channel)),
]


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
@pytest.mark.parametrize("action", ACTIONS, ids=str)
async def test_an_action_whose_metadata_cannot_be_saved_changes_nothing(
    kit: Kit, faults: Faults, action: Action, error: int
) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 2, active=True)
    for step in action.setup:
        await step(engine)
    before = await _observe(kit, engine)

    faults.error = error
    expected: type[Exception] = ServiceUnavailable if error == errno.ENOSPC else OSError
    with pytest.raises(expected) as caught:
        await action.call(engine)
    if error != errno.ENOSPC:
        assert isinstance(caught.value, OSError) and caught.value.errno == error
    assert faults.refused
    assert await _observe(kit, engine) == before
    faults.error = None
    assert await _observe(kit, engine) == before  # (and still after the fault is gone)

    engine = await kit.reopen(engine)
    assert await _observe(kit, engine) == before

    # Without the fault the same call goes through, and what it changed is saved.
    await action.call(engine)
    after = await _observe(kit, engine)
    assert after != before
    engine = await kit.reopen(engine)
    assert await _observe(kit, engine) == after


async def test_puts_and_reads_go_on_after_a_failed_change(kit: Kit, faults: Faults) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 2, active=True)
    faults.error = errno.ENOSPC
    with pytest.raises(ServiceUnavailable):
        await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key="99")
    faults.error = None
    acked = [await engine.put_record(stream_name="s", data=b"%d" % i, partition_key=f"k{i}") for i in range(20)]
    assert {r.shard_id for r in acked} <= {S0, S1}
    stored = [r for sh in (S0, S1) for r in await kit.read_all(engine, "s", sh)]
    assert sorted(r.sequence_number for r in stored) == sorted(r.sequence_number for r in acked)


# ----------------------------------------------------------------- a reshard carried out at a tick
RESHARDS: dict[str, Step] = {
    "split": lambda e: e.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(1 << 126)),
    "merge": lambda e: e.merge_shards(stream_name="s", shard_to_merge=S0, adjacent_shard_to_merge=S1),
    # 2 -> 3 shards: splits, then merges of the intermediate children
    "scale": lambda e: e.update_shard_count(target_shard_count=3, stream_name="s"),
}
DELAY_S = 30.0


async def _put_spread(engine: Engine, n: int, tag: str) -> list[tuple[str, str, bytes]]:
    """``n`` records spread over the whole hash key range: (shard id, sequence number, data)."""
    out = []
    for i in range(n):
        data = f"{tag}-{i}".encode()
        key = str(MAX_KEY * i // max(n - 1, 1))
        res = await engine.put_record(stream_name="s", data=data, partition_key="k", explicit_hash_key=key)
        out.append((res.shard_id, res.sequence_number, data))
    return out


async def _stored(kit: Kit, engine: Engine) -> list[tuple[str, str, bytes]]:
    out = []
    for shard in await kit.all_shards(engine, "s"):
        for rec in await kit.read_all(engine, "s", shard.shard_id):
            out.append((shard.shard_id, rec.sequence_number, rec.data))
    return sorted(out)


def _routes_to_open_shards(acked: list[tuple[str, str, bytes]], shards: list[Any]) -> None:
    for i, (shard_id, _seq, _data) in enumerate(acked):
        key = MAX_KEY * i // max(len(acked) - 1, 1)
        assert shard_id == Kit.shard_for_key(shards, key)


def _reshard_logs(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    failed = [r for r in caplog.records if "cannot carry out its reshard" in r.getMessage()]
    done = [r for r in caplog.records if "reshard carried out after all" in r.getMessage()]
    return len(failed), len(done)


@pytest.mark.parametrize("fsync", ["never", "always"])
@pytest.mark.parametrize("op", list(RESHARDS))
async def test_a_reshard_that_cannot_open_its_children_waits_and_completes_later(
    kit: Kit, caplog: pytest.LogCaptureFixture, op: str, fsync: str
) -> None:
    """Descriptors run out at every point of carrying out the reshard in turn (the first child's log, the next
    one, ..., the metadata write): each attempt changes nothing, puts and reads go on against the old map, and once
    enough descriptors are left the reshard completes."""
    caplog.set_level(logging.INFO, logger="shardline.engine")
    engine = await kit.open(updating_delay_s=DELAY_S, fsync=fsync)
    await engine.create_stream("s", 2, active=True)
    acked = await _put_spread(engine, 8, "before")
    await RESHARDS[op](engine)
    accepted = await _observe(kit, engine)
    assert accepted["describe"].stream_status is StreamStatus.UPDATING
    kit.clock.advance(DELAY_S)

    failures = 0
    for spare in range(64):
        with descriptors_left(spare):
            described = await engine.describe_stream("s")  # (the request's tick tries the reshard)
        if described.stream_status is StreamStatus.ACTIVE:
            break
        failures += 1
        assert await _observe(kit, engine) == accepted
        batch = await _put_spread(engine, 4, f"try{spare}")
        _routes_to_open_shards(batch, accepted["shards"])
        acked += batch
        assert await _stored(kit, engine) == sorted(acked)
        kit.clock.advance(1)  # (a failed reshard is tried again a second later)
    else:
        pytest.fail("the reshard never went through")
    assert failures
    assert _reshard_logs(caplog) == (1, 1)  # its failure is logged once, and its end

    shards = await kit.all_shards(engine, "s")
    assert shards != accepted["shards"]
    assert_lineage_is_valid(shards)
    kit.assert_covers_key_space(shards)
    assert len(kit.open_shards(shards)) == {"split": 3, "merge": 1, "scale": 3}[op]
    after = await _put_spread(engine, 8, "after")
    _routes_to_open_shards(after, shards)
    acked += after
    assert await _stored(kit, engine) == sorted(acked)

    engine = await kit.reopen(engine)
    assert await kit.all_shards(engine, "s") == shards
    assert await _stored(kit, engine) == sorted(acked)


@pytest.mark.parametrize("staged", [True, False], ids=["parents-staged", "parents-written"])
async def test_a_reshard_whose_map_cannot_be_saved_leaves_the_old_map_on_disk(
    kit: Kit, faults: Faults, caplog: pytest.LogCaptureFixture, staged: bool
) -> None:
    """The disk fills while the parents still hold staged records (writing them fails) or after a checkpoint wrote
    them (the children's logs are opened, then the metadata write fails)."""
    engine = await kit.open(updating_delay_s=DELAY_S, journal_checkpoint_ms=3_600_000)
    await engine.create_stream("s", 2, active=True)
    acked = await _put_spread(engine, 8, "before")
    if not staged:
        await engine.checkpoint()
    await RESHARDS["split"](engine)
    accepted = await _observe(kit, engine)
    accepted_ms = kit.clock.now_ms()
    kit.clock.advance(DELAY_S)

    faults.error = errno.ENOSPC
    assert (await engine.describe_stream("s")).stream_status is StreamStatus.UPDATING
    assert faults.refused
    faults.error = None
    assert await _observe(kit, engine) == accepted
    assert _reshard_logs(caplog) == (1, 0)
    acked += await _put_spread(engine, 4, "during")
    assert await _stored(kit, engine) == sorted(acked)

    # On disk: the old map and the pending split (seen by an engine whose clock is back when it was accepted).
    await engine.close()
    early = Engine(kit.settings(updating_delay_s=DELAY_S), clock=ManualClock(accepted_ms))
    await early.open()
    kit.opened.append(early)
    assert await _observe(kit, early) == accepted
    assert await _stored(kit, early) == sorted(acked)
    await early.close()

    # Opened now, the split is carried out.
    engine = await kit.open(updating_delay_s=DELAY_S)
    shards = await kit.all_shards(engine, "s")
    assert len(kit.open_shards(shards)) == 3
    assert_lineage_is_valid(shards)
    assert await _stored(kit, engine) == sorted(acked)


# ----------------------------------------------------------------- a crash while a reshard is carried out
_CRASHER = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys
    from pathlib import Path

    from shardline import Engine
    from shardline.storage.catalog import Catalog
    from shardline.storage.log import ShardLog

    data_dir, point = Path(sys.argv[1]), sys.argv[2]
    MAX_KEY = (1 << 128) - 1

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    real_save, real_seal = Catalog.save_stream, ShardLog.seal

    def save_stream(self, stream_id, meta):
        carried_out = meta["status"] == "ACTIVE" and not meta["pending"] and len(meta["shards"]) > 2
        if carried_out and point == "before-save":
            die()
        real_save(self, stream_id, meta)
        if carried_out and point == "after-save":
            die()

    def seal(self):
        if point == "mid-seal":
            die()
        real_seal(self)

    async def main():
        engine = Engine(data_dir=data_dir, fsync="always", journal_checkpoint_ms=3_600_000)
        await engine.open()
        await engine.create_stream("s", 2, active=True)
        for i in range(12):
            key = str(MAX_KEY * i // 11)
            res = await engine.put_record(stream_name="s", data=b"r%d" % i, partition_key="k", explicit_hash_key=key)
            print(json.dumps([res.shard_id, res.sequence_number, "r%d" % i]), flush=True)
        Catalog.save_stream, ShardLog.seal = save_stream, seal
        await engine.update_shard_count(target_shard_count=3, stream_name="s")
        print("done", flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("point", ["before-save", "after-save", "mid-seal"])
async def test_a_crash_while_a_reshard_is_carried_out_reopens_consistent(kit: Kit, point: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHER, str(kit.data_dir), point],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    lines = proc.stdout.splitlines()
    assert "done" not in lines
    acked = sorted((shard, seq, data.encode()) for shard, seq, data in map(json.loads, lines))
    assert len(acked) == 12

    kit.clock.advance(ms=time.time_ns() // 1_000_000 - kit.clock.now_ms())  # (the writer ran on the real clock)
    engine = await kit.open()
    shards = await kit.all_shards(engine, "s")
    assert_lineage_is_valid(shards)
    kit.assert_covers_key_space(shards)
    # Before the metadata write the reshard was still pending: the reopened engine carries it out at once.
    assert len(kit.open_shards(shards)) == 3
    assert await _stored(kit, engine) == acked
    more = await _put_spread(engine, 8, "after")
    _routes_to_open_shards(more, shards)
    assert await _stored(kit, engine) == sorted(acked + more)
    engine = await kit.reopen(engine)
    assert await kit.all_shards(engine, "s") == shards
    assert await _stored(kit, engine) == sorted(acked + more)


# ----------------------------------------------------------------- retention expiring a closed shard
async def test_retention_that_cannot_save_keeps_the_closed_shard_for_its_next_pass(kit: Kit, faults: Faults) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 1, active=True)
    for i in range(5):
        await engine.put_record(stream_name="s", data=b"%d" % i, partition_key="k", explicit_hash_key="0")
    await RESHARDS["split"](engine)
    parent_dir = next((kit.data_dir / "streams").iterdir()) / "shards" / f"{0:012d}"
    assert parent_dir.is_dir()
    kit.clock.advance(25 * 3600)

    faults.error = errno.ENOSPC
    with pytest.raises(ServiceUnavailable):
        engine.enforce_retention()
    faults.error = None
    assert parent_dir.is_dir()  # the metadata could not say it expired: its files stay
    engine = await kit.reopen(engine)
    assert parent_dir.is_dir()

    assert engine.enforce_retention() == 5  # the next pass removes the parent's records, all of them
    assert not parent_dir.exists()
    ids = [s.shard_id for s in await kit.all_shards(engine, "s")]
    assert ids == ["shardId-000000000001", "shardId-000000000002"]

    # Files of an expired shard left behind (a crash between the metadata write and their removal) go at open.
    parent_dir.mkdir(parents=True)
    (parent_dir / f"{0:020d}.log").write_bytes(b"")
    engine = await kit.reopen(engine)
    assert not parent_dir.exists()
    assert [s.shard_id for s in await kit.all_shards(engine, "s")] == ids
