"""One sample of every metric: engine counters (streams, shards, through the engine's read view), runtime counters
(functions, mappings), custom EMF metrics and alarm states, read from the objects that keep them (nothing on a hot
path pushes anywhere), plus the families of the collector's hooks (``FamilyHook``: the components a feature adds,
such as CDC sources and shard leases, bring their own). The figures the dashboard shows are defined here once (see
metrics.overview).

A sample is a list of families (see catalog); ``Snapshot.series()`` flattens it into the store's keys, histograms
into their ``_bucket``/``_sum``/``_count`` series. Counters derived from two engine counters (successes = calls -
errors) are kept monotonic: the two are bumped at different moments, and a derived counter that dipped would read
as a reset.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..engine import Engine, StreamView
from ..engine.stats import LATENCY_BUCKETS_MS
from ..engine.view import STORAGE_STATES, HistogramView, ShardCountersView, StreamCountersView
from ..runtime.functions import FunctionPool
from ..runtime.supervisor import Mapping
from .catalog import METRICS, SHARD_SERIES_LIMIT, Metric
from .emf import EmfMetrics
from .series import SeriesKey

__all__ = [
    "BATCH_BUCKETS",
    "Collector",
    "Family",
    "FamilyHook",
    "HistogramValue",
    "ProjectLike",
    "Snapshot",
    "format_float",
    "read_age_ms",
    "waiting",
]

log = logging.getLogger("shardline.metrics")

Labels = tuple[tuple[str, str], ...]

LATENCY_BOUNDS_S = tuple(b / 1000 for b in LATENCY_BUCKETS_MS)
BATCH_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)
ESM_STATES = ("Creating", "Enabling", "Enabled", "Disabling", "Disabled", "Updating", "Deleting")
ALARM_STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
STALL_AFTER_MS = 60_000
DELIVERY_GRACE_MS = 3_000  # how long a discarded batch may take to reach its destination before it counts as dropped
READ_FRESH_MS = 60_000  # a shard's GetRecords age counts only this long after its latest read

# Engine shard counter -> (shard family, the CloudWatch shard-level metric that enhanced monitoring names)
_SHARD_COUNTERS = (
    ("incoming_records", "shardline_shard_incoming_records_total", "IncomingRecords"),
    ("incoming_bytes", "shardline_shard_incoming_bytes_total", "IncomingBytes"),
    ("outgoing_records", "shardline_shard_outgoing_records_total", "OutgoingRecords"),
    ("outgoing_bytes", "shardline_shard_outgoing_bytes_total", "OutgoingBytes"),
    ("write_throttled_records", "shardline_shard_write_throttled_total", "WriteProvisionedThroughputExceeded"),
    ("read_throttled_calls", "shardline_shard_read_throttled_total", "ReadProvisionedThroughputExceeded"),
)


class ProjectLike(Protocol):
    pools: dict[str, FunctionPool]
    mappings: list[Mapping]


class AlarmStates(Protocol):
    def states(self) -> list[dict[str, Any]]: ...


@dataclass(slots=True)
class HistogramValue:
    bounds: tuple[float, ...]  # upper bounds in base units, ascending, without +Inf
    cumulative: list[float]  # observations <= each bound, then the total (the +Inf bucket)
    total: float  # sum of observed values

    @property
    def count(self) -> float:
        return self.cumulative[-1]


@dataclass(slots=True)
class Family:
    metric: Metric
    samples: list[tuple[Labels, float]] = field(default_factory=list)
    histograms: list[tuple[Labels, HistogramValue]] = field(default_factory=list)
    summaries: list[tuple[Labels, float, float]] = field(default_factory=list)  # labels, sum, count


@dataclass(frozen=True, slots=True)
class FamilyHook:
    """More families, read from a component beside the engine and the project's pools and mappings (CDC sources:
    metrics.sources, shard leases: metrics.leases). ``metrics`` are all the families ``sample`` may return (the
    catalogue lists them); ``sample`` is called with the sample's time and returns the non-empty ones."""

    metrics: tuple[Metric, ...]
    sample: Callable[[int], Iterable[Family]]


