"""Alarm evaluation over a real SeriesStore, moved by a ManualClock: CloudWatch's state rules (M of N, every
missing-data treatment, pinned to the documented tables), every built-in rule, the data-loss forecast on synthetic
backlogs, persistence across a restart, and the ``alarms:`` config section."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from shardline import Engine, ManualClock, Settings
from shardline.metrics.alarms import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    AlarmConfigError,
    AlarmDefaults,
    AlarmManager,
    AlarmRule,
    Forecast,
    InvalidRule,
    MappingInfo,
    StreamInfo,
    decide,
    default_rules,
    default_rules_for,
    fit_time_to_loss,
    merge_rules,
    parse_alarms,
)
from shardline.metrics.alarms.builtin import storage_rules
from shardline.metrics.notify import FileNotifier
from shardline.metrics.series import SeriesStore, series_key
from shardline.runtime.config import load_config
from shardline.runtime.mapping import MappingConfig

T0 = 1_699_999_980_000  # a whole minute, so periods of every length start at T0
DAY = 86_400
ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"

Values = Mapping[tuple[str, tuple[tuple[str, str], ...]], float]


class Rig:
    """A store, a clock and a manager; ``run`` records one sample per second and evaluates after each, as the
    monitor does, and collects every transition with the time it happened."""

    def __init__(self, rules: list[AlarmRule], tmp: Path | None = None, **kw: Any) -> None:
        self.clock = ManualClock(T0)
        self.store = SeriesStore(None)
        self.tmp = tmp
        self.manager = AlarmManager(self.store, rules, kw.pop("notifiers", []), self.clock, **kw)
        self.seen: list[tuple[int, str, str, str]] = []  # (seconds since T0, alarm, old, new)

    def run(self, seconds: int, values: Callable[[int], Values] | Values | None = None) -> None:
        for _ in range(seconds):
            now = self.clock.now_ms()
            t = (now - T0) // 1000
            sample = values(t) if callable(values) else values or {}
            self.store.record(now, sample)
            for tr in self.manager.evaluate(now):
                self.seen.append((t, tr.alarm, tr.old_state, tr.new_state))
            self.clock.advance(1)

    def state(self, name: str) -> str:
        return str(next(s["state"] for s in self.manager.states() if s["name"] == name))

    def fired(self, name: str, state: str = ALARM) -> list[int]:
        return [t for t, alarm, _old, new in self.seen if alarm == name and new == state]


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return series_key(name, labels)


GAUGE = "shardline_esm_iterator_age_seconds"
G = key(GAUGE, mapping="m1", function="f", stream="s")


def gauge_rule(**kw: Any) -> AlarmRule:
    base: dict[str, Any] = {
        "name": "g",
        "metric": GAUGE,
        "threshold": 5,
        "comparison": "GreaterThanThreshold",
        "statistic": "Maximum",
        "period_s": 10,
        "labels": {"mapping": "m1"},
    }
    return AlarmRule(**{**base, **kw})


def periods(*values: float | None, period: int = 10) -> Callable[[int], Values]:
    """One value per period (None: no data in that period), then nothing."""

    def at(t: int) -> Values:
        i = t // period
        v = values[i] if i < len(values) else None
        return {} if v is None else {G: v}

    return at


# ---------------------------------------------------------------------------------------- CloudWatch's rules
# The two tables of "How alarm state is evaluated when data is missing" (AlarmThatSendsEmail): 5 datapoints
# retrieved, 0 = within the threshold, X = breaching, - = missing; columns MISSING, IGNORE, BREACHING, NOT BREACHING.
RETAIN = "retain"
TABLE_3_OF_3 = [
    ("0-X-X", OK, OK, OK, OK),
    ("0----", OK, OK, OK, OK),
    ("-----", INSUFFICIENT_DATA, RETAIN, ALARM, OK),
    ("0XX-X", ALARM, ALARM, ALARM, ALARM),
    ("----X", INSUFFICIENT_DATA, RETAIN, ALARM, OK),
    ("X----", ALARM, RETAIN, ALARM, OK),
]
TABLE_2_OF_3 = [
    ("0-X-X", ALARM, ALARM, ALARM, ALARM),
    ("00X0X", ALARM, ALARM, ALARM, ALARM),
    ("0-X--", OK, OK, ALARM, OK),
    ("----0", OK, OK, ALARM, OK),
    ("----X", INSUFFICIENT_DATA, RETAIN, ALARM, OK),
]
TREATS = ("missing", "ignore", "breaching", "notBreaching")
CASES = [(m, row[0], treat, row[i + 1]) for m, table in ((3, TABLE_3_OF_3), (2, TABLE_2_OF_3)) for row in table
         for i, treat in enumerate(TREATS)]  # fmt: skip


@pytest.mark.parametrize(("m", "points", "treat", "expected"), CASES)
@pytest.mark.parametrize("current", [OK, ALARM, INSUFFICIENT_DATA])
def test_decide_matches_the_documented_tables(m: int, points: str, treat: str, expected: str, current: str) -> None:
    flags = [{"0": False, "X": True, "-": None}[c] for c in points]
    got = decide(flags, evaluation_periods=3, datapoints_to_alarm=m, treat_missing_data=treat, current=current)
    assert got == (current if expected == RETAIN else expected)


def test_m_of_n_counts_breaching_datapoints_that_need_not_be_consecutive() -> None:
    rig = Rig([gauge_rule(evaluation_periods=3, datapoints_to_alarm=2)])
    rig.run(90, periods(9, 0, 0, 9, 0, 8, 0, 0, 0))
    # "9 0" is OK already (a real good point, as in the documented "0 - X - -"); "9 0 8" is 2 of the last 3 at t=60,
    # and "0 8 0" 1 of 3 at t=70
    assert rig.fired("g", OK) == [20, 70]
    assert rig.fired("g") == [60]
    assert [s for s in rig.seen if s[3] != OK and s[3] != ALARM] == []


def test_n_of_n_needs_every_datapoint_and_one_good_one_clears_it() -> None:
    rig = Rig([gauge_rule(evaluation_periods=3)])
    rig.run(80, periods(9, 9, 0, 9, 9, 9, 1))
    assert rig.fired("g") == [60]
    assert rig.fired("g", OK) == [30, 70]


def test_a_period_is_judged_only_once_it_is_complete() -> None:
    rig = Rig([gauge_rule()])
    rig.run(10, periods(9))
    assert rig.state("g") == INSUFFICIENT_DATA  # t=0..9: the first period is still open at t=9
    rig.run(1)
    assert rig.state("g") == ALARM
    assert rig.fired("g") == [10]


@pytest.mark.parametrize(
    ("treat", "after_silence"),
    [("missing", INSUFFICIENT_DATA), ("breaching", ALARM), ("notBreaching", OK), ("ignore", OK)],
)
def test_treatment_when_a_good_metric_stops_reporting(treat: str, after_silence: str) -> None:
    rig = Rig([gauge_rule(evaluation_periods=2, treat_missing_data=treat)])
    rig.run(30, periods(1, 1))
    assert rig.state("g") == OK
    rig.run(60)  # the range is 4 periods: the good points leave it after 4 silent periods
    assert rig.state("g") == after_silence


@pytest.mark.parametrize(
    ("treat", "after_silence"),
    [("missing", INSUFFICIENT_DATA), ("breaching", ALARM), ("notBreaching", OK), ("ignore", ALARM)],
)
def test_treatment_when_a_breaching_metric_stops_reporting(treat: str, after_silence: str) -> None:
    rig = Rig([gauge_rule(evaluation_periods=2, treat_missing_data=treat)])
    rig.run(30, periods(9, 9))
    assert rig.state("g") == ALARM
    rig.run(10)  # "X X -": 2 real datapoints still in range, the treatment is not consulted
    assert rig.state("g") == ALARM
    rig.run(60)
    assert rig.state("g") == after_silence


def test_missing_keeps_alarm_while_the_last_breaching_point_is_in_range() -> None:
    rig = Rig([gauge_rule(evaluation_periods=3, treat_missing_data="missing")])
    rig.run(40, periods(9, 9, 9))
    assert rig.fired("g") == [30]
    rig.run(20)  # "X X X - -": 3 real points
    assert rig.state("g") == ALARM
    rig.run(10)  # "X X - - -": fewer than N, all breaching, then silence: still ALARM (documented row "X - - - -")
    assert rig.state("g") == ALARM
    rig.run(30)  # the last X left the 5-period range
    assert rig.state("g") == INSUFFICIENT_DATA


def test_ignore_keeps_whatever_state_it_had_without_data() -> None:
    rig = Rig([gauge_rule(treat_missing_data="ignore")])
    rig.run(100)
    assert rig.state("g") == INSUFFICIENT_DATA
    assert rig.seen == []


def test_series_matching_a_rule_are_combined_by_its_statistic() -> None:
    a, b = key(GAUGE, mapping="m1", shard="0"), key(GAUGE, mapping="m1", shard="1")
    other = key(GAUGE, mapping="m2", shard="0")
    summed = gauge_rule(name="sum", statistic="Sum", threshold=10)
    per_shard = gauge_rule(name="any-shard", threshold=5, group_by=("shard",))
    rig = Rig([summed, per_shard])
    rig.run(20, {a: 6, b: 6, other: 100})  # Sum over 10 s: each shard 60
    assert rig.state("sum") == ALARM
    assert rig.state("any-shard") == ALARM
    assert "shard=0" in rig.manager.states()[1]["reason"] or "shard=1" in rig.manager.states()[1]["reason"]


def test_a_counter_alarms_on_its_increase_and_clears_when_it_stops_growing() -> None:
    inv = key("shardline_function_invocations_total", function="f", outcome="error")
    (rule,) = [r for r in default_rules([], [], ["f"]) if r.name == "function:f:errors"]
    rig = Rig([rule])
    rig.run(120, {inv: 0})
    assert rig.state(rule.name) == OK
    rig.run(61, {inv: 3})  # the period [120, 180) is judged at 180
    assert rig.fired(rule.name) == [180]
    rig.run(60, {inv: 3})  # a count that stays put is no new error
    assert rig.fired(rule.name, OK)[-1] == 240


# ---------------------------------------------------------------------------------------- the forecast
def test_fit_time_to_loss_on_a_line() -> None:
    samples = [(float(t), 100 + 0.5 * t) for t in range(0, 600, 5)]
    age, slope, left = fit_time_to_loss(samples, 3600, 600)
    assert slope == pytest.approx(0.5)
    assert age == pytest.approx(400)
    assert left == pytest.approx((3600 - 400) / 0.5)
    assert fit_time_to_loss([(0, 10), (10, 5)], 100, 10)[2] == math.inf
    assert fit_time_to_loss([(0, 10), (10, 10)], 100, 10)[2] == math.inf
    assert fit_time_to_loss([(0, 90), (10, 120)], 100, 10)[2] == 0
    with pytest.raises(ValueError, match="two samples"):
        fit_time_to_loss([(0, 1)], 100, 0)


def mapping_rules(limit_s: int = 3600, horizon_s: int = 1800) -> dict[str, AlarmRule]:
    info = MappingInfo("m1", "f", "s", retention_s=DAY, maximum_record_age_s=limit_s)
    d = AlarmDefaults(forecast_horizon_s=horizon_s)
    return {r.name.split(":")[-1]: r for r in default_rules([], [info], [], d)}


def test_forecast_fires_on_a_growing_backlog_before_any_record_ages_out() -> None:
    rules = mapping_rules()
    age_rules = [rules["data-loss-forecast"], rules["iterator-age-50pct"], rules["iterator-age-80pct"]]
    rig = Rig(age_rules)
    # a consumer at half the producer's pace: the age of what it processes grows 0.5 s per second from 0;
    # MaximumRecordAge 3600 s drops records once the age reaches it, at t = 7200
    rig.run(7300, lambda t: {G: 0.5 * t})
    (fired,) = rig.fired("mapping:f@s:data-loss-forecast")
    # time left (3600 - 0.5 t) / 0.5 reaches the 1800 s horizon at t = 5400, a period end
    assert 5400 <= fired <= 5460
    assert 0.5 * fired < 3600 and 7200 - fired >= 1700
    assert rig.fired("mapping:f@s:iterator-age-50pct") == [3660]  # 1800 s of age is exceeded during [3600, 3660)
    assert rig.fired("mapping:f@s:iterator-age-80pct") == [5820]
    reason = next(h for h in rig.manager.history("mapping:f@s:data-loss-forecast") if h["new_state"] == ALARM)
    assert "+0.500 s/s" in reason["reason"] and "until it reaches 3600 s" in reason["reason"]
    assert reason["value"] == pytest.approx(7200 - fired, abs=5)  # the forecast time left is the real time left


def test_forecast_on_the_retention_period_of_a_stuck_consumer() -> None:
    (rule,) = [r for r in default_rules([StreamInfo("s", DAY)], [], []) if r.name.endswith("forecast")]
    age = key("shardline_stream_iterator_age_seconds", stream="s")
    rig = Rig([rule])
    start = DAY - 8 * 3600  # 16 h behind, and stuck: the age grows with the clock
    rig.run(7400, lambda t: {age: start + t})
    (fired,) = rig.fired(rule.name)
    # The horizon on a day of retention is a quarter of it: the alarm comes 6 h before records at the iterator
    # reach 24 h (at t = 8 h), i.e. at t = 2 h, while there is still time to act.
    assert 7200 <= fired <= 7260


def test_a_recovering_backlog_does_not_fire_the_forecast() -> None:
    rule = mapping_rules()["data-loss-forecast"]
    rig = Rig([rule])
    rig.run(3000, lambda t: {G: max(0.0, 3300 - 1.0 * t)})  # 92 % of the limit, shrinking
    assert rig.fired(rule.name) == []
    assert rig.state(rule.name) == OK


def test_a_noisy_but_flat_age_does_not_fire_the_forecast() -> None:
    rule = mapping_rules(limit_s=600, horizon_s=3600)["data-loss-forecast"]
    rig = Rig([rule])
    rig.run(1800, lambda t: {G: 60 + (t * 37 % 23)})  # 60..82 s, no trend: "records lost within the hour" is wrong
    assert rig.fired(rule.name) == []


def test_forecast_with_no_data_is_not_breaching() -> None:
    rule = mapping_rules()["data-loss-forecast"]
    rig = Rig([rule])
    rig.run(200)
    assert rig.state(rule.name) == OK


def test_forecast_recovers_when_the_backlog_turns_around() -> None:
    rule = mapping_rules()["data-loss-forecast"]
    rig = Rig([rule])
    rig.run(6000, lambda t: {G: 0.5 * t if t < 5600 else 2800 - 2.0 * (t - 5600)})
    assert len(rig.fired(rule.name)) == 1
    assert rig.state(rule.name) == OK


# ---------------------------------------------------------------------------------------- built-in rules
def built_in(name: str, **d: Any) -> AlarmRule:
    rules = default_rules(
        [StreamInfo("s", DAY)], [MappingInfo("m1", "f", "s", DAY)], ["f"], AlarmDefaults(**d) if d else None
    )
    return next(r for r in rules if r.name == name)


@pytest.mark.parametrize(
    ("name", "series"),
    [
        ("stream:s:write-throttled", key("shardline_stream_write_throttled_total", stream="s")),
        ("stream:s:read-throttled", key("shardline_stream_read_throttled_total", stream="s")),
        ("mapping:f@s:dropped-records", key("shardline_esm_dropped_records_total", mapping="m1")),
        ("mapping:f@s:dead-lettered-records", key("shardline_esm_on_failure_delivered_records_total", mapping="m1")),
        ("function:f:errors", key("shardline_function_invocations_total", function="f", outcome="error")),
        ("function:f:timeouts", key("shardline_function_invocations_total", function="f", outcome="timeout")),
    ],
)
def test_any_throttle_drop_dead_letter_error_or_timeout_alarms(name: str, series: Any) -> None:
    rule = built_in(name)
    neighbour = (series[0], tuple((k, "other") for k, _ in series[1]))
    rig = Rig([rule])
    rig.run(121, {series: 0, neighbour: 0})
    rig.run(60, {series: 0, neighbour: 50})  # another stream, mapping or outcome: [120, 180) judged at 180
    assert rig.state(name) == OK
    rig.run(60, {series: 1, neighbour: 50})
    assert rig.fired(name) == [240]
    rig.run(60, {series: 1, neighbour: 50})
    assert rig.fired(name, OK)[-1] == 300


def storage_series(state: str) -> Values:
    """The samples of ``shardline_storage_state`` while the data directory is in ``state``."""
    return {key("shardline_storage_state", state=s): float(s == state) for s in ("ok", "disk_full", "failed")}


@pytest.mark.parametrize(("name", "state"), [("storage:fsync-failed", "failed"), ("storage:disk-full", "disk_full")])
def test_a_data_directory_that_refuses_writes_alarms(name: str, state: str) -> None:
    rules = {r.name: r for r in storage_rules()}
    assert set(rules) == {"storage:fsync-failed", "storage:disk-full"}
    assert rules[name].severity == "critical"
    rig = Rig(list(rules.values()))
    rig.run(121, storage_series("ok"))
    assert {s["state"] for s in rig.manager.states()} == {OK}
    rig.run(60, storage_series(state))  # from 121 s: [120, 180) breaches, judged at 180
    assert rig.fired(name) == [180]
    assert [r for r in rules if rig.fired(r)] == [name]  # the other state's rule stays quiet
    rig.run(121, storage_series("ok"))
    assert rig.state(name) == OK


def test_counters_that_do_not_exist_yet_are_good_news() -> None:
    rig = Rig([built_in("stream:s:write-throttled"), built_in("function:f:errors")])
    rig.run(120)
    assert {s["state"] for s in rig.manager.states()} == {OK}


@pytest.mark.parametrize(("kind", "series"), [("stream:s", "stream"), ("mapping:f@s", "mapping")])
def test_iterator_age_at_50_and_80_percent_of_retention(kind: str, series: str) -> None:
    metric = {"stream": "shardline_stream_iterator_age_seconds", "mapping": GAUGE}[series]
    k = key(metric, stream="s") if series == "stream" else G
    warn, crit = built_in(f"{kind}:iterator-age-50pct"), built_in(f"{kind}:iterator-age-80pct")
    assert (warn.threshold, warn.severity, crit.threshold, crit.severity) == (43_200, "warning", 69_120, "critical")
    rig = Rig([warn, crit])
    rig.run(60, {k: 40_000})
    rig.run(60, {k: 50_000})
    rig.run(60, {k: 70_000})
    rig.run(60, {k: 10})
    rig.run(1)
    assert rig.fired(warn.name) == [120] and rig.fired(crit.name) == [180]
    assert rig.fired(warn.name, OK)[-1] == 240 and rig.fired(crit.name, OK)[-1] == 240


def test_poison_pill_when_a_checkpoint_stalls_while_records_wait() -> None:
    rule = built_in("mapping:f@s:poison-pill", poison_pill_s=600)
    stalled = key("shardline_esm_checkpoint_stalled_seconds", mapping="m1")
    rig = Rig([rule])
    # healthy: the checkpoint moves every few seconds; then one batch fails over and over
    rig.run(1200, lambda t: {stalled: t % 7 if t < 300 else t - 300})
    (fired,) = rig.fired(rule.name)
    assert fired == 960  # 600 s stalled at t = 900, seen in the period [900, 960)
    rig.run(120, {stalled: 0})
    assert rig.state(rule.name) == OK


def test_abandoned_stream_after_the_configured_quiet_time() -> None:
    rule = built_in("stream:s:abandoned", abandoned_by_stream={"s": 7200})
    assert built_in("stream:s:abandoned").threshold == 7 * DAY
    ts = key("shardline_stream_last_incoming_record_timestamp_seconds", stream="s")
    rig = Rig([rule])
    last = T0 / 1000 + 600  # records arrive for ten minutes, then none
    rig.run(9000, lambda t: {ts: T0 / 1000 + min(t, 600)})
    (fired,) = rig.fired(rule.name)
    assert fired == 600 + 7200 + 60  # judged at the end of the first period that ends more than 2 h after `last`
    assert last + 7200 < T0 / 1000 + fired


def test_abandoned_is_not_fooled_by_gaps_in_sampling_or_a_restart(tmp_path: Path) -> None:
    rule = built_in("stream:s:abandoned", abandoned_by_stream={"s": 600})
    ts = key("shardline_stream_last_incoming_record_timestamp_seconds", stream="s")
    busy: Callable[[int], Values] = lambda t: {ts: T0 / 1000 + t - 1}  # noqa: E731
    rig = Rig([rule], state_path=tmp_path / "alarms.json")
    rig.run(300, busy)
    rig.run(400)  # the sampler stalls in this process: nothing recorded for 400 s
    rig.run(100, busy)
    rig.clock.advance(1800)  # the process is down for half an hour, then starts again
    rig.manager = AlarmManager(rig.store, [rule], [], rig.clock, state_path=tmp_path / "alarms.json")
    rig.run(300, busy)
    assert rig.fired(rule.name) == []
    rig.run(700, {ts: T0 / 1000 + 2898})  # and a stream that really goes quiet (last record at 2898) still alarms
    assert rig.fired(rule.name) == [3540]  # the first period end more than 600 s after it


def test_a_stream_that_never_got_a_record_is_abandoned_counting_from_the_first_look() -> None:
    rig = Rig([built_in("stream:s:abandoned", abandoned_after_s=3600)])
    rig.run(3700)
    assert rig.fired("stream:s:abandoned") == [3660]


def test_default_rule_names_toggles_and_disable_patterns() -> None:
    streams = [StreamInfo("orders", DAY)]
    maps = [MappingInfo("u" * 36, "f", "orders", DAY), MappingInfo("v" * 36, "f", "orders", DAY, 600)]
    names = [r.name for r in default_rules(streams, maps, ["f"])]
    assert names[:7] == [
        "stream:orders:iterator-age-50pct",
        "stream:orders:iterator-age-80pct",
        "stream:orders:data-loss-forecast",
        "stream:orders:abandoned",
        "stream:orders:write-throttled",
        "stream:orders:read-throttled",
        "mapping:f@orders#uuuuuuuu:iterator-age-50pct",
    ]
    assert "mapping:f@orders#vvvvvvvv:poison-pill" in names
    assert "mapping:f@orders#vvvvvvvv:on-failure-destination-stuck" in names
    assert names[-2:] == ["function:f:errors", "function:f:timeouts"]
    assert len(names) == len(set(names)) == 6 + 2 * 7 + 2
    short = {r.name: r for r in default_rules(streams, maps[1:], [])}
    assert short["mapping:f@orders:iterator-age-80pct"].threshold == 480  # MaximumRecordAge 600 s is the limit
    assert short["mapping:f@orders:data-loss-forecast"].forecast == Forecast(600, window_s=600)
    off = AlarmDefaults(iterator_age_ratios=(), forecast=False, abandoned_after_s=None, throttling=False,
                        poison_pill_s=None, dropped_records=False, dead_lettered_records=False,
                        on_failure_destination_stuck=False, function_errors=False, function_timeouts=False)  # fmt: skip
    assert default_rules(streams, maps, ["f"], off) == []
    assert default_rules(streams, maps, ["f"], AlarmDefaults(enabled=False)) == []
    some = default_rules(streams, maps, ["f"], AlarmDefaults(disable=("*:read-throttled", "mapping:*")))
    assert [r.name for r in some if r.name.startswith(("mapping", "stream:orders:read"))] == []
    assert all(r.treat_missing_data == "notBreaching" and r.period_s == 60 for r in some)


def test_default_rules_for_a_running_engine_and_project(tmp_path: Path) -> None:
    async def main() -> list[AlarmRule]:
        clock = ManualClock(T0)
        engine = Engine(Settings(data_dir=tmp_path, fsync="never"), clock=clock)
        await engine.open()
        try:
            await engine.create_stream("orders", 1)
            await engine.create_stream("audit", 1)
            await engine.increase_stream_retention_period(48, stream_name="audit")
            cfg = MappingConfig("f", ARN + "orders", "TRIM_HORIZON", uuid="abc", maximum_record_age_s=900)
            project = SimpleNamespace(mappings=[SimpleNamespace(config=cfg)], pools={"f": object()})
            return default_rules_for(engine, project)
        finally:
            await engine.close()

    rules = {r.name: r for r in asyncio.run(main())}
    assert rules["stream:audit:iterator-age-50pct"].threshold == DAY
    assert rules["stream:orders:iterator-age-50pct"].threshold == DAY / 2
    assert rules["mapping:f@orders:iterator-age-50pct"].threshold == 450
    assert rules["mapping:f@orders:poison-pill"].labels == {"mapping": "abc"}
    assert "function:f:timeouts" in rules
    assert rules["storage:fsync-failed"].labels == {"state": "failed"}
    assert rules["storage:disk-full"].labels == {"state": "disk_full"}
    assert storage_rules(AlarmDefaults(storage=False)) == storage_rules(AlarmDefaults(disable=("storage:*",))) == []


def test_declared_rules_replace_built_in_ones_of_the_same_name() -> None:
    builtin = default_rules([StreamInfo("s", DAY)])
    mine = gauge_rule(name="stream:s:read-throttled")
    merged = merge_rules(builtin, [mine])
    assert len(merged) == len(builtin) and merged[-1] is mine


# ---------------------------------------------------------------------------------------- state and history
def test_states_and_history_are_json_ready(tmp_path: Path) -> None:
    rig = Rig([gauge_rule(description="too old")])
    rig.run(40, periods(1, 9, 1))
    (state,) = rig.manager.states()
    assert state["name"] == "g" and state["state"] == OK and state["since_ms"] == T0 + 30_000
    assert (
        state["summary"]
        == 'Maximum(shardline_esm_iterator_age_seconds{mapping="m1"}) greater than 5 for 1 of 1 periods of 10 s'
    )
    hist = rig.manager.history()
    assert [(h["old_state"], h["new_state"]) for h in hist] == [(ALARM, OK), (OK, ALARM), (INSUFFICIENT_DATA, OK)]
    assert [h["seq"] for h in hist] == [3, 2, 1]
    assert hist[1]["reason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [9] was greater than")
    assert hist[1]["NewStateValue"] == ALARM and hist[1]["Trigger"]["Threshold"] == 5
    assert hist[1]["StateChangeTime"] == "2023-11-14T22:13:20.000+0000"
    assert rig.manager.history("nope") == [] and len(rig.manager.history(limit=1)) == 1
    json.dumps([rig.manager.states(), hist])


def test_state_survives_a_restart_without_a_new_transition(tmp_path: Path) -> None:
    path = tmp_path / "alarms.json"
    rule = gauge_rule()
    rig = Rig([rule], state_path=path)
    rig.run(30, periods(9, 9, 9))
    assert rig.state("g") == ALARM
    again = AlarmManager(rig.store, [rule], [], rig.clock, state_path=path)
    assert [s["state"] for s in again.states()] == [ALARM]
    assert [h["seq"] for h in again.history()] == [1]  # at t=0 the range was empty: INSUFFICIENT_DATA already
    rig.store.record(rig.clock.now_ms(), {G: 9})
    rig.clock.advance(10)
    assert again.evaluate(rig.clock.now_ms()) == []
    rig.clock.advance(20)
    assert again.evaluate(rig.clock.now_ms()) == []  # "X - -": the one real point is N datapoints
    rig.clock.advance(10)
    (t,) = again.evaluate(rig.clock.now_ms())
    assert (t.seq, t.old_state, t.new_state) == (2, ALARM, INSUFFICIENT_DATA)


def test_a_rule_set_change_keeps_the_state_of_alarms_that_stay() -> None:
    rig = Rig([gauge_rule(), gauge_rule(name="h")])
    rig.run(20, {G: 9})
    rig.manager.set_rules([gauge_rule(), gauge_rule(name="new")])
    assert {s["name"]: s["state"] for s in rig.manager.states()} == {"g": ALARM, "new": INSUFFICIENT_DATA}
    with pytest.raises(ValueError, match="two alarm rules"):
        rig.manager.set_rules([gauge_rule(), gauge_rule()])


def test_an_unreadable_state_file_starts_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "alarms.json"
    path.write_text("{not json")
    with caplog.at_level(logging.ERROR, logger="shardline.alarms"):
        rig = Rig([gauge_rule()], state_path=path)
    assert "unreadable" in caplog.text
    rig.run(20, {G: 9})
    assert json.loads(path.read_text())["alarms"]["g"]["state"] == ALARM


def test_a_rule_that_cannot_be_evaluated_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    bad = gauge_rule(name="bad", metric="shardline_esm_lag_records", statistic="Rate")  # Rate of a gauge
    with caplog.at_level(logging.ERROR, logger="shardline.alarms"):
        rig = Rig([bad, gauge_rule()])
        rig.run(20, {G: 9, key("shardline_esm_lag_records", mapping="m1"): 5})
    assert "cannot evaluate" in caplog.text
    assert rig.state("g") == ALARM and rig.state("bad") == INSUFFICIENT_DATA


def test_disabled_rules_are_listed_but_not_evaluated() -> None:
    rig = Rig([gauge_rule(enabled=False)])
    rig.run(30, {G: 9})
    assert rig.manager.states()[0]["enabled"] is False and rig.state("g") == INSUFFICIENT_DATA


def test_invalid_rules_say_what_is_allowed() -> None:
    with pytest.raises(InvalidRule, match="period: 45 is not allowed"):
        gauge_rule(period_s=45)
    with pytest.raises(InvalidRule, match=r"datapoints_to_alarm: 4 is not allowed \(allowed: 1..3\)"):
        gauge_rule(evaluation_periods=3, datapoints_to_alarm=4)
    with pytest.raises(InvalidRule, match="LessThan"):
        gauge_rule(forecast=Forecast(100))
    with pytest.raises(InvalidRule, match="86400"):
        gauge_rule(period_s=3600, evaluation_periods=25)


# ---------------------------------------------------------------------------------------- config
CONFIG = Path("/project/shardline.yml")


def test_parse_alarms_full_section() -> None:
    cfg = parse_alarms(
        {
            "defaults": {
                "iteratorAgeRetention": {"warning": 0.4},
                "forecast": {"horizonMinutes": 90, "windowMinutes": 5},
                "abandonedAfterHours": {"default": 24, "streams": {"audit": False, "orders": 2}},
                "poisonPillMinutes": False,
                "throttling": False,
                "storage": False,
                "period": 30,
                "disable": "function:*:timeouts",
            },
            "notify": {"log": False, "file": "alarms.jsonl", "webhook": {"url": "http://127.0.0.1:9/h", "retries": 5}},
            "rules": [
                {
                    "name": "slow",
                    "metric": "shardline_function_duration_seconds",
                    "labels": {"function": "f"},
                    "statistic": "p99",
                    "period": 300,
                    "evaluationPeriods": 3,
                    "datapointsToAlarm": 2,
                    "threshold": 1.5,
                    "comparisonOperator": "GreaterThanThreshold",
                    "treatMissingData": "notBreaching",
                    "severity": "critical",
                }
            ],
            "definitions": {
                "lagging": {
                    "metric": "shardline_esm_lag_records",
                    "threshold": 1000,
                    "dimensions": [{"Name": "EventSourceMappingUUID", "Value": "abc"}],
                    "statistic": "Maximum",
                    "namespace": "AWS/Lambda",
                }
            },
        },
        CONFIG,
    )
    slow, lagging = cfg.rules
    assert (slow.statistic, slow.period_s, slow.evaluation_periods, slow.m, slow.comparison) == (
        "p99", 300, 3, 2, "GreaterThanThreshold"
    )  # fmt: skip
    assert (slow.treat_missing_data, slow.severity, slow.labels) == ("notBreaching", "critical", {"function": "f"})
    assert lagging.name == "lagging" and lagging.labels == {"mapping": "abc"}
    assert lagging.comparison == "GreaterThanOrEqualToThreshold" and lagging.m == 1 and lagging.period_s == 60
    d = cfg.defaults
    assert d.iterator_age_ratios == ((0.4, "warning"), (0.8, "critical"))
    assert (d.forecast, d.forecast_horizon_s, d.forecast_window_s) == (True, 5400, 300)
    assert (d.abandoned_after_s, dict(d.abandoned_by_stream)) == (DAY, {"audit": None, "orders": 7200})
    assert (d.poison_pill_s, d.throttling, d.period_s, d.disable) == (None, False, 30, ("function:*:timeouts",))
    assert d.storage is False and storage_rules(d) == []
    assert cfg.notify.log is False and cfg.notify.file == Path("/project/alarms.jsonl")
    (hook,) = cfg.notify.webhooks
    assert (hook.url, hook.retries) == ("http://127.0.0.1:9/h", 5)
    names = [r.name for r in default_rules([StreamInfo("audit", DAY), StreamInfo("orders", DAY)], [], ["f"], d)]
    assert "stream:audit:abandoned" not in names and "stream:orders:abandoned" in names
    assert "function:f:timeouts" not in names and "stream:orders:write-throttled" not in names


def test_a_project_file_with_an_alarms_section_loads(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return None\n")
    path = tmp_path / "shardline.yml"
    path.write_text(
        "streams: {orders: {shards: 1}}\n"
        "functions: {process: {handler: handler.handler, events: [{stream: orders}]}}\n"
        "alarms:\n"
        "  defaults: {abandonedAfterHours: 24}\n"
        "  notify: {file: alarms.jsonl}\n"
        "  rules: [{name: lag, metric: shardline_esm_lag_records, threshold: 1000, statistic: Maximum}]\n"
    )
    project = load_config(path)  # the loader must accept the section it leaves to parse_alarms
    cfg = parse_alarms(yaml.safe_load(path.read_text())["alarms"], path)
    assert [r.name for r in cfg.rules] == ["lag"] and cfg.notify.file == tmp_path / "alarms.jsonl"
    assert list(project.functions) == ["process"]


def test_parse_alarms_absent_or_empty() -> None:
    cfg = parse_alarms(None, CONFIG)
    assert cfg.rules == [] and cfg.defaults == AlarmDefaults() and cfg.notify.log is True
    assert parse_alarms({"defaults": False}, CONFIG).defaults.enabled is False
    rules, notify, defaults = parse_alarms({}, CONFIG)  # a plain tuple for the config loader
    assert (rules, notify.file, defaults.enabled) == ([], None, True)


RULE = {"name": "r", "metric": "shardline_esm_lag_records", "threshold": 1}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ([], "alarms: must be a mapping"),
        ({"rule": []}, "alarms.rule: unknown key (did you mean 'rules'?)"),
        ({"rules": {"r": 5}}, "alarms.rules.r: must be a mapping with at least"),
        ({"rules": [{**RULE, "treshold": 1}]}, "alarms.rules[0].treshold: unknown key (did you mean 'threshold'?)"),
        ({"rules": [{"name": "r", "metric": "x"}]}, "alarms.rules[0].threshold: is required"),
        ({"rules": [{**RULE, "threshold": "1"}]}, "alarms.rules[0].threshold: '1' is not a number"),
        ({"rules": [{**RULE, "comparison": "Above"}]},
         "alarms.rules[0].comparison: 'Above' is not allowed (allowed: GreaterThanThreshold, "
         "GreaterThanOrEqualToThreshold, LessThanThreshold, LessThanOrEqualToThreshold)"),
        ({"rules": [{**RULE, "comparisonOperator": "Above"}]}, "alarms.rules[0].comparisonOperator: 'Above'"),
        ({"rules": [{**RULE, "treatMissingData": "zero"}]},
         "alarms.rules[0].treatMissingData: 'zero' is not allowed (allowed: missing, notBreaching, breaching, ignore)"),
        ({"rules": [{**RULE, "statistic": "Max"}]},
         "alarms.rules[0].statistic: 'Max' is not allowed (allowed: Average, Maximum, Minimum, Sum, SampleCount, "
         "Rate, pNN)"),
        ({"rules": [{**RULE, "statistic": "Rate"}]}, "'Rate' does not apply to shardline_esm_lag_records, a gauge"),
        ({"rules": [{**RULE, "statistic": "p90"}]}, "'p90' does not apply to shardline_esm_lag_records, a gauge"),
        ({"rules": [{**RULE, "period": 45}]}, "alarms.rules[0].period: 45 is not allowed"),
        ({"rules": [{**RULE, "period": 0}]}, "alarms.rules[0].period: 0 is out of range (allowed: 1..86400)"),
        ({"rules": [{**RULE, "evaluationPeriods": 2, "datapointsToAlarm": 3}]},
         "alarms.rules[0].datapointsToAlarm: 3 is out of range (allowed: 1..2)"),
        ({"rules": [{**RULE, "severity": "high"}]}, "alarms.rules[0].severity: 'high' is not allowed (allowed: info,"),
        ({"rules": [{**RULE, "metric": "IteratorAge"}]},
         "alarms.rules[0].metric: unknown metric 'IteratorAge' (CloudWatch's IteratorAge is "
         "shardline_esm_iterator_age_seconds, in base units)"),
        ({"rules": [{**RULE, "metric": "shardline_esm_lag_record"}]},
         "unknown metric 'shardline_esm_lag_record' (did you mean 'shardline_esm_lag_records'?)"),
        ({"rules": [{**RULE, "labels": {"StreamName": "s", "queue": "q"}}]},
         "alarms.rules[0].labels.queue: shardline_esm_lag_records has no such label (allowed: mapping, "),
        ({"rules": [{**RULE, "dimensions": [{"Name": "x"}]}]}, "alarms.rules[0].dimensions[0]: must be {Name:"),
        ({"rules": [{**RULE, "type": "anomalyDetection"}]}, "'anomalyDetection' is not supported (allowed: static)"),
        ({"rules": [RULE, RULE]}, "alarms.rules[1].name: 'r' is used by another rule"),
        ({"rules": [{**RULE, "enabled": "yes"}]}, "rules[0].enabled: 'yes' is not allowed (allowed: true, false)"),
        ({"defaults": {"forecast": {"horizon": 5}}}, "alarms.defaults.forecast.horizon: unknown key (did you mean"),
        ({"defaults": {"period": 45}}, "alarms.defaults.period: 45 is not allowed"),
        ({"defaults": {"iteratorAgeRetention": {"warning": 2}}}, "iteratorAgeRetention.warning: 2 is out of range"),
        ({"defaults": {"abandonedAfterHours": "week"}}, "alarms.defaults.abandonedAfterHours: 'week' is not a number"),
        ({"defaults": {"disable": [1]}}, "alarms.defaults.disable: must be a list of rule names"),
        ({"notify": {"webhook": {"url": "ftp://x"}}}, "alarms.notify.webhook.url: 'ftp://x' is not allowed"),
        ({"notify": {"webhook": [{"url": "http://x", "retries": -1}]}},
         "alarms.notify.webhook[0].retries: -1 is out of range (allowed: 0..20)"),
        ({"notify": {"states": ["FIRING"]}}, "alarms.notify.states: 'FIRING' is not a state (allowed: OK, ALARM,"),
        ({"notify": {"file": 3}}, "alarms.notify.file: must be the path of a JSONL file"),
    ],
)  # fmt: skip
def test_parse_alarms_errors_name_the_file_key_and_choices(section: Any, message: str) -> None:
    with pytest.raises(AlarmConfigError) as err:
        parse_alarms(section, CONFIG)
    assert str(err.value).startswith(f"{CONFIG}: ")
    assert message in str(err.value)


def test_a_state_file_notifier_cursor_starts_at_the_present_for_a_new_notifier(tmp_path: Path) -> None:
    path = tmp_path / "alarms.json"
    rig = Rig([gauge_rule()], state_path=path)
    rig.run(20, {G: 9})
    log_file = tmp_path / "alarms.jsonl"
    again = AlarmManager(rig.store, [gauge_rule()], [FileNotifier(log_file)], rig.clock, state_path=path)
    asyncio.run(again.deliver())
    assert not log_file.exists()  # the ALARM from before the notifier existed is history, not news
    assert again.pending() == {"file": 0}
