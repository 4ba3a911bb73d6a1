"""Sampled metrics as time series: 1 s points for the last hour, 1 min aggregates for the retention period.

Every series holds a fixed-size ring per resolution: (``fine_points`` + 3.25 × ``coarse_points``) × 8 bytes, ≈ 66 KiB
with the defaults (1 h of seconds, 24 h of minutes), ≈ 290 KiB with 7 days of minutes. At most ``max_series`` series
are kept, fewer when ``max_bytes`` would be exceeded; values of further series are refused (and counted). A series
that has had no data for the whole coarse span is forgotten.

Counters (names ending in ``_total``, ``_count``, ``_sum`` or ``_bucket``) are stored as the increase during each
second, so "Sum" over a period is the increase and "Rate" the per-second increase; a counter that goes down was
reset (its object was re-created) and counts from zero again. Gauges are stored as sampled. A fine slot holds the
value of one second; a coarse slot holds the sum, minimum, maximum and number of the per-second values of one
minute, so every statistic is exact at both resolutions. A query is checked and its slots copied here
(``prepare``); metrics.query computes its points from the copy.

On disk: one file, replaced atomically (temp, fsync, rename), all integers big-endian, arrays little-endian:

```
 0       4  magic b"SLTS"
 4       1  version (1)
 5       4  header length H
 9       H  header, JSON: {"fine_points", "coarse_period_s", "coarse_points", "last_t",
                           "series": [[name, [[label, value], ...], last_seen_s], ...]}
 9+H     4  payload length P
13+H     P  zlib(payload): fine slot seconds (int64 × fine_points), coarse slot periods (int64 × coarse_points),
            then per series in header order: fine (float64 × fine_points), coarse sum, min, max
            (float64 × coarse_points each), coarse count (uint16 × coarse_points)
13+H+P   4  CRC-32 of bytes 0 .. 13+H+P
```
"""

from __future__ import annotations

import logging
import math
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Mapping
from math import isnan
from pathlib import Path
from typing import Unpack

import orjson

from .._fsutil import atomic_write
from .query import (
    Geometry,
    HistogramSlots,
    PreparedQuery,
    QueryWindow,
    aggregate,
    bucket_quantile,
    copy_slots,
    statistic,
)
from .statistic import STATS, percentile

__all__ = [
    "STATS",
    "PreparedQuery",
    "SeriesKey",
    "SeriesStore",
    "bucket_quantile",
    "is_counter",
    "peek_coarse_points",
    "series_key",
]

log = logging.getLogger("shardline.metrics")

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]

_COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
_MAGIC = b"SLTS"
_VERSION = 1
_U32 = struct.Struct(">I")
_NAN = math.nan
_INF = math.inf
MAX_QUERY_POINTS = 10_080


def is_counter(name: str) -> bool:
    return name.endswith(_COUNTER_SUFFIXES)


def series_key(name: str, labels: Mapping[str, str] | None = None) -> SeriesKey:
    return (name, tuple(sorted(labels.items())) if labels else ())


def _le_bytes(a: array) -> bytes:  # type: ignore[type-arg]
    if sys.byteorder == "big":
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def _from_le(typecode: str, raw: bytes) -> array:  # type: ignore[type-arg]
    a = array(typecode)
    a.frombytes(raw)
    if sys.byteorder == "big":
        a.byteswap()
    return a


class _Series:
    __slots__ = ("ccount", "cmax", "cmin", "counter", "csum", "fine", "key", "last_raw", "last_seen_t")

    def __init__(self, key: SeriesKey, fine_points: int, coarse_points: int) -> None:
        self.key = key
        self.counter = is_counter(key[0])
        self.fine = array("d", [_NAN]) * fine_points
        self.csum = array("d", [0.0]) * coarse_points
        self.cmin = array("d", [_INF]) * coarse_points
        self.cmax = array("d", [-_INF]) * coarse_points
        self.ccount = array("H", [0]) * coarse_points
        self.last_raw: float | None = None  # the counter's cumulative value at the latest sample it was in
        self.last_seen_t = -1