@dataclass(slots=True)
class Snapshot:
    now_ms: int
    families: list[Family]

    def family(self, name: str) -> Family | None:
        for f in self.families:
            if f.metric.name == name:
                return f
        return None

    def series(self) -> dict[SeriesKey, float]:
        out: dict[SeriesKey, float] = {}
        for f in self.families:
            name = f.metric.name
            for labels, value in f.samples:
                out[(name, labels)] = value
            for labels, h in f.histograms:
                for bound, c in zip(itertools.chain(h.bounds, (float("inf"),)), h.cumulative, strict=True):
                    out[(f"{name}_bucket", tuple(sorted((*labels, ("le", format_float(bound))))))] = c
                out[(f"{name}_sum", labels)] = h.total
                out[(f"{name}_count", labels)] = h.count
            for labels, total, count in f.summaries:
                out[(f"{name}_sum", labels)] = total
                out[(f"{name}_count", labels)] = count
        return out


def format_float(v: float) -> str:
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _labels(**kw: str) -> Labels:
    return tuple(sorted(kw.items()))


def _latency(h: HistogramView) -> HistogramValue:
    return HistogramValue(LATENCY_BOUNDS_S, list(itertools.accumulate(h.counts)), h.sum_ms / 1000)


def read_age_ms(c: ShardCountersView, now_ms: int) -> int | None:
    """The shard's iterator age (MillisBehindLatest of its latest GetRecords) while that read is recent: a shard
    nobody reads any more has no iterator age, rather than the age it had when its reader left."""
    fresh = c.last_read_ms >= 0 and now_ms - c.last_read_ms <= READ_FRESH_MS
    return c.iterator_age_ms if fresh else None


class ShardProgress(Protocol):
    """What ``waiting`` reads of a processor's shard stats (runtime.stats.ShardStats, whose fields these are)."""

    lag_records: int | None
    millis_behind: int
    outstanding: int


def waiting(ss: ShardProgress) -> bool:
    """Whether records wait for the mapping in this shard: records it fetched and has not settled (a batch in flight
    or retried: a poison record at the tip waits as much as a backlog), or records past those, counted when the
    source can count them, else as the latest read's MillisBehindLatest. A shard with nothing waiting has no
    iterator age, however old its last record."""
    if ss.outstanding > 0:
        return True
    return ss.lag_records > 0 if ss.lag_records is not None else ss.millis_behind > 0


