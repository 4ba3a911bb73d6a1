"""The ``alarms:`` section of ``shardline.yml`` (its keys: the docstring of ``shardline.metrics.alarms``). Every
error is an AlarmConfigError naming the file, the key path and what is allowed."""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, NamedTuple

from ..._config import ConfigFile
from ..catalog import CUSTOM_PREFIX, METRICS
from ..notify import AlarmConfigError, NotifyConfig, parse_notify
from ..statistic import percentile
from .builtin import AlarmDefaults
from .rules import AlarmRule, InvalidRule

__all__ = ["AlarmsConfig", "parse_alarms"]


class AlarmsConfig(NamedTuple):
    rules: list[AlarmRule]
    notify: NotifyConfig
    defaults: AlarmDefaults


_RULE_KEYS = {
    "name", "metric", "labels", "dimensions", "statistic", "period", "evaluationPeriods", "datapointsToAlarm",
    "threshold", "comparison", "comparisonOperator", "treatMissingData", "severity", "description", "enabled",
    "groupBy", "namespace", "type",
}  # fmt: skip
_DEFAULT_KEYS = {
    "enabled", "iteratorAgeRetention", "forecast", "abandonedAfterHours", "poisonPillMinutes", "throttling",
    "droppedRecords", "deadLetteredRecords", "onFailureDestinationStuck", "functionErrors", "functionTimeouts",
    "storage", "period", "disable",
}  # fmt: skip
_FIELD_KEYS = {"treat_missing_data": "treatMissingData", "evaluation_periods": "evaluationPeriods",
               "datapoints_to_alarm": "datapointsToAlarm"}  # fmt: skip
# CloudWatch dimension names -> our labels, so dimensions copied from a CloudFormation alarm keep working
_DIMENSIONS = {"StreamName": "stream", "ShardId": "shard", "FunctionName": "function",
               "EventSourceMappingUUID": "mapping", "ConsumerName": "consumer"}  # fmt: skip


def parse_alarms(data: Any, path: Path) -> AlarmsConfig:
    """The ``alarms:`` section of ``path`` (its value; None when absent). Errors name the file, key and choices."""
    where = "alarms"
    if data is None:
        return AlarmsConfig([], NotifyConfig(), AlarmDefaults())
    cf = ConfigFile(path, AlarmConfigError)
    if not isinstance(data, dict):
        raise cf.fail(where, "must be a mapping with 'defaults', 'notify' and 'rules'")
    cf.check_keys(where, data, {"defaults", "notify", "rules", "definitions"})
    rules: list[AlarmRule] = []
    for key in ("rules", "definitions"):
        raw = data.get(key)
        if raw is None:
            continue
        if isinstance(raw, dict):  # serverless-plugin-aws-alerts: rule name -> definition
            items = [(f"{where}.{key}.{k}", {"name": k, **v} if isinstance(v, dict) else v) for k, v in raw.items()]
        elif isinstance(raw, list):
            items = [(f"{where}.{key}[{i}]", v) for i, v in enumerate(raw)]
        else:
            raise cf.fail(f"{where}.{key}", "must be a list of rules (or a mapping of rule name to rule)")
        for w, v in items:
            rule = _parse_rule(cf, w, v)
            if any(r.name == rule.name for r in rules):
                raise cf.fail(f"{w}.name", f"{rule.name!r} is used by another rule; names must be unique")
            rules.append(rule)
    notify = parse_notify(data.get("notify"), path, f"{where}.notify")
    return AlarmsConfig(rules, notify, _parse_defaults(cf, f"{where}.defaults", data.get("defaults")))


