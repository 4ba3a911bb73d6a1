"""Monitoring: CloudWatch-equivalent metrics sampled into bounded time series, Prometheus exposition, a JSON query
API, alarms and the dashboard. ``Monitor`` is the service ``shardline serve`` and ``shardline up`` run."""

from .catalog import METRICS, Metric
from .series import SeriesKey, SeriesStore
from .service import Monitor

__all__ = ["METRICS", "Metric", "Monitor", "SeriesKey", "SeriesStore"]
