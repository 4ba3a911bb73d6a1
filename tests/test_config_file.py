"""The checks shared by every section of shardline.yml: one wording for a wrong key, number or switch, whether the
project loader or the alarm parser finds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardline._config import ConfigError, ConfigFile
from shardline.metrics.alarms import AlarmConfigError, parse_alarms
from shardline.runtime.config import load_config
from shardline.sources.config import parse_sources

PATH = Path("/srv/app/shardline.yml")
CF = ConfigFile(PATH)


def message(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(exc.value).removeprefix(f"{PATH}: ")


def test_a_failure_names_the_file_and_the_key_path() -> None:
    assert str(CF.fail("streams.s", "is wrong")) == f"{PATH}: streams.s: is wrong"
    assert str(CF.fail("", "must be a mapping")) == f"{PATH}: must be a mapping"
    assert type(ConfigFile(PATH, AlarmConfigError).fail("alarms", "x")) is AlarmConfigError


def test_an_unknown_key_gets_the_closest_known_one_or_the_list() -> None:
    with pytest.raises(ConfigError) as err:
        CF.check_keys("streams.s", {"shard": 1}, {"shards", "mode"})
    assert message(err) == "streams.s.shard: unknown key (did you mean 'shards'?)"
    with pytest.raises(ConfigError) as err:
        CF.check_keys("", {"zzz": 1}, {"streams", "functions"})
    assert message(err) == "zzz: unknown key; allowed: functions, streams"


@pytest.mark.parametrize(
    ("value", "lo", "hi", "expected"),
    [
        ("3", 1, 10, "x: '3' is not an integer (allowed: 1..10)"),
        (True, 1, 10, "x: True is not an integer (allowed: 1..10)"),
        (2.0, 1, 10, "x: 2.0 is not an integer (allowed: 1..10)"),
        (0, 1, 86_400, "x: 0 is out of range (allowed: 1..86400)"),
        # a bound is written as given, never in exponent form
        (2_000_000, 1, 1_000_000, "x: 2000000 is out of range (allowed: 1..1000000)"),
    ],
)
def test_integers(value: object, lo: int, hi: int, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        CF.integer("x", value, lo, hi)
    assert message(err) == expected


@pytest.mark.parametrize(
    ("value", "lo", "hi", "expected"),
    [
        ("week", 0.01, 87_600, "x: 'week' is not a number (allowed: 0.01..87600)"),
        (False, 0, 300, "x: False is not a number (allowed: 0..300)"),
        (2, 0.01, 1, "x: 2 is out of range (allowed: 0.01..1)"),
        (0.0, 1, 1e5, "x: 0.0 is out of range (allowed: 1..100000)"),
    ],
)
def test_numbers(value: object, lo: float, hi: float, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        CF.number("x", value, lo, hi)
    assert message(err) == expected


def test_values_within_bounds_are_returned() -> None:
    assert CF.integer("x", 5, 1, 10) == 5 and CF.number("x", 7, 0.5, 10) == 7.0 and CF.boolean("x", False) is False
    with pytest.raises(ConfigError) as err:
        CF.boolean("x", "yes")
    assert message(err) == "x: 'yes' is not allowed (allowed: true, false)"


def test_the_project_loader_and_the_alarm_parser_word_a_wrong_key_alike(tmp_path: Path) -> None:
    path = tmp_path / "shardline.yml"
    path.write_text("streams:\n  s: {shards: 1, retention: 24}\n")
    with pytest.raises(ConfigError) as project:
        load_config(path)
    with pytest.raises(AlarmConfigError) as alarms:
        parse_alarms({"defaults": {"retention": 24}}, path)
    assert str(project.value) == f"{path}: streams.s.retention: unknown key (did you mean 'retentionHours'?)"
    assert str(alarms.value) == f"{path}: alarms.defaults.retention: unknown key (did you mean 'iteratorAgeRetention'?)"
    assert isinstance(alarms.value, ConfigError)  # the CLI reports both kinds the same way


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("streams: {'a b': {}}", "streams.a b: a stream name is 1-128 characters of letters, digits, '_', '.' and '-'"),
        ("streams: {s: [1]}", "streams.s: must be a mapping such as {shards: 2, retentionHours: 24}"),
        ("streams: {s: {shard: 1}}", "streams.s.shard: unknown key (did you mean 'shards'?)"),
        ("functions: {f.g: {}}", "functions.f.g: a function name is 1-64 characters of letters, digits, '_' and '-'"),
        ("functions: {f: x}", "functions.f: must be a mapping with at least 'handler'"),
        ("functions: {f: {handlr: a.b}}", "functions.f.handlr: unknown key (did you mean 'handler'?)"),
    ],
)
def test_a_named_entry_is_checked_alike_in_every_section(tmp_path: Path, written: str, expected: str) -> None:
    path = tmp_path / "shardline.yml"
    path.write_text(written + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: {expected}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"a.b": {}}, "sources.a.b: a source name is 1-64 characters of letters, digits, '_' and '-'"),
        ({7: "x"}, "sources.7: must be a mapping with at least 'dsn' and 'stream'"),
        ({"shop": {"dns": "mysql://a@b/c"}}, "sources.shop.dns: unknown key (did you mean 'dsn'?)"),
    ],
)
def test_a_named_source_is_checked_like_the_other_sections(raw: object, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_sources(raw, PATH)
    assert message(err) == expected


NATIVE = """\
streams:
  orders: {shards: 1}
