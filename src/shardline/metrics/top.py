"""``shardline top``: a live terminal view of a running server's streams, mappings, functions and alarms.

Everything comes from one ``GET /api/overview`` per refresh. Rates are the server's last-minute rates on the first
screen, then the change between two refreshes, so the view reacts within one interval. On a terminal the view
redraws in place; with ``--once``, or when stdout is not a terminal, it prints plain text (once, or one snapshot per
interval) that scripts and logs can read.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..models import NO_RECORDS_PROCESSED
from .access import TOKEN_ENV

if TYPE_CHECKING:
    from rich.console import Group

__all__ = ["Cell", "Overview", "Table", "add_arguments", "build", "fetch", "main", "render_plain", "token_of"]

Overview = Mapping[str, Any]
FETCH_TIMEOUT_S = 5.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", default="http://127.0.0.1:4567", help="default: http://127.0.0.1:4567")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.add_argument("--once", action="store_true", help="print one plain-text snapshot and exit")
    p.add_argument("--token", help=f"the server's monitoring token (default: ${TOKEN_ENV})")
    p.add_argument("--token-file", type=Path, help="a file holding the server's monitoring token")


# --------------------------------------------------------------------------------------------- formatting
def fmt_num(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if a >= scale:
            return f"{v / scale:.3g}{suffix}"
    if a >= 100 or float(v).is_integer():
        return str(round(v))
    return f"{v:.3g}"


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 10:
        return f"{ms:.2g} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"


def fmt_bytes(b: float | None) -> str:
    if b is None:
        return "-"
    for unit in ("B", "KiB", "MiB"):
        if abs(b) < 1024:
            return f"{fmt_num(b)} {unit}"
        b /= 1024
    return f"{fmt_num(b)} GiB"


def _num(d: Mapping[str, Any], key: str) -> float | None:
    v = d.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _dict(d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    v = d.get(key)
    return v if isinstance(v, dict) else {}


def _list(d: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    v = d.get(key)
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


# --------------------------------------------------------------------------------------------- the view model
@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    style: str = ""  # a rich style; plain text ignores it


@dataclass(slots=True)
class Table:
    title: str
    columns: tuple[str, ...]
    numeric: frozenset[int]  # right-aligned columns
    rows: list[tuple[Cell, ...]] = field(default_factory=list)
    note: str = ""  # shown instead of rows when there are none, or under them
    free: int = -1  # the one free-text column a narrow terminal may shorten; the others keep their width


STATE_STYLES = {
    "ALARM": "bold red",
    "INSUFFICIENT_DATA": "yellow",
    "OK": "green",
    "ACTIVE": "green",
    "Enabled": "green",
    "ok": "green",
    "stall": "bold red",
    "stop": "bold red",
}


def _state(text: object) -> Cell:
    t = "-" if text is None else str(text)
    return Cell(t, STATE_STYLES.get(t, "yellow" if t in ("CREATING", "UPDATING", "Creating", "Updating") else ""))


class Rates:
    """Per-second change of counters between two overviews; falls back to the server's last-minute rate."""

    def __init__(self) -> None:
        self._prev: dict[tuple[str, ...], tuple[float, float]] = {}
        self._next: dict[tuple[str, ...], tuple[float, float]] = {}

    def rate(self, key: tuple[str, ...], total: float | None, now_ms: float, fallback: float | None) -> float | None:
        if total is None:
            return fallback
        self._next[key] = (now_ms, total)
        prev = self._prev.get(key)
        if prev is None or now_ms <= prev[0] or total < prev[1]:
            return fallback
        return (total - prev[1]) * 1000 / (now_ms - prev[0])

    def advance(self) -> None:
        self._prev, self._next = self._next, {}


def build(ov: Overview, rates: Rates | None = None) -> list[Table]:
    """The tables of one screen."""
    rates = rates or Rates()
    now = _num(ov, "now_ms") or time.time() * 1000
    streams, mappings = _list(ov, "streams"), _list(ov, "mappings")
    out = [_streams(streams, mappings, now, rates), _mappings(mappings), _functions(_list(ov, "functions"), now, rates)]
    if any(isinstance(m.get("leases"), dict) for m in mappings):
        out.insert(2, _leases(mappings))
    out.append(_alarms(_list(ov, "alarms"), now))
    rates.advance()
    return out