class SeriesStore:
    """Bounded time series, fed once per second with a full sample of every series."""

    def __init__(
        self,
        path: Path | None,
        *,
        fine_points: int = 3600,
        coarse_period_s: int = 60,
        coarse_points: int = 1440,
        max_series: int = 1000,
        max_bytes: int | None = None,
    ) -> None:
        if fine_points < 2 or coarse_period_s < 1 or coarse_points < 1 or coarse_period_s > 65535:
            raise ValueError("fine_points >= 2, 1 <= coarse_period_s <= 65535 and coarse_points >= 1 are required")
        self.path = path
        self.fine_points = fine_points
        self.coarse_period_s = coarse_period_s
        self.coarse_points = coarse_points
        self.max_series = max_series
        self.max_bytes = max_bytes
        self.fine_t = array("q", [-1]) * fine_points
        self.coarse_t = array("q", [-1]) * coarse_points
        self.last_t = -1  # second of the latest record()
        self._series: dict[SeriesKey, _Series] = {}
        self._by_name: dict[str, list[SeriesKey]] = {}
        self._full_warned = False
        self.dropped_series = 0
        if path is not None:
            self._load(path)

    # ----------------------------------------------------------------- writing
    def record(self, now_ms: int, sample: Mapping[SeriesKey, float]) -> None:
        """Store one sample (every series' current value) for the second of ``now_ms``. A second already recorded,
        or an earlier one, is ignored: counters turn into increases here, so each second is taken once."""
        t = now_ms // 1000
        if t <= self.last_t:
            return
        for key in sample:
            if key not in self._series:
                self._add(key, t)
        if self.last_t >= 0 and t - self.last_t > 1:
            self._skip(self.last_t + 1, t)
        slot = t % self.fine_points
        self.fine_t[slot] = t
        m = t // self.coarse_period_s
        cslot = m % self.coarse_points
        new_minute = self.coarse_t[cslot] != m
        if new_minute:
            last_m = self.last_t // self.coarse_period_s if self.last_t >= 0 else m - 1
            self._clear_coarse(max(last_m + 1, m - self.coarse_points + 1), m + 1)
        get = sample.get
        for key, s in self._series.items():
            raw = get(key)
            if raw is None or isnan(raw):  # absent or NaN: no data this second
                s.fine[slot] = _NAN
                continue
            if s.counter:
                last = s.last_raw
                s.last_raw = raw
                v = raw if last is None or raw < last else raw - last
            else:
                v = raw
            s.fine[slot] = v
            s.last_seen_t = t
            s.csum[cslot] += v
            if v < s.cmin[cslot]:
                s.cmin[cslot] = v
            if v > s.cmax[cslot]:
                s.cmax[cslot] = v
            s.ccount[cslot] += 1
        self.last_t = t
        if new_minute:
            self._evict(t)

    def _skip(self, first: int, stop: int) -> None:
        """Mark the seconds [first, stop) as without data, so every fine slot in the window is current."""
        n = self.fine_points
        if stop - first >= n:
            self.fine_t = array("q", [-1]) * n
            for s in self._series.values():
                s.fine = array("d", [_NAN]) * n
            return
        for t in range(first, stop):
            i = t % n
            self.fine_t[i] = t
            for s in self._series.values():
                s.fine[i] = _NAN

    def _clear_coarse(self, first: int, stop: int) -> None:
        """Start the coarse periods [first, stop) empty (skipped periods have no data)."""
        n = self.coarse_points
        for m in range(first, stop):
            i = m % n
            self.coarse_t[i] = m
            for s in self._series.values():
                s.csum[i] = 0.0
                s.cmin[i] = _INF
                s.cmax[i] = -_INF
                s.ccount[i] = 0

    @property
    def series_limit(self) -> int:
        """How many series may be kept: ``max_series``, or fewer when ``max_bytes`` cannot hold that many rings."""
        if self.max_bytes is None:
            return self.max_series
        per_series = 8 * self.fine_points + 26 * self.coarse_points
        return max(1, min(self.max_series, self.max_bytes // per_series))

    def _add(self, key: SeriesKey, t: int) -> None:
        if len(self._series) >= self.series_limit:
            self.dropped_series += 1  # counts refused values, one per sample
            if not self._full_warned:
                log.warning("metrics: %d series stored, the limit; new series are not kept (%s)", len(self), key)
                self._full_warned = True
            return
        s = self._series[key] = _Series(key, self.fine_points, self.coarse_points)
        s.last_seen_t = t  # a series that never gets a value is forgotten like one that stopped
        self._by_name.setdefault(key[0], []).append(key)

    def _evict(self, t: int) -> None:
        span = max(self.fine_points, self.coarse_points * self.coarse_period_s)
        stale = [k for k, s in self._series.items() if t - s.last_seen_t > span]
        for k in stale:
            del self._series[k]
            keys = self._by_name[k[0]]
            keys.remove(k)
            if not keys:
                del self._by_name[k[0]]

    def set_coarse_points(self, coarse_points: int) -> None:
        """Change how many coarse periods are kept (the longest stream retention changed)."""
        if coarse_points == self.coarse_points or coarse_points < 1:
            return
        old_t, n = self.coarse_t, coarse_points
        last_m = self.last_t // self.coarse_period_s
        order = [(m, i) for i, m in enumerate(old_t) if m >= 0 and m > last_m - n]
        self.coarse_t = array("q", [-1]) * n
        for m, _ in order:
            self.coarse_t[m % n] = m
        for s in self._series.values():
            csum, cmin, cmax, ccount = s.csum, s.cmin, s.cmax, s.ccount
            s.csum = array("d", [0.0]) * n
            s.cmin = array("d", [_INF]) * n
            s.cmax = array("d", [-_INF]) * n
            s.ccount = array("H", [0]) * n
            for m, i in order:
                j = m % n
                s.csum[j], s.cmin[j], s.cmax[j], s.ccount[j] = csum[i], cmin[i], cmax[i], ccount[i]
        self.coarse_points = n

    # ----------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._series)

    def keys(self, name: str | None = None) -> list[SeriesKey]:
        if name is None:
            return list(self._series)
        return list(self._by_name.get(name, ()))

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def latest(self, key: SeriesKey) -> float | None:
        """The series' value at the latest sample (a counter's cumulative value), or None when it was absent."""
        s = self._series.get(key)
        if s is None or s.last_seen_t != self.last_t or self.last_t < 0:
            return None
        if s.counter:
            return s.last_raw
        return s.fine[self.last_t % self.fine_points]

    def query(
        self, name: str, labels: Mapping[str, str] | None = None, **window: Unpack[QueryWindow]
    ) -> list[tuple[dict[str, str], list[tuple[int, float | None]]]]:
        """Points per matching series: (period start ms, value or None without data), periods aligned to multiples
        of ``period_s`` like CloudWatch's. ``stat`` is one of STATS or a percentile ``pNN`` (histograms only).
        ``name`` may also name a histogram (``_bucket``/``_sum``/``_count`` series) or a summary (``_sum``/``_count``):
        then Average is sum/count, SampleCount the observations, Sum their sum, pNN a bucket-interpolated quantile."""
        return self.prepare(name, labels, **window).run()

    def prepare(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        max_series: int | None = None,
        max_values: int | None = None,
        **window: Unpack[QueryWindow],
    ) -> PreparedQuery:
        """Check a query (as ``query`` takes it) and copy the slots it reads, on the thread that records: the
        PreparedQuery then computes the points on any thread while the store goes on recording. ``max_series``
        and ``max_values`` (series × points) bound what the answer may hold; a query over either is refused."""
        start_ms, end_ms, period_s, stat = window["start_ms"], window["end_ms"], window["period_s"], window["stat"]
        quantile = percentile(stat)
        if stat not in STATS and quantile is None:
            raise ValueError(f"stat must be one of {', '.join(STATS)} or pNN, not {stat!r}")
        if period_s < 1:
            raise ValueError("period must be at least 1 second")
        first = (start_ms // 1000) // period_s * period_s
        stop = -(-end_ms // 1000)
        n = max(0, -(-(stop - first) // period_s))
        if n > MAX_QUERY_POINTS:
            raise ValueError(f"{n} points requested; at most {MAX_QUERY_POINTS} per series (use a longer period)")
        want = dict(labels or {})
        direct = [k for k in self._by_name.get(name, ()) if _matches(k, want)]
        counts = (
            []
            if direct and quantile is None
            else [k for k in self._by_name.get(f"{name}_count", ()) if _matches(k, want)]
        )
        matched = len(direct) if direct and quantile is None else len(counts)
        if max_series is not None and matched > max_series:
            raise ValueError(
                f"{matched} series match; at most {max_series} per query (narrow it with label.<name>=<value>)"
            )
        if max_values is not None and matched * n > max_values:
            raise ValueError(
                f"{matched} series × {n} points = {matched * n} values; at most {max_values} per query "
                "(use a longer period, a shorter range, or label.<name>=<value>)"
            )
        g = self._geometry()
        end = first + n * period_s
        if direct and quantile is None:
            if stat == "Rate" and not is_counter(name):
                raise ValueError(f"Rate applies to counters; {name} is a gauge")
            copies = tuple((key[1], copy_slots(self._series[key], g, first, end)) for key in direct)
            return PreparedQuery(g, first, n, period_s, stat, quantile, direct=copies)
        buckets: dict[tuple[tuple[str, str], ...], list[tuple[float, _Series]]] = {}
        for k in self._by_name.get(f"{name}_bucket", ()):
            if _matches(k, want):
                rest = tuple(p for p in k[1] if p[0] != "le")
                buckets.setdefault(rest, []).append((float(dict(k[1]).get("le", "+Inf")), self._series[k]))
        derived: list[HistogramSlots] = []
        for ck in counts:
            ss = self._series.get((f"{name}_sum", ck[1]))
            bs = sorted(buckets.get(ck[1], []), key=lambda b: b[0])
            if quantile is not None and not bs:
                raise ValueError(f"{name} has no buckets for a percentile")
            if (
                quantile is None
                and stat not in ("SampleCount", "Rate")
                and (stat not in ("Sum", "Average") or ss is None)
            ):
                raise ValueError(f"{stat} is not available for {name}")
            derived.append(
                HistogramSlots(
                    ck[1],
                    copy_slots(self._series[ck], g, first, end),
                    None if ss is None or quantile is not None else copy_slots(ss, g, first, end),
                    tuple((le, copy_slots(b, g, first, end)) for le, b in bs) if quantile is not None else (),
                )
            )
        return PreparedQuery(g, first, n, period_s, stat, quantile, derived=tuple(derived))

    def _geometry(self) -> Geometry:
        return Geometry.of(self.last_t, self.fine_points, self.coarse_period_s, self.coarse_points)

    def recent(self, key: SeriesKey, seconds: int, stat: str) -> float | None:
        """``stat`` over the last ``seconds`` recorded seconds of one series (for summaries like "rate over the
        last minute")."""
        s = self._series.get(key)
        if s is None or self.last_t < 0:
            return None
        g = self._geometry()
        a = self.last_t - seconds + 1
        return statistic(stat, aggregate(g, copy_slots(s, g, a, a + seconds), a, seconds))

    # ----------------------------------------------------------------- persistence
    def snapshot(self) -> Callable[[], None]:
        """Copy the state now (cheap, on the caller's thread) and return a function that writes it to the file
        (slow: compression and fsync, meant for a worker thread)."""
        path = self.path
        if path is None:
            return lambda: None
        header = {
            "fine_points": self.fine_points,
            "coarse_period_s": self.coarse_period_s,
            "coarse_points": self.coarse_points,
            "last_t": self.last_t,
            "series": [[s.key[0], [list(p) for p in s.key[1]], s.last_seen_t] for s in self._series.values()],
        }
        parts = [_le_bytes(self.fine_t), _le_bytes(self.coarse_t)]
        for s in self._series.values():
            parts += [_le_bytes(s.fine), _le_bytes(s.csum), _le_bytes(s.cmin), _le_bytes(s.cmax), _le_bytes(s.ccount)]

        def write() -> None:
            head = orjson.dumps(header)
            payload = zlib.compress(b"".join(parts), 1)
            body = b"".join([_MAGIC, bytes([_VERSION]), _U32.pack(len(head)), head, _U32.pack(len(payload)), payload])
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, body + _U32.pack(zlib.crc32(body)))

        return write

    def close(self) -> None:
        self.snapshot()()

    def _load(self, path: Path) -> None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return
        try:
            self._decode(raw)
        except (ValueError, KeyError, TypeError, IndexError, struct.error, zlib.error, orjson.JSONDecodeError) as e:
            log.warning("metrics: %s is unreadable (%s); starting with empty series", path, e)
            self._series.clear()
            self._by_name.clear()
            self.fine_t = array("q", [-1]) * self.fine_points
            self.coarse_t = array("q", [-1]) * self.coarse_points
            self.last_t = -1

    def _decode(self, raw: bytes) -> None:
        if len(raw) < 17 or raw[:4] != _MAGIC:
            raise ValueError("not a series file")
        if raw[4] != _VERSION:
            raise ValueError(f"unknown version {raw[4]}")
        (crc,) = _U32.unpack_from(raw, len(raw) - 4)
        if zlib.crc32(raw[:-4]) != crc:
            raise ValueError("checksum mismatch")
        (hlen,) = _U32.unpack_from(raw, 5)
        header = orjson.loads(raw[9 : 9 + hlen])
        (plen,) = _U32.unpack_from(raw, 9 + hlen)
        payload = zlib.decompress(raw[13 + hlen : 13 + hlen + plen])
        fp, cp, cn = int(header["fine_points"]), int(header["coarse_period_s"]), int(header["coarse_points"])
        pos = 0

        def take(typecode: str, count: int) -> array:  # type: ignore[type-arg]
            nonlocal pos
            size = array(typecode).itemsize * count
            if pos + size > len(payload):
                raise ValueError("payload too short")
            a = _from_le(typecode, payload[pos : pos + size])
            pos += size
            return a

        fine_t, coarse_t = take("q", fp), take("q", cn)
        loaded: list[tuple[SeriesKey, int, list[array]]] = []  # type: ignore[type-arg]
        for name, labels, last_seen in header["series"]:
            key: SeriesKey = (str(name), tuple((str(k), str(v)) for k, v in labels))
            arrays = [take("d", fp), take("d", cn), take("d", cn), take("d", cn), take("H", cn)]
            loaded.append((key, int(last_seen), arrays))
        if pos != len(payload):
            raise ValueError("payload has trailing bytes")
        self.last_t = int(header["last_t"])
        # Re-slot by timestamp: the file may come from a store with other ring sizes.
        fine_map = [(t, i) for i, t in enumerate(fine_t) if t >= 0 and t > self.last_t - self.fine_points]
        for t, _ in fine_map:
            self.fine_t[t % self.fine_points] = t
        same_period = cp == self.coarse_period_s
        last_m = self.last_t // self.coarse_period_s
        coarse_map = [(m, i) for i, m in enumerate(coarse_t) if m >= 0 and m > last_m - self.coarse_points]
        if same_period:
            for m, _ in coarse_map:
                self.coarse_t[m % self.coarse_points] = m
        for key, last_seen, (fine, csum, cmin, cmax, ccount) in loaded:
            if key in self._series:
                continue
            self._add(key, last_seen)
            s = self._series.get(key)
            if s is None:
                continue
            for t, i in fine_map:
                s.fine[t % self.fine_points] = fine[i]
            if same_period:
                for m, i in coarse_map:
                    j = m % self.coarse_points
                    s.csum[j], s.cmin[j], s.cmax[j], s.ccount[j] = csum[i], cmin[i], cmax[i], ccount[i]
        # Counters restart from zero with the process; the first sample after a load is an increase from zero.


def peek_coarse_points(path: Path) -> int | None:
    """How many coarse periods the file at ``path`` holds (from its header), or None without a readable file; lets
    a store be sized before loading so nothing is cut."""
    try:
        with path.open("rb") as f:
            head = f.read(9)
            if len(head) < 9 or head[:4] != _MAGIC or head[4] != _VERSION:
                return None
            (hlen,) = _U32.unpack_from(head, 5)
            return int(orjson.loads(f.read(hlen))["coarse_points"])
    except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return None


def _matches(key: SeriesKey, want: Mapping[str, str]) -> bool:
    if not want:
        return True
    have = dict(key[1])
    return all(have.get(k) == v for k, v in want.items())