def _metric(cf: ConfigFile, where: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise cf.fail(where, "must be a metric name such as shardline_esm_iterator_age_seconds")
    if name in METRICS or name.startswith(CUSTOM_PREFIX):
        return name
    cw = [m.name for m in METRICS.values() if re.search(rf"(^|[\s/]){re.escape(name)}(\s|$)", m.cloudwatch)]
    hint = difflib.get_close_matches(name, list(METRICS), n=1)
    if cw:
        suffix = f" (CloudWatch's {name} is {' or '.join(cw)}, in base units)"
    else:
        suffix = f" (did you mean '{hint[0]}'?)" if hint else f" (allowed: a shardline_ metric or {CUSTOM_PREFIX}*)"
    raise cf.fail(where, f"unknown metric {name!r}{suffix}")


def _parse_rule(cf: ConfigFile, where: str, v: Any) -> AlarmRule:
    if not isinstance(v, dict):
        raise cf.fail(where, "must be a mapping with at least 'name', 'metric' and 'threshold'")
    cf.check_keys(where, v, _RULE_KEYS)
    for key in ("name", "metric", "threshold"):
        if key not in v:
            raise cf.fail(f"{where}.{key}", "is required")
    if not isinstance(v["name"], str) or not v["name"]:
        raise cf.fail(f"{where}.name", "must be a non-empty string")
    metric = _metric(cf, f"{where}.metric", v["metric"])
    if v.get("type", "static") != "static":
        raise cf.fail(f"{where}.type", f"{v['type']!r} is not supported (allowed: static)")
    threshold = v["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise cf.fail(f"{where}.threshold", f"{threshold!r} is not a number")
    group_by = [v["groupBy"]] if isinstance(v.get("groupBy"), str) else v.get("groupBy", [])
    if not isinstance(group_by, list) or not all(isinstance(g, str) for g in group_by):
        raise cf.fail(f"{where}.groupBy", "must be a list of label names")
    cmp_key = "comparisonOperator" if "comparisonOperator" in v else "comparison"
    statistic = str(v.get("statistic", "Sum"))
    kind = METRICS[metric].kind if metric in METRICS else "summary"
    if (statistic == "Rate" and kind != "counter") or (percentile(statistic) is not None and kind != "histogram"):
        raise cf.fail(f"{where}.statistic", f"{statistic!r} does not apply to {metric}, a {kind}")
    n = cf.integer(f"{where}.evaluationPeriods", v.get("evaluationPeriods", 1), 1, 86_400)
    try:
        return AlarmRule(
            name=v["name"],
            metric=metric,
            labels=_labels(cf, where, v, metric),
            threshold=float(threshold),
            comparison=v.get(cmp_key, "GreaterThanOrEqualToThreshold"),
            statistic=statistic,
            period_s=cf.integer(f"{where}.period", v.get("period", 60), 1, 86_400),
            evaluation_periods=n,
            datapoints_to_alarm=cf.integer(f"{where}.datapointsToAlarm", v.get("datapointsToAlarm", n), 1, n),
            treat_missing_data=v.get("treatMissingData", "missing"),
            severity=v.get("severity", "warning"),
            description=str(v.get("description", "")),
            enabled=cf.boolean(f"{where}.enabled", v.get("enabled", True)),
            group_by=tuple(group_by),
        )
    except InvalidRule as exc:
        key = cmp_key if exc.field_name == "comparison" else _FIELD_KEYS.get(exc.field_name, exc.field_name)
        raise cf.fail(f"{where}.{key}", exc.message) from None


def _labels(cf: ConfigFile, where: str, v: dict[str, Any], metric: str) -> dict[str, str]:
    key = "labels" if "labels" in v else "dimensions"
    raw = v.get(key, {})
    if isinstance(raw, list):  # CloudFormation: [{Name: ..., Value: ...}]
        pairs = [
            (d.get("Name", d.get("name")), d.get("Value", d.get("value"))) if isinstance(d, dict) else (None, None)
            for d in raw
        ]
        for i, (name, value) in enumerate(pairs):
            if not isinstance(name, str) or value is None:
                raise cf.fail(f"{where}.{key}[{i}]", "must be {Name: ..., Value: ...}")
        raw = dict(pairs)
    if not isinstance(raw, dict):
        raise cf.fail(f"{where}.{key}", "must be a mapping of label name to value")
    out = {_DIMENSIONS.get(str(k), str(k)): str(val) for k, val in raw.items()}
    known = METRICS[metric].labels if metric in METRICS else ()
    for label in out:
        if known and label not in known:
            raise cf.fail(f"{where}.{key}.{label}", f"{metric} has no such label (allowed: {', '.join(known)})")
    return out


def _parse_defaults(cf: ConfigFile, where: str, data: Any) -> AlarmDefaults:
    if data is None or isinstance(data, bool):
        return AlarmDefaults(enabled=data is not False)
    if not isinstance(data, dict):
        raise cf.fail(where, "must be a mapping (or false to turn every built-in rule off)")
    cf.check_keys(where, data, _DEFAULT_KEYS)
    base = AlarmDefaults()
    ratios = base.iterator_age_ratios
    age = data.get("iteratorAgeRetention", True)
    if isinstance(age, dict):
        cf.check_keys(f"{where}.iteratorAgeRetention", age, {"warning", "critical"})
        ratios = tuple(
            (cf.number(f"{where}.iteratorAgeRetention.{sev}", age.get(sev, r), 0.01, 1), sev) for r, sev in ratios
        )
    elif not cf.boolean(f"{where}.iteratorAgeRetention", age):
        ratios = ()
    fc = data.get("forecast", True)
    horizon, window = base.forecast_horizon_s, base.forecast_window_s
    if isinstance(fc, dict):
        cf.check_keys(f"{where}.forecast", fc, {"enabled", "horizonMinutes", "windowMinutes"})
        horizon = round(60 * cf.number(f"{where}.forecast.horizonMinutes", fc.get("horizonMinutes", 60), 1, 1e5))
        window = round(60 * cf.number(f"{where}.forecast.windowMinutes", fc.get("windowMinutes", 10), 1, 50))
        forecast = cf.boolean(f"{where}.forecast.enabled", fc.get("enabled", True))
    else:
        forecast = cf.boolean(f"{where}.forecast", fc)
    ab = data.get("abandonedAfterHours", 168)
    by_stream: dict[str, int | None] = {}
    if isinstance(ab, dict):
        cf.check_keys(f"{where}.abandonedAfterHours", ab, {"default", "streams"})
        streams = ab.get("streams") or {}
        if not isinstance(streams, dict):
            raise cf.fail(f"{where}.abandonedAfterHours.streams", "must be a mapping of stream name to hours")
        by_stream = {str(k): _hours(cf, f"{where}.abandonedAfterHours.streams.{k}", h) for k, h in streams.items()}
        ab = ab.get("default", 168)
        after = _hours(cf, f"{where}.abandonedAfterHours.default", ab)
    else:
        after = _hours(cf, f"{where}.abandonedAfterHours", ab)
    pp = data.get("poisonPillMinutes", 15)
    poison = None if pp is False else round(60 * cf.number(f"{where}.poisonPillMinutes", pp, 1, 1e5))
    disable = [data["disable"]] if isinstance(data.get("disable"), str) else data.get("disable", [])
    if not isinstance(disable, list) or not all(isinstance(p, str) for p in disable):
        raise cf.fail(f"{where}.disable", "must be a list of rule names or patterns such as 'stream:*:read-*'")
    period = cf.integer(f"{where}.period", data.get("period", 60), 1, 3600)
    if 60 % period and period % 60:
        raise cf.fail(f"{where}.period", f"{period} is not allowed (allowed: a divisor of 60 or a multiple of 60)")

    def flag(key: str) -> bool:
        return cf.boolean(f"{where}.{key}", data.get(key, True))

    return AlarmDefaults(
        enabled=flag("enabled"),
        iterator_age_ratios=ratios,
        forecast=forecast,
        forecast_horizon_s=horizon,
        forecast_window_s=window,
        abandoned_after_s=after,
        abandoned_by_stream=by_stream,
        poison_pill_s=poison,
        throttling=flag("throttling"),
        dropped_records=flag("droppedRecords"),
        dead_lettered_records=flag("deadLetteredRecords"),
        on_failure_destination_stuck=flag("onFailureDestinationStuck"),
        function_errors=flag("functionErrors"),
        function_timeouts=flag("functionTimeouts"),
        storage=flag("storage"),
        period_s=period,
        disable=tuple(disable),
    )


def _hours(cf: ConfigFile, where: str, value: Any) -> int | None:
    """Hours to seconds; false turns the rule off."""
    if value is False:
        return None
    return round(3600 * cf.number(where, value, 0.01, 87_600))
