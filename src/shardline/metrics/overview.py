"""The dashboard's JSON (/api/overview, /api/streams/<name>/shards, /api/failures, /api/alarms), built from what the
monitor already holds.

Every figure that is a metric comes from the metrics snapshot (metrics.collect), so the dashboard, ``shardline top``
and /metrics show the same numbers by the same definitions: "dropped" records (with its delivery grace window), a
mapping's iterator age (zero while nothing waits) and a shard's read freshness are defined once, in collect. What is
no metric (names, ARNs, configuration, lineage, the latest error) is read beside it: from the engine's read view,
from the project's pools and mappings, and from the series store for last-minute rates. Leases (checkpoints, owners,
finished shards) come from each mapping's lease view (``Mapping.lease_of``), never from its lease store: a slow
store must not hold up the event loop, and the view is at most one shard sync pass behind (see runtime.supervisor).

The one exception is the shard map: the snapshot holds per-shard series only for streams small enough or with
enhanced monitoring (catalog.SHARD_SERIES_LIMIT), while the map shows every shard, so it reads the shard counters
from the view, with collect's definitions.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

from ..clock import Clock
from ..engine import EngineView, StreamView
from .catalog import Metric
from .collect import HistogramValue, ProjectLike, Snapshot, read_age_ms, waiting
from .emf import EmfMetrics
from .leases import mapping_leases
from .series import SeriesStore, bucket_quantile
from .sources import source_overview

__all__ = ["AlarmReads", "MonitoringSource", "NoSuchStream", "alarms", "failures", "overview", "shard_map"]

Labels = tuple[tuple[str, str], ...]


class AlarmReads(Protocol):
    def states(self) -> list[dict[str, Any]]: ...

    def history(self, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...


class MonitoringSource(Protocol):
    """What the monitoring endpoints read (metrics.service.Monitor provides it)."""

    clock: Clock
    view: EngineView
    project: ProjectLike | None
    store: SeriesStore
    emf: EmfMetrics
    samples: int  # samples taken, and the seconds they took
    sample_seconds: float

    @property
    def alarms(self) -> AlarmReads | None: ...

    def snapshot(self, now_ms: int | None = None) -> Snapshot: ...

    def catalog(self) -> dict[str, Metric]: ...


class NoSuchStream(LookupError):
    pass


class _Figures:
    """A snapshot's samples and histograms, looked up by family and labels (labels sorted, as collect makes them)."""

    def __init__(self, snap: Snapshot) -> None:
        self.samples: dict[str, dict[Labels, float]] = {}
        self.histograms: dict[str, dict[Labels, HistogramValue]] = {}
        for f in snap.families:
            self.samples[f.metric.name] = dict(f.samples)
            self.histograms[f.metric.name] = dict(f.histograms)
        self._sums: dict[tuple[str, str], dict[Labels, float]] = {}

    def get(self, name: str, labels: Labels) -> float | None:
        return self.samples.get(name, {}).get(labels)

    def ms(self, name: str, labels: Labels) -> int | None:
        """A figure kept in seconds, as whole milliseconds."""
        v = self.get(name, labels)
        return None if v is None else round(v * 1000)

    def count(self, name: str, labels: Labels) -> int:
        return int(self.get(name, labels) or 0)

    def sum(self, name: str, by: str, value: str, skip: tuple[str, str] | None = None) -> int:
        """The sum of the family's samples whose label ``by`` is ``value`` (leaving out those with label ``skip``)."""
        key = (name, repr(skip))
        sums = self._sums.get(key)
        if sums is None:
            acc: defaultdict[Labels, float] = defaultdict(float)
            for lb, v in self.samples.get(name, {}).items():
                if skip is None or skip not in lb:
                    acc[tuple(p for p in lb if p[0] == by)] += v
            sums = self._sums[key] = dict(acc)
        return int(sums.get(((by, value),), 0.0))

    def quantile_ms(self, name: str, labels: Labels, q: float) -> float | None:
        h = self.histograms.get(name, {}).get(labels)
        if h is None:
            return None
        alone = [c - (h.cumulative[i - 1] if i else 0.0) for i, c in enumerate(h.cumulative)]
        s = bucket_quantile(q, zip((*h.bounds, float("inf")), alone, strict=True))
        return None if s is None else s * 1000


def _labels(**kw: str) -> Labels:
    return tuple(sorted(kw.items()))


# ----------------------------------------------------------------- /api/overview
def overview(m: MonitoringSource) -> dict[str, Any]:
    now = m.clock.now_ms()
    snap = m.snapshot(now)
    fig = _Figures(snap)
    project = m.project
    return {
        "now_ms": now,
        "streams": [_stream(m.store, fig, st) for st in m.view.streams()],
        "functions": [_function(m.store, fig, name, pool) for name, pool in project.pools.items()] if project else [],
        "mappings": [_mapping(fig, mp) for mp in project.mappings] if project else [],
        "alarms": m.alarms.states() if m.alarms is not None else [],
        "sources": source_overview(snap),
        "metrics": {
            "series": len(m.store),
            "samples": m.samples,
            "sample_seconds_total": m.sample_seconds,
            "emf_lines": {"ok": m.emf.ok_lines, "invalid": m.emf.invalid_lines},
        },
    }