class _BatchSizes:
    """A cumulative histogram of batch sizes, fed from the processors' recent-batch lists."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BATCH_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, n: int) -> None:
        i = 0
        while i < len(BATCH_BUCKETS) and n > BATCH_BUCKETS[i]:
            i += 1
        self.counts[i] += 1
        self.total += n

    def value(self) -> HistogramValue:
        return HistogramValue(BATCH_BUCKETS, list(itertools.accumulate(self.counts)), self.total)


@dataclass(slots=True)
class _ShardSeen:
    stats: Any  # the processor's ShardStats object; a new object means a new processor
    invoked: int
    first_seen_ms: int


class Collector:
    """Reads every counter into a Snapshot. Keeps a little state of its own (batch-size histograms, monotonic
    guards), so one Collector serves one process."""

    def __init__(
        self,
        engine: Engine,
        *,
        project: ProjectLike | None = None,
        emf: EmfMetrics | None = None,
        alarms: AlarmStates | None = None,
    ) -> None:
        self.view = engine.view
        self.project = project
        self.emf = emf
        self.alarms = alarms
        self.store_series = 0  # set by the monitor
        self.sample_seconds = 0.0  # set by the monitor
        self._mono: dict[tuple[str, Labels, object], float] = {}
        self._mono_seen: set[tuple[str, Labels, object]] = set()
        self._batches: dict[str, _BatchSizes] = {}
        self._shards_seen: dict[tuple[str, str], _ShardSeen] = {}
        self._dropped_window: dict[str, deque[tuple[int, float]]] = {}
        self._failed: set[str] = set()
        self.hooks: list[FamilyHook] = []
        self._failed_hooks: list[FamilyHook] = []

    def catalog(self) -> dict[str, Metric]:
        """Every family a sample may hold but the custom (EMF) ones: the built-in families and the hooks'."""
        return {**METRICS, **{m.name: m for hook in self.hooks for m in hook.metrics}}

    def collect(self, now_ms: int) -> Snapshot:
        fams = {name: Family(m) for name, m in METRICS.items()}
        self._mono_seen = set()
        for st in self.view.streams():
            self._stream(fams, st, now_ms)
        if self.project is not None:
            for name, pool in list(self.project.pools.items()):
                self._function(fams, name, pool)
            for mapping in list(self.project.mappings):
                try:
                    self._mapping(fams, mapping, now_ms)
                except Exception:
                    # One mapping whose state cannot be read (its lease store closing, say) must not blank the rest.
                    if mapping.uuid not in self._failed:
                        log.exception("metrics: cannot sample mapping %s", mapping.uuid)
                        self._failed.add(mapping.uuid)
        if self.alarms is not None:
            f = fams["shardline_alarm_state"]
            for a in self.alarms.states():
                for state in ALARM_STATES:
                    f.samples.append((_labels(alarm=str(a["name"]), state=state), float(a.get("state") == state)))
        journal = self.view.journal()
        if journal is not None:
            fams["shardline_journal_frames_total"].samples.append(((), float(journal.frames_written)))
            fams["shardline_journal_checkpoints_total"].samples.append(((), float(journal.checkpoints)))
            fams["shardline_journal_staged_bytes"].samples.append(((), float(journal.staged_bytes)))
            fams["shardline_journal_unreplayed_bytes"].samples.append(((), float(journal.unreplayed_bytes)))
            fams["shardline_journal_replayed_records"].samples.append(((), float(journal.replayed_records)))
            fams["shardline_storage_fsync_rounds_total"].samples.append(((), float(journal.fsync_rounds)))
        storage = self.view.storage().state
        fams["shardline_storage_state"].samples += [(_labels(state=s), float(s == storage)) for s in STORAGE_STATES]
        fams["shardline_metrics_series"].samples.append(((), float(self.store_series)))
        fams["shardline_metrics_sample_seconds_total"].samples.append(((), self.sample_seconds))
        if self.emf is not None:
            fams["shardline_metrics_emf_lines_total"].samples += [
                ((("result", "ok"),), float(self.emf.ok_lines)),
                ((("result", "invalid"),), float(self.emf.invalid_lines)),
            ]
        out = [f for f in fams.values() if f.samples or f.histograms]
        for hook in self.hooks:
            try:
                out += hook.sample(now_ms)
            except Exception:
                if hook not in self._failed_hooks:  # (once: a hook that keeps failing must not flood the log)
                    self._failed_hooks.append(hook)
                    log.exception("metrics: a collector hook failed")
        if self.emf is not None:
            for family, series in self.emf.families():
                unit = self.emf.units.get(family, "None")
                metric = Metric(
                    family,
                    "summary",
                    unit,
                    f"Custom metric printed by handlers in Embedded Metric Format (unit {unit}).",
                    "the EMF metric itself, in its namespace",
                )
                out.append(Family(metric, summaries=[(lb, acc[0], acc[1]) for lb, acc in series.items()]))
        self._mono = {k: v for k, v in self._mono.items() if k in self._mono_seen}
        return Snapshot(now_ms, out)

    def _monotonic(self, name: str, labels: Labels, value: float, owner: object) -> float:
        """``value``, or the largest value reported before for this series of this owner (a stream, pool or mapping
        object: one that is re-created starts afresh)."""
        value = float(value)
        key = (name, labels, owner)
        self._mono_seen.add(key)
        prev = self._mono.get(key)
        if prev is not None and value < prev:
            return prev
        self._mono[key] = value
        return value

    # ----------------------------------------------------------------- streams
    def _stream(self, fams: dict[str, Family], st: StreamView, now_ms: int) -> None:
        c = st.counters
        sl = (("stream", st.name),)
        shards = st.shards()
        live = [sh for sh in shards if not sh.expired]
        all_shards = len(live) <= SHARD_SERIES_LIMIT
        enhanced = set(st.shard_level_metrics)
        inc_r = inc_b = out_r = out_b = w_thr = r_thr = calls = 0
        age: float | None = None
        last_in = c.last_incoming_ms
        for sh in shards:
            sc = sh.counters
            inc_r += sc.incoming_records
            inc_b += sc.incoming_bytes
            out_r += sc.outgoing_records
            out_b += sc.outgoing_bytes
            w_thr += sc.write_throttled_records
            r_thr += sc.read_throttled_calls
            calls += sc.get_records_calls
            if sh.expired:
                continue
            last_in = max(last_in, sh.last_arrival_ms)
            read_age = read_age_ms(sc, now_ms)
            shl = (("shard", sh.shard_id), ("stream", st.name))
            if read_age is not None:
                a = read_age / 1000
                age = a if age is None or a > age else age
                if all_shards or "IteratorAgeMilliseconds" in enhanced:
                    fams["shardline_shard_iterator_age_seconds"].samples.append((shl, a))
            for attr, fam, cw in _SHARD_COUNTERS:
                if all_shards or cw in enhanced:
                    fams[fam].samples.append((shl, float(getattr(sc, attr))))
        s = fams
        s["shardline_stream_incoming_records_total"].samples.append((sl, float(inc_r)))
        s["shardline_stream_incoming_bytes_total"].samples.append((sl, float(inc_b)))
        s["shardline_stream_outgoing_records_total"].samples.append((sl, float(out_r)))
        s["shardline_stream_outgoing_bytes_total"].samples.append((sl, float(out_b)))
        s["shardline_stream_write_throttled_total"].samples.append((sl, float(w_thr)))
        s["shardline_stream_read_throttled_total"].samples.append((sl, float(r_thr)))
        get_req = s["shardline_stream_get_records_requests_total"].samples
        get_req.append(((("outcome", "success"), *sl), float(calls)))
        get_req.append(((("outcome", "error"), *sl), float(c.get_records_errors)))
        self._puts(s, st, c)
        s["shardline_stream_put_latency_seconds"].histograms.append((sl, _latency(c.put_latency)))
        s["shardline_stream_get_records_latency_seconds"].histograms.append((sl, _latency(c.get_latency)))
        if age is not None:
            s["shardline_stream_iterator_age_seconds"].samples.append((sl, age))
        open_n = sum(1 for sh in live if sh.is_open)
        s["shardline_stream_shards"].samples.append(((("state", "open"), *sl), float(open_n)))
        s["shardline_stream_shards"].samples.append(((("state", "closed"), *sl), float(len(live) - open_n)))
        s["shardline_stream_retention_seconds"].samples.append((sl, float(st.retention_hours * 3600)))
        if last_in >= 0:
            s["shardline_stream_last_incoming_record_timestamp_seconds"].samples.append((sl, last_in / 1000))
        info = _labels(stream=st.name, status=st.status.value, mode=st.mode.value)
        s["shardline_stream_info"].samples.append((info, 1.0))

    def _puts(self, s: dict[str, Family], st: StreamView, c: StreamCountersView) -> None:
        stream, owner = st.name, st.stream_id
        name = "shardline_stream_put_requests_total"
        out = s[name].samples

        def put(api: str, outcome: str, value: float) -> None:
            lb = _labels(stream=stream, api=api, outcome=outcome)
            out.append((lb, self._monotonic(name, lb, value, owner)))

        rec_err, throttled = c.put_record_errors, c.put_record_throttled
        put("PutRecord", "success", c.put_record_calls - rec_err)
        put("PutRecord", "throttled", throttled)
        put("PutRecord", "error", rec_err - throttled)
        put("PutRecords", "success", c.put_records_calls - c.put_records_errors)
        put("PutRecords", "error", c.put_records_errors)
        failed = s["shardline_stream_put_records_failed_total"].samples
        thr = c.put_records_throttled_records
        failed.append((_labels(stream=stream, reason="throttled"), float(thr)))
        lb = _labels(stream=stream, reason="internal")
        fam = "shardline_stream_put_records_failed_total"
        failed.append((lb, self._monotonic(fam, lb, c.put_records_failed_records - thr, owner)))

    # ----------------------------------------------------------------- functions
    def _function(self, s: dict[str, Family], name: str, pool: FunctionPool) -> None:
        fl = (("function", name),)
        inv = s["shardline_function_invocations_total"]
        done = pool.duration.total  # observed once per returned invocation, after its error counters settled
        for outcome, value in (
            ("success", done - pool.errors),
            ("error", pool.errors - pool.timeouts),
            ("timeout", pool.timeouts),
            ("throttled", pool.throttles),
        ):
            lb = (("function", name), ("outcome", outcome))
            inv.samples.append((lb, self._monotonic(inv.metric.name, lb, float(value), id(pool))))
        s["shardline_function_duration_seconds"].histograms.append((fl, _latency(pool.duration)))
        s["shardline_function_init_duration_seconds"].histograms.append((fl, _latency(pool.init_duration)))
        s["shardline_function_cold_starts_total"].samples.append((fl, float(pool.cold_starts)))
        s["shardline_function_concurrent_executions"].samples.append((fl, float(pool.in_flight)))
        s["shardline_function_concurrency_limit"].samples.append((fl, float(pool.concurrency)))

    # ----------------------------------------------------------------- mappings
    def _mapping(self, s: dict[str, Family], m: Mapping, now_ms: int) -> None:
        cfg = m.config
        base = {"mapping": m.uuid, "function": cfg.function_name, "stream": cfg.stream_name}
        ml = _labels(**base)
        st = m.stats()
        t = st.totals

        def counter(fam: str, value: float, labels: Labels = ml) -> None:
            s[fam].samples.append((labels, self._monotonic(fam, labels, value, id(m))))

        counter("shardline_esm_polled_records_total", t["polled"])
        counter("shardline_esm_filtered_out_records_total", t["filtered_out"])
        counter("shardline_esm_invoked_records_total", t["invoked_records"])
        counter("shardline_esm_failed_invoke_records_total", max(0, t["invoked_records"] - t["succeeded"]))
        inv = "shardline_esm_invocations_total"
        counter(inv, t["invocations"] - t["function_errors"], _labels(**base, outcome="success"))
        counter(inv, t["function_errors"], _labels(**base, outcome="error"))
        counter(inv, t["throttles"], _labels(**base, outcome="throttled"))
        # Discarded records count before their delivery to the destination finishes; the smallest value of the last
        # few seconds hides that window, so a record that does reach the destination is not counted as dropped.
        window = self._dropped_window.setdefault(m.uuid, deque())
        window.append((now_ms, float(max(0, t["discarded"] - t["dead_lettered"]))))
        while len(window) > 1 and window[0][0] < now_ms - DELIVERY_GRACE_MS:
            window.popleft()
        dropped = min(v for _, v in window) if m.destination is not None else window[-1][1]
        counter("shardline_esm_dropped_records_total", dropped)
        counter("shardline_esm_on_failure_delivered_records_total", t["dead_lettered"])
        counter("shardline_esm_on_failure_delivery_errors_total", t["destination_failures"])

        hist = self._batches.setdefault(m.uuid, _BatchSizes())
        lag = 0
        worst_age = 0.0
        shard_stats = m.shard_stats()
        pending = sum(ss.destination_pending for ss in shard_stats.values())
        s["shardline_esm_on_failure_pending_records"].samples.append((ml, float(pending)))
        for sid, ss in shard_stats.items():
            seen = self._shards_seen.get((m.uuid, sid))
            if seen is None or seen.stats is not ss:
                seen = self._shards_seen[(m.uuid, sid)] = _ShardSeen(ss, 0, now_ms)
            new = ss.invoked_records - seen.invoked
            if new > 0:
                for n in _new_batches(ss.batch_sizes, new):
                    hist.observe(n)
            seen.invoked = ss.invoked_records
            behind = waiting(ss)
            shl = _labels(**base, shard=sid)
            s["shardline_esm_iterator_age_seconds"].samples.append((shl, ss.iterator_age_ms / 1000 if behind else 0.0))
            s["shardline_esm_behind_latest_seconds"].samples.append((shl, ss.millis_behind / 1000))
            if ss.lag_records is not None:
                s["shardline_esm_lag_records"].samples.append((shl, float(ss.lag_records)))
                lag += ss.lag_records
            age = max(0, now_ms - max(ss.checkpoint_moved_ms, seen.first_seen_ms)) / 1000
            s["shardline_esm_checkpoint_age_seconds"].samples.append((shl, age))
            if behind:
                worst_age = max(worst_age, age)
        for key in [k for k in self._shards_seen if k[0] == m.uuid and k[1] not in shard_stats]:
            del self._shards_seen[key]
        s["shardline_esm_batch_size_records"].histograms.append((ml, hist.value()))
        states = ESM_STATES if st.state in ESM_STATES else (*ESM_STATES, st.state)
        for state in states:
            s["shardline_esm_state"].samples.append((_labels(**base, state=state), float(st.state == state)))
        if st.state != "Enabled" and lag > 0:
            status = "stop"
        elif worst_age * 1000 >= STALL_AFTER_MS:
            status = "stall"
        else:
            status = "ok"
        for name in ("ok", "stall", "stop"):
            s["shardline_esm_status"].samples.append((_labels(**base, status=name), float(status == name)))
        s["shardline_esm_shards"].samples.append((_labels(**base, state="active"), float(st.shards_active)))
        s["shardline_esm_shards"].samples.append((_labels(**base, state="finished"), float(st.shards_finished)))


def _new_batches(sizes: Sequence[int], new_records: int) -> Iterable[int]:
    """The batches appended since the last sample: the tail of ``sizes`` that adds up to ``new_records`` (the
    processor bumps its invoked-record count and appends the batch size together)."""
    acc = 0
    i = len(sizes)
    while i > 0 and acc < new_records:
        i -= 1
        acc += sizes[i]
    return sizes[i:]
