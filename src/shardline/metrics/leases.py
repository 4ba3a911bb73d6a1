"""Shard-lease monitoring: what each worker's lease loop did (runtime.leases.coordinator.LeaseCounters) as metric
families, and who owns which shard as JSON for the dashboard and ``shardline top``.

Every series carries the mapping labels and ``worker`` (this process's id in the lease table), so a Prometheus that
scrapes several workers can ``sum by (mapping)`` the owned leases (the shard count when every shard is owned) and
see which worker takes, steals, loses or hands over leases. A mapping without shared leases (``shardline up``, one
process holding every lease) exports only its owned count.

``shardline up --workers N`` runs no mapping itself; its /metrics carries how often it restarted each local worker
(runtime.localworkers), labelled ``worker`` with the id of the slot's first process.
"""

from __future__ import annotations

import logging
import statistics
from typing import Any, Protocol, runtime_checkable

from ..runtime.leases import Lease
from ..runtime.supervisor import Mapping
from .catalog import Metric
from .collect import Family, FamilyHook, Labels

__all__ = [
    "LEASE_METRICS",
    "WORKER_METRICS",
    "MappingsLike",
    "WorkersLike",
    "lease_families",
    "lease_hook",
    "mapping_leases",
    "restart_hook",
]

log = logging.getLogger("shardline.metrics")

_L = ("mapping", "function", "stream", "worker")
_CW = "n/a (the KCL publishes lease metrics to CloudWatch from the worker; shardline exports them here)"

LEASE_METRICS = [
    Metric("shardline_lease_owned", "gauge", "leases", "Shard leases this worker holds now.", _CW, _L),
    Metric(
        "shardline_lease_epoch",
        "gauge",
        "1",
        "Per lease this worker holds: its fencing epoch (one series per owned shard: who owns what).",
        _CW,
        (*_L, "shard"),
    ),
    Metric("shardline_lease_taken_total", "counter", "leases", "Unowned or expired leases taken.", _CW, _L),
    Metric("shardline_lease_stolen_total", "counter", "leases", "Leases stolen from a live worker.", _CW, _L),
    Metric(
        "shardline_lease_handoffs_received_total",
        "counter",
        "leases",
        "Leases another worker handed over to this one (graceful handoff).",
        _CW,
        _L,
    ),
    Metric(
        "shardline_lease_handoff_requests_total",
        "counter",
        "requests",
        "Handoffs this worker asked a more loaded worker for.",
        _CW,
        _L,
    ),
    Metric("shardline_lease_released_total", "counter", "leases", "Leases released (handoff, stop, end).", _CW, _L),
    Metric(
        "shardline_lease_lost_total",
        "counter",
        "leases",
        "Leases lost: expired or taken by another worker while held; their shards stopped without writing.",
        _CW,
        _L,
    ),
    Metric("shardline_lease_cleaned_total", "counter", "leases", "Finished parent leases deleted.", _CW, _L),
    Metric(
        "shardline_lease_store_errors_total",
        "counter",
        "errors",
        "Lease-store calls that failed (unreachable or timed out).",
        _CW,
        _L,
    ),
    Metric("shardline_lease_store_statements_total", "counter", "statements", "Lease-store statements sent.", _CW, _L),
    Metric(
        "shardline_lease_store_statement_seconds_total",
        "counter",
        "seconds",
        "Time spent waiting for the lease store (divide by the statements for the mean latency).",
        _CW,
        _L,
    ),
    Metric(
        "shardline_lease_store_latency_seconds",
        "gauge",
        "seconds",
        "Lease-store statement latency over the latest statements (quantile 0.5, 0.99 and 1 = the slowest).",
        _CW,
        (*_L, "quantile"),
    ),
]

WORKER_METRICS = [
    Metric(
        "shardline_worker_restarts_total",
        "counter",
        "restarts",
        "Local worker processes `up --workers` started again after one exited (label worker: the slot's first id).",
        "n/a (Lambda replaces its pollers itself; shardline exports the local workers' restarts here)",
        ("worker",),
    ),
]


def _labels(**kw: str) -> Labels:
    return tuple(sorted(kw.items()))