def _rate(store: SeriesStore, name: str, labels: Labels) -> float | None:
    return store.recent((name, labels), 60, "Rate")


def _stream(store: SeriesStore, fig: _Figures, st: StreamView) -> dict[str, Any]:
    sl = (("stream", st.name),)
    put = "shardline_stream_put_requests_total"
    totals = {
        "incoming_records": fig.count("shardline_stream_incoming_records_total", sl),
        "incoming_bytes": fig.count("shardline_stream_incoming_bytes_total", sl),
        "outgoing_records": fig.count("shardline_stream_outgoing_records_total", sl),
        "outgoing_bytes": fig.count("shardline_stream_outgoing_bytes_total", sl),
        "write_throttled": fig.count("shardline_stream_write_throttled_total", sl),
        "read_throttled": fig.count("shardline_stream_read_throttled_total", sl),
        "put_calls": fig.sum(put, "stream", st.name),
        "put_errors": fig.sum(put, "stream", st.name, skip=("outcome", "success")),
        "put_records_failed": fig.sum("shardline_stream_put_records_failed_total", "stream", st.name),
    }
    return {
        "name": st.name,
        "arn": st.arn,
        "status": st.status.value,
        "mode": st.mode.value,
        "retention_hours": st.retention_hours,
        "shards_open": fig.count("shardline_stream_shards", (("state", "open"), *sl)),
        "shards_closed": fig.count("shardline_stream_shards", (("state", "closed"), *sl)),
        "iterator_age_ms": fig.ms("shardline_stream_iterator_age_seconds", sl),
        "last_incoming_ms": fig.ms("shardline_stream_last_incoming_record_timestamp_seconds", sl),
        "shard_level_metrics": list(st.shard_level_metrics),
        "totals": totals,
        "rates": {
            "incoming_records_per_s": _rate(store, "shardline_stream_incoming_records_total", sl),
            "incoming_bytes_per_s": _rate(store, "shardline_stream_incoming_bytes_total", sl),
            "outgoing_records_per_s": _rate(store, "shardline_stream_outgoing_records_total", sl),
            "outgoing_bytes_per_s": _rate(store, "shardline_stream_outgoing_bytes_total", sl),
        },
        "put_latency_p50_ms": fig.quantile_ms("shardline_stream_put_latency_seconds", sl, 0.5),
        "put_latency_p99_ms": fig.quantile_ms("shardline_stream_put_latency_seconds", sl, 0.99),
    }


def _function(store: SeriesStore, fig: _Figures, name: str, pool: Any) -> dict[str, Any]:
    cfg = pool.config
    fl = (("function", name),)
    init = fig.histograms.get("shardline_function_init_duration_seconds", {}).get(fl)
    dur = fig.histograms.get("shardline_function_duration_seconds", {}).get(fl)
    return {
        "name": name,
        "arn": cfg.arn,
        "handler": cfg.handler,
        "timeout_s": cfg.timeout_s,
        "memory_mb": cfg.memory_mb,
        "concurrency": pool.concurrency,
        "in_flight": pool.in_flight,
        "invocations": pool.invocations,
        "errors": pool.errors,
        "errors_by_type": dict(pool.errors_by_type),
        "last_error": pool.recent_errors[-1] if pool.recent_errors else None,
        "timeouts": pool.timeouts,
        "throttles": pool.throttles,
        "cold_starts": pool.cold_starts,
        "duration_avg_ms": _average_ms(dur),
        "duration_p50_ms": fig.quantile_ms("shardline_function_duration_seconds", fl, 0.5),
        "duration_p99_ms": fig.quantile_ms("shardline_function_duration_seconds", fl, 0.99),
        "init_duration_avg_ms": _average_ms(init),
        "successes_per_s": _rate(store, "shardline_function_invocations_total", (*fl, ("outcome", "success"))),
    }


def _average_ms(h: HistogramValue | None) -> float | None:
    return h.total / h.count * 1000 if h is not None and h.count else None