def _streams(streams: list[Mapping[str, Any]], mappings: list[Mapping[str, Any]], now: float, rates: Rates) -> Table:
    t = Table(
        "Streams",
        (
            "Stream",
            "Status",
            "Open",
            "Closed",
            "In rec/s",
            "In B/s",
            "Out rec/s",
            "Iter age",
            "% ret",
            "Last in",
        ),
        frozenset({2, 3, 4, 5, 6, 7, 8, 9}),
        note="no streams",
    )
    for s in streams:
        name = str(s.get("name"))
        totals, api = _dict(s, "totals"), _dict(s, "rates")
        in_r = rates.rate(("in", name), _num(totals, "incoming_records"), now, _num(api, "incoming_records_per_s"))
        in_b = rates.rate(("inb", name), _num(totals, "incoming_bytes"), now, _num(api, "incoming_bytes_per_s"))
        out_r = rates.rate(("out", name), _num(totals, "outgoing_records"), now, _num(api, "outgoing_records_per_s"))
        # The oldest record some reader has yet to read: GetRecords readers and this stream's mappings alike.
        ages = [_num(s, "iterator_age_ms")] + [_num(m, "iterator_age_ms") for m in mappings if m.get("stream") == name]
        known = [a for a in ages if a is not None]
        age = max(known) if known else None
        retention_ms = (_num(s, "retention_hours") or 0) * 3600_000
        pct = age / retention_ms * 100 if age is not None and retention_ms else None
        pct_style = "" if pct is None else "bold red" if pct >= 80 else "yellow" if pct >= 50 else ""
        last = _num(s, "last_incoming_ms")
        t.rows.append(
            (
                Cell(name, "bold"),
                _state(s.get("status")),
                Cell(fmt_num(_num(s, "shards_open"))),
                Cell(fmt_num(_num(s, "shards_closed"))),
                Cell(fmt_num(in_r)),
                Cell(fmt_bytes(in_b)),
                Cell(fmt_num(out_r)),
                Cell(fmt_ms(age)),
                Cell("-" if pct is None else f"{pct:.1f}%", pct_style),
                Cell("never" if last is None else fmt_ms(max(0.0, now - last)) + " ago"),
            )
        )
    return t


def _mappings(mappings: list[Mapping[str, Any]]) -> Table:
    t = Table(
        "Mappings",
        (
            "Function",
            "Stream",
            "State",
            "Status",
            "Iter age",
            "Lag",
            "Polled",
            "Invoked",
            "Failed",
            "Dropped",
            "Last result",
        ),
        frozenset({4, 5, 6, 7, 8, 9}),
        note="no event source mappings",
        free=10,
    )
    for m in mappings:
        tot = _dict(m, "totals")
        failed = _num(tot, "failed_invoke_records")
        dropped = _num(tot, "dropped")
        result = str(m.get("last_result") or "-")
        t.rows.append(
            (
                Cell(str(m.get("function")), "bold"),
                Cell(str(m.get("stream"))),
                _state(m.get("state")),
                _state(m.get("status")),
                Cell(fmt_ms(_num(m, "iterator_age_ms"))),
                Cell(fmt_num(_num(m, "lag_records"))),
                Cell(fmt_num(_num(tot, "polled"))),
                Cell(fmt_num(_num(tot, "invoked_records"))),
                Cell(fmt_num(failed), "red" if failed else ""),
                Cell(fmt_num(dropped), "bold red" if dropped else ""),
                Cell(result, "" if result in ("OK", NO_RECORDS_PROCESSED, "-") else "red"),
            )
        )
    return t


def _leases(mappings: list[Mapping[str, Any]]) -> Table:
    """Which worker owns which shard of each mapping (from the lease table), unfinished shards first."""
    t = Table(
        "Leases",
        ("Function", "Stream", "Shard", "Owner", "Epoch", "Checkpoint"),
        frozenset({4}),
        note="no shard leases",
        free=5,
    )
    workers: set[str] = set()
    for m in mappings:
        leases = _dict(m, "leases")
        if leases.get("worker"):
            workers.add(str(leases["worker"]))
        rows = sorted(_list(leases, "shards"), key=lambda r: (bool(r.get("finished")), str(r.get("shard_id"))))
        for r in rows:
            owner = r.get("owner")
            checkpoint = "SHARD_END" if r.get("finished") else str(r.get("checkpoint") or "-")
            t.rows.append(
                (
                    Cell(str(m.get("function")), "bold"),
                    Cell(str(m.get("stream"))),
                    Cell(str(r.get("shard_id"))),
                    Cell(str(owner) if owner else "-", "" if owner or r.get("finished") else "yellow"),
                    Cell(fmt_num(_num(r, "epoch"))),
                    Cell(checkpoint),
                )
            )
    if workers:
        t.note = "this worker: " + ", ".join(sorted(workers))
    return t