def _quantile(values: list[float], q: float) -> float:
    if q >= 1:
        return max(values)
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def lease_families(mappings: list[Mapping]) -> list[Family]:
    """The lease families of every mapping (only the non-empty ones)."""
    fams = {m.name: Family(m) for m in LEASE_METRICS}

    def add(name: str, labels: Labels, value: float) -> None:
        fams[name].samples.append((labels, float(value)))

    for mp in list(mappings):
        store = getattr(mp, "store", None)  # stand-ins for a mapping may have no lease store
        if store is None:
            continue
        cfg = mp.config
        base = {"mapping": mp.uuid, "function": cfg.function_name, "stream": cfg.stream_name, "worker": store.owner}
        ml = _labels(**base)
        w = getattr(mp, "lease_worker", None)
        if w is None:
            add("shardline_lease_owned", ml, len(mp.shard_stats()))
            continue
        held = w.owned()
        add("shardline_lease_owned", ml, len(held))
        for lease in held.values():
            add("shardline_lease_epoch", _labels(**base, shard=lease.shard_id), lease.epoch)
        c = w.counters
        add("shardline_lease_taken_total", ml, c.taken)
        add("shardline_lease_stolen_total", ml, c.stolen)
        add("shardline_lease_handoffs_received_total", ml, c.handed_off)
        add("shardline_lease_handoff_requests_total", ml, c.handoffs_requested)
        add("shardline_lease_released_total", ml, c.released)
        add("shardline_lease_lost_total", ml, c.lost)
        add("shardline_lease_cleaned_total", ml, c.cleaned)
        add("shardline_lease_store_errors_total", ml, c.store_errors)
        add("shardline_lease_store_statements_total", ml, c.statements)
        add("shardline_lease_store_statement_seconds_total", ml, c.statement_seconds)
        recent = list(c.latencies[-1024:])
        if recent:
            for q in (0.5, 0.99, 1.0):
                add("shardline_lease_store_latency_seconds", _labels(**base, quantile=str(q)), _quantile(recent, q))
    return [f for f in fams.values() if f.samples]


class MappingsLike(Protocol):
    """What the lease hook reads: the mappings running now (a ``runtime.project.Project``)."""

    mappings: list[Mapping]


def lease_hook(project: MappingsLike) -> FamilyHook:
    """A collector hook sampling the lease families of the mappings ``project`` runs at each sample."""
    return FamilyHook(tuple(LEASE_METRICS), lambda now_ms: lease_families(project.mappings))


@runtime_checkable
class WorkersLike(Protocol):
    """What the restart hook reads: the local workers of ``up --workers`` (a ``runtime.localworkers.LocalWorkers``)."""

    def restart_counts(self) -> dict[str, int]: ...


def restart_hook(workers: WorkersLike) -> FamilyHook:
    """A collector hook sampling how often ``workers`` restarted each worker (every slot, from zero)."""
    [metric] = WORKER_METRICS

    def sample(now_ms: int) -> list[Family]:
        fam = Family(metric, [(_labels(worker=w), float(n)) for w, n in sorted(workers.restart_counts().items())])
        return [fam] if fam.samples else []

    return FamilyHook(tuple(WORKER_METRICS), sample)


def _lease_row(lease: Lease) -> dict[str, Any]:
    return {
        "shard_id": lease.shard_id,
        "owner": lease.owner,
        "epoch": lease.epoch,
        "checkpoint": lease.checkpoint,
        "finished": lease.finished,
        "handoff_to": lease.handoff_to,
    }


def mapping_leases(mp: Mapping, rows: list[Lease] | None = None) -> dict[str, Any] | None:
    """Who owns which shard of ``mp`` (from the lease table, or ``rows`` already read from it), this worker's id and
    its lease counters; None when the table cannot be read now."""
    store = getattr(mp, "store", None)
    if store is None:
        return None
    if rows is None:
        try:
            rows = store.leases(mp.uuid)
        except Exception as exc:  # the lease store unreachable: the rest of the page still shows
            log.debug("metrics: cannot read the leases of %s: %s", mp.uuid, exc)
            return None
    w = getattr(mp, "lease_worker", None)
    out: dict[str, Any] = {
        "worker": store.owner,
        "backend": store.backend,
        "shared": w is not None,
        "owned": len(w.owned()) if w is not None else len(mp.shard_stats()),
        "shards": [_lease_row(lease) for lease in rows],
    }
    if w is not None:
        c = w.counters
        out["counters"] = {
            "taken": c.taken,
            "stolen": c.stolen,
            "handoffs_received": c.handed_off,
            "handoff_requests": c.handoffs_requested,
            "released": c.released,
            "lost": c.lost,
            "store_errors": c.store_errors,
            "statements": c.statements,
            "statement_seconds": c.statement_seconds,
        }
    return out