def _mapping(fig: _Figures, mp: Any) -> dict[str, Any]:
    cfg = mp.config
    stats = mp.stats()
    base = {"mapping": mp.uuid, "function": cfg.function_name, "stream": cfg.stream_name}
    ml = _labels(**base)
    shards = []
    for sid, ss in mp.shard_stats().items():
        shl = _labels(**base, shard=sid)
        lag = fig.get("shardline_esm_lag_records", shl)
        shards.append(
            {
                "shard_id": sid,
                "iterator_age_ms": fig.ms("shardline_esm_iterator_age_seconds", shl),
                "lag_records": None if lag is None else int(lag),
                "millis_behind": fig.ms("shardline_esm_behind_latest_seconds", shl),
                "checkpoint_moved_ms": ss.checkpoint_moved_ms or None,
                "last_result": ss.last_result,
            }
        )
    lags = [s["lag_records"] for s in shards if s["lag_records"] is not None]
    status = next(
        (st for st in ("ok", "stall", "stop") if fig.get("shardline_esm_status", _labels(**base, status=st))), None
    )
    totals = dict(stats.totals)
    totals["dropped"] = fig.count("shardline_esm_dropped_records_total", ml)
    totals["failed_invoke_records"] = fig.count("shardline_esm_failed_invoke_records_total", ml)
    return {
        "uuid": mp.uuid,
        "function": cfg.function_name,
        "stream": cfg.stream_name,
        "event_source_arn": cfg.event_source_arn,
        "state": stats.state,
        "status": status,
        "last_result": stats.last_processing_result,
        "iterator_age_ms": max((s["iterator_age_ms"] or 0 for s in shards), default=None),
        "lag_records": sum(lags) if lags else None,
        "behind_latest_ms": stats.millis_behind,
        "shards_active": stats.shards_active,
        "shards_finished": stats.shards_finished,
        "totals": totals,
        "config": dataclasses.asdict(cfg),
        "shards": shards,
        "leases": _leases(mp),
    }


def _leases(mp: Any) -> dict[str, Any] | None:
    """Who owns which shard of ``mp``, from its lease view (stand-ins for a mapping may have none)."""
    view = getattr(mp, "lease_view", None)
    return mapping_leases(mp, view()) if view is not None else None


# ----------------------------------------------------------------- shards, failures, alarms
def shard_map(m: MonitoringSource, name: str) -> dict[str, Any]:
    st = m.view.stream(name)
    if st is None:
        raise NoSuchStream(f"stream {name!r} not found")
    now = m.clock.now_ms()
    mappings = [mp for mp in m.project.mappings if mp.config.stream_name == name] if m.project else []
    out = []
    for sh in st.shards():
        c = sh.counters
        row: dict[str, Any] = {
            "shard_id": sh.shard_id,
            "state": sh.state,
            "parent_shard_id": sh.parent_shard_id,
            "adjacent_parent_shard_id": sh.adjacent_parent_shard_id,
            "children": sh.children(),
            "starting_hash_key": str(sh.starting_hash_key),
            "ending_hash_key": str(sh.ending_hash_key),
            "starting_sequence_number": sh.starting_sequence_number,
            "ending_sequence_number": sh.ending_sequence_number,
            "created_ms": sh.created_ms,
            "closed_ms": sh.closed_ms,
            "incoming_records": c.incoming_records,
            "incoming_bytes": c.incoming_bytes,
            "outgoing_records": c.outgoing_records,
            "outgoing_bytes": c.outgoing_bytes,
            "write_throttled": c.write_throttled_records,
            "read_throttled": c.read_throttled_calls,
            "iterator_age_ms": read_age_ms(c, now),
            "incoming_records_per_s": _rate(
                m.store, "shardline_shard_incoming_records_total", (("shard", sh.shard_id), ("stream", name))
            ),
            "mappings": [],
        }
        for mp in mappings:
            lease = mp.lease_of(sh.shard_id)  # the mapping's lease view: no store call on the event loop
            ss = mp.shard_stats().get(sh.shard_id)
            row["mappings"].append(
                {
                    "uuid": mp.uuid,
                    "function": mp.config.function_name,
                    "checkpoint": lease.checkpoint if lease is not None else None,
                    "finished": lease.finished if lease is not None else False,
                    "owner": lease.owner if lease is not None else None,
                    "lag_records": ss.lag_records if ss is not None else None,
                    "iterator_age_ms": (ss.iterator_age_ms if waiting(ss) else 0) if ss is not None else None,
                    "millis_behind": ss.millis_behind if ss is not None else None,
                }
            )
        out.append(row)
    return {"stream": name, "shards": out}


def failures(project: ProjectLike | None, limit: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for mp in project.mappings if project is not None else []:
        for msg in list(mp.recent_failures):
            rows.append(
                {
                    "mapping": mp.uuid,
                    "function": mp.config.function_name,
                    "stream": mp.config.stream_name,
                    "record": msg,
                }
            )
    rows.sort(key=lambda r: str(r["record"].get("timestamp", "")), reverse=True)
    pools: Iterable[Any] = project.pools.values() if project is not None else ()
    errors = [e for pool in pools for e in pool.recent_errors]
    errors.sort(key=lambda e: str(e["timestamp"]), reverse=True)
    return {"failures": rows[:limit], "function_errors": errors[:limit]}


def alarms(a: AlarmReads | None, name: str | None, limit: int) -> dict[str, Any]:
    if a is None:
        return {"alarms": [], "history": []}
    return {"alarms": a.states(), "history": a.history(name or None, limit)}
