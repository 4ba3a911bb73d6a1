"""CloudWatch-style alarms over the metric store, the built-in rules that warn before records are lost, and the
``alarms:`` section of ``shardline.yml``.

- ``rules``: an alarm rule and how its datapoints and state are evaluated (CloudWatch's documented rules);
- ``forecast``: the data-loss forecast (seconds until the iterator age reaches the retention period);
- ``manager``: the AlarmManager, which keeps states, history and delivery cursors and hands transitions to the
  notifiers of ``shardline.metrics.notify``;
- ``builtin``: the built-in rules on the data directory, and per stream, mapping and function;
- ``config``: the ``alarms:`` section below (its ``notify`` key is parsed by ``shardline.metrics.notify``).

```yaml
alarms:
  defaults: {iteratorAgeRetention: true, forecast: {horizonMinutes: 60}, abandonedAfterHours: 168,
             poisonPillMinutes: 15, throttling: true, droppedRecords: true, deadLetteredRecords: true,
             onFailureDestinationStuck: true, functionErrors: true, functionTimeouts: true, storage: true, period: 60,
             disable: ["stream:*:read-throttled"]}
  notify: {log: true, file: alarms.jsonl, webhook: {url: "http://127.0.0.1:9000/hook", retries: 3}}
  rules:
    - name: orders-errors
      metric: shardline_function_invocations_total
      labels: {function: process, outcome: error}  # also `dimensions`, in CloudWatch's names (FunctionName, ...)
      statistic: Sum                # Average | Maximum | Minimum | Sum | SampleCount | Rate | pNN (default Sum)
      period: 60                    # seconds: a divisor of 60 or a multiple of 60 (default 60)
      evaluationPeriods: 3          # N (default 1)
      datapointsToAlarm: 2          # M (default N)
      threshold: 1
      comparison: GreaterThanOrEqualToThreshold   # also spelled comparisonOperator (default as shown)
      treatMissingData: notBreaching              # missing | notBreaching | breaching | ignore (default missing)
      severity: critical                          # info | warning | critical (default warning)
      groupBy: [shard]                            # evaluate each shard's series on its own (default: combine)
```
``rules`` may also be a mapping of name to rule, and ``definitions`` is accepted for it (serverless-plugin-aws-alerts).
"""

from ..notify import AlarmConfigError
from .builtin import AlarmDefaults, MappingInfo, StreamInfo, default_rules, default_rules_for, merge_rules
from .config import AlarmsConfig, parse_alarms
from .forecast import fit_time_to_loss
from .manager import AlarmManager, Transition
from .rules import ALARM, COMPARISONS, INSUFFICIENT_DATA, OK, TREATMENTS, AlarmRule, Forecast, InvalidRule, decide

__all__ = [
    "ALARM",
    "COMPARISONS",
    "INSUFFICIENT_DATA",
    "OK",
    "TREATMENTS",
    "AlarmConfigError",
    "AlarmDefaults",
    "AlarmManager",
    "AlarmRule",
    "AlarmsConfig",
    "Forecast",
    "InvalidRule",
    "MappingInfo",
    "StreamInfo",
    "Transition",
    "decide",
    "default_rules",
    "default_rules_for",
    "fit_time_to_loss",
    "merge_rules",
    "parse_alarms",
]