def _functions(functions: list[Mapping[str, Any]], now: float, rates: Rates) -> Table:
    t = Table(
        "Functions",
        ("Function", "Inv/s", "Invocations", "Errors", "Timeouts", "Throttles", "Conc", "p50", "p99", "Cold"),
        frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9}),
        note="no functions",
    )
    for f in functions:
        name = str(f.get("name"))
        inv = _num(f, "invocations")
        errors, timeouts, throttles = _num(f, "errors"), _num(f, "timeouts"), _num(f, "throttles")
        per_s = rates.rate(("inv", name), inv, now, _num(f, "successes_per_s"))
        in_flight, limit = _num(f, "in_flight"), _num(f, "concurrency")
        t.rows.append(
            (
                Cell(name, "bold"),
                Cell(fmt_num(per_s)),
                Cell(fmt_num(inv)),
                Cell(fmt_num(errors), "red" if errors else ""),
                Cell(fmt_num(timeouts), "red" if timeouts else ""),
                Cell(fmt_num(throttles), "yellow" if throttles else ""),
                Cell(f"{fmt_num(in_flight)}/{fmt_num(limit)}"),
                Cell(fmt_ms(_num(f, "duration_p50_ms"))),
                Cell(fmt_ms(_num(f, "duration_p99_ms"))),
                Cell(fmt_num(_num(f, "cold_starts"))),
            )
        )
    return t


_ALARM_ORDER = {"ALARM": 0, "INSUFFICIENT_DATA": 1, "OK": 2}


def _alarms(alarms: list[Mapping[str, Any]], now: float) -> Table:
    """Alarms that are not OK, one per row; the OK ones are only counted (a few are defined per stream and mapping)."""
    counts = {state: sum(1 for a in alarms if a.get("state") == state) for state in _ALARM_ORDER}
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    t = Table(
        "Alarms",
        ("State", "Alarm", "Severity", "Reason", "Since"),
        frozenset({4}),
        note=f"{len(alarms)} alarms: {summary}" if alarms else "no alarms defined",
        free=3,
    )
    shown = sorted(
        (a for a in alarms if a.get("state") != "OK"),
        key=lambda a: (_ALARM_ORDER.get(str(a.get("state")), 3), str(a.get("name"))),
    )
    for a in shown:
        since = _num(a, "since_ms")
        t.rows.append(
            (
                _state(a.get("state")),
                Cell(str(a.get("name")), "bold"),
                Cell(str(a.get("severity") or "-")),
                Cell(str(a.get("reason") or "-")),
                Cell("-" if since is None else fmt_ms(max(0.0, now - since)) + " ago"),
            )
        )
    return t


# --------------------------------------------------------------------------------------------- rendering
def render_plain(tables: Iterable[Table], header: str) -> str:
    lines = [header]
    for t in tables:
        lines += ["", t.title.upper()]
        if t.rows:
            widths = [max(len(c), *(len(r[i].text) for r in t.rows)) for i, c in enumerate(t.columns)]

            lines.append(_line(t.columns, widths, t.numeric))
            lines += [_line([c.text for c in r], widths, t.numeric) for r in t.rows]
        if t.note and (not t.rows or t.title in ("Alarms", "Leases")):
            lines.append(t.note)
    return "\n".join(lines) + "\n"


def _line(cells: Sequence[str], widths: Sequence[int], numeric: frozenset[int]) -> str:
    parts = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
    return "  ".join(parts).rstrip()