functions:
  f:
    handler: app.handler
    events:
      - stream:
          arn: %s
          destinations:
            onFailure: %s
"""
LOCAL_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/orders"


def native(tmp_path: Path, arn: str, on_failure: str) -> Path:
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return None\n")
    path = tmp_path / "shardline.yml"
    path.write_text(NATIVE % (arn, on_failure))
    return path


@pytest.mark.parametrize(
    ("written", "kind", "target"),
    [
        ("arn:aws:sqs:us-east-1:123456789012:orders-dlq", "sqs", "arn:aws:sqs:us-east-1:123456789012:orders-dlq"),
        (
            "{type: sns, arn: 'arn:aws:sns:eu-west-1:123456789012:alerts'}",
            "sns",
            "arn:aws:sns:eu-west-1:123456789012:alerts",
        ),
        ("arn:aws:kinesis:us-east-1:000000000000:stream/orders", "stream", "orders"),
    ],
)
def test_sqs_and_sns_destinations_in_shardline_yml(tmp_path: Path, written: str, kind: str, target: str) -> None:
    (m,) = load_config(native(tmp_path, LOCAL_ARN, written)).functions["f"].mappings
    assert m.on_failure is not None
    assert (m.on_failure.kind, m.on_failure.target) == (kind, target)


@pytest.mark.parametrize(
    ("written", "where", "why"),
    [
        (
            "{type: sqs, arn: 'arn:aws:sns:us-east-1:123456789012:t'}",
            "onFailure.arn",
            "'arn:aws:sns:us-east-1:123456789012:t' is not the ARN of an SQS queue",
        ),
        (
            "arn:aws:s3:::bucket",
            "onFailure",
            "'arn:aws:s3:::bucket' is not an SQS queue, SNS topic or Kinesis stream ARN, nor "
            "{type: stream|file|sqs|sns, ...}",
        ),
        ("{type: kafka}", "onFailure.type", "'kafka' is not supported (allowed: stream, file, sqs, sns)"),
    ],
)
def test_bad_destinations_name_the_key(tmp_path: Path, written: str, where: str, why: str) -> None:
    path = native(tmp_path, LOCAL_ARN, written)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: functions.f.events[0].stream.destinations.{where}: {why}"


def test_an_arn_of_another_account_is_served_locally_and_said(tmp_path: Path) -> None:
    path = native(tmp_path, "arn:aws:kinesis:eu-west-1:123456789012:stream/orders", "arn:aws:sqs:us-east-1:1:q")
    path.write_text(
        path.read_text().replace("          destinations:\n            onFailure: arn:aws:sqs:us-east-1:1:q\n", "")
    )
    cfg = load_config(path)
    (m,) = cfg.functions["f"].mappings
    assert m.event_source_arn == LOCAL_ARN
    assert cfg.notices == (
        f"arn:aws:kinesis:eu-west-1:123456789012:stream/orders is served as {LOCAL_ARN} (region us-east-1, account "
        "000000000000)",
    )


def test_a_consumer_arn_is_read_through_that_consumer(tmp_path: Path) -> None:
    consumer = f"{LOCAL_ARN}/consumer/c1:1700000000"
    path = native(tmp_path, consumer, "x")
    path.write_text(path.read_text().replace("          destinations:\n            onFailure: x\n", ""))
    cfg = load_config(path)
    assert cfg.functions["f"].mappings[0].event_source_arn == LOCAL_ARN
    assert cfg.notices == ()
    mc = cfg.functions["f"].mappings[0]
    assert [(c.stream, c.name) for c in cfg.consumers] == [("orders", "c1")]
    assert cfg.mapping_consumers[mc.uuid].name == "c1"