def render_rich(tables: Iterable[Table], header: str, error: str | None = None) -> Group:
    # rich is imported only here and in _live: plain output (--once, pipes) starts faster without it.
    from rich import box  # noqa: PLC0415
    from rich.console import Group  # noqa: PLC0415
    from rich.table import Table as RichTable  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    parts: list[Any] = [Text(header, style="bold")]
    if error:
        parts.append(Text(error, style="bold red"))
    for t in tables:
        parts.append(Text(""))
        if not t.rows:
            parts.append(Text(t.title, style="bold cyan"))
        else:
            rt = RichTable(
                title=t.title,
                title_justify="left",
                title_style="bold cyan",
                box=box.SIMPLE_HEAD,
                show_edge=False,
                pad_edge=False,
                padding=(0, 1, 0, 0),
                header_style="bold",
            )
            for i, c in enumerate(t.columns):
                if i == t.free:
                    rt.add_column(c, overflow="ellipsis", no_wrap=True)
                else:
                    width = max(len(c), *(len(r[i].text) for r in t.rows))
                    rt.add_column(c, justify="right" if i in t.numeric else "left", no_wrap=True, min_width=width)
            for r in t.rows:
                rt.add_row(*(Text(c.text, style=c.style) for c in r))
            parts.append(rt)
        if t.note and (not t.rows or t.title in ("Alarms", "Leases")):
            parts.append(Text(t.note, style="dim"))
    return Group(*parts)


# --------------------------------------------------------------------------------------------- the loop
class FetchError(Exception):
    pass


def token_of(args: argparse.Namespace) -> str | None:
    """The monitoring token to send: --token, else the contents of --token-file, else $SHARDLINE_MONITORING_TOKEN."""
    token = getattr(args, "token", None)
    path = getattr(args, "token_file", None)
    if token is None and path is not None:
        try:
            token = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FetchError(f"cannot read --token-file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if token is None:
        token = os.environ.get(TOKEN_ENV)
    return token.strip() if token else None


def fetch(endpoint: str, timeout_s: float = FETCH_TIMEOUT_S, token: str | None = None) -> Overview:
    url = f"{endpoint.rstrip('/')}/api/overview"
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s) as resp:
            data = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        hint = {
            401: f" (monitoring is protected: give its token with --token, --token-file or {TOKEN_ENV})",
            404: " (is monitoring turned off with --no-metrics?)",
        }.get(exc.code, "")
        raise FetchError(f"{url}: HTTP {exc.code}{hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"cannot reach {url}: {reason}") from None
    except orjson.JSONDecodeError:
        raise FetchError(f"{url} did not answer with JSON: is it a shardline server?") from None
    if not isinstance(data, dict):
        raise FetchError(f"{url} answered with an unexpected document")
    return data


def _header(endpoint: str, interval: float | None) -> str:
    at = time.strftime("%H:%M:%S")
    tail = f"  every {interval:g} s, Ctrl-C to quit" if interval else ""
    return f"shardline top  {endpoint}  {at}{tail}"


def main(args: argparse.Namespace) -> int:
    endpoint = str(args.endpoint).rstrip("/")
    interval = max(0.2, float(getattr(args, "interval", 2.0)))
    try:
        token = token_of(args)
        if getattr(args, "once", False):
            ov = fetch(endpoint, token=token)
            sys.stdout.write(render_plain(build(ov), _header(endpoint, None)))
            return 0
    except FetchError as exc:
        print(f"shardline top: {exc}", file=sys.stderr)
        return 1
    try:
        if sys.stdout.isatty():
            _live(endpoint, interval, token)
        else:
            _stream(endpoint, interval, token)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # the reader went away (`shardline top | head`): stop quietly, and keep Python from reporting it at exit
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    return 0


def _stream(endpoint: str, interval: float, token: str | None) -> None:
    """Not a terminal: one plain snapshot per interval, for logs and pipes."""
    rates = Rates()
    while True:
        try:
            text = render_plain(build(fetch(endpoint, token=token), rates), _header(endpoint, interval))
        except FetchError as exc:
            text = f"{_header(endpoint, interval)}\n{exc}\n"
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        time.sleep(interval)


def _live(endpoint: str, interval: float, token: str | None) -> None:
    from rich.live import Live  # noqa: PLC0415

    rates = Rates()
    tables: list[Table] = []
    with Live(render_rich([], _header(endpoint, interval), "connecting..."), auto_refresh=False, screen=True) as live:
        while True:
            error = None
            try:
                tables = build(fetch(endpoint, token=token), rates)
            except FetchError as exc:
                error = f"{exc}; retrying (the figures below are from the last answer)" if tables else str(exc)
            live.update(render_rich(tables, _header(endpoint, interval), error), refresh=True)
            time.sleep(interval)
