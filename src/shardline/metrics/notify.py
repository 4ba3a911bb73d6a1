"""Where alarm transitions go: the log, a JSONL file, an HTTP webhook; and the ``alarms.notify`` config section.

A notifier only sends one event (a JSON-ready dict) or raises. Ordering, retries with backoff and the durable
delivery cursor that keeps a restart from sending a transition twice belong to the AlarmManager, so every notifier
gets the same guarantees. Each event carries a unique ``id`` (also sent as the ``Idempotency-Key`` header), because
a crash between a webhook's 2xx and the cursor reaching the disk can only be resolved by the receiver; the JSONL
file resolves it itself: ``recovered_seq`` reads the last event already in the file.

```yaml
alarms:
  notify:
    log: true                       # WARNING for ALARM, INFO otherwise (default true)
    file: alarms.jsonl              # appended and fsynced, relative to shardline.yml
    webhook:                        # or a list of these
      url: http://127.0.0.1:9000/hook
      retries: 3                    # attempts after the first, 0..20 (default 3)
      backoffSeconds: 1             # doubled after each failure, capped at 300 (default 1)
      timeoutSeconds: 5             # per attempt (default 5)
      headers: {Authorization: Bearer xyz}
    states: [ALARM, OK]             # only transitions into these states (default: into or out of ALARM)
```
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._config import ConfigError, ConfigFile

__all__ = [
    "STATES",
    "AlarmConfigError",
    "FileNotifier",
    "LogNotifier",
    "Notifier",
    "NotifyConfig",
    "WebhookConfig",
    "WebhookNotifier",
    "build_notifiers",
    "parse_notify",
]

log = logging.getLogger("shardline.alarms")

STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
_TAIL_BYTES = 64 * 1024


class AlarmConfigError(ConfigError):
    """An invalid ``alarms:`` section; the message names the file, the key path and what is allowed."""


class Notifier:
    """Base of every notifier. ``states`` limits which transitions it wants (by new state); None means the default:
    transitions into or out of ALARM, so the first OK of a freshly started alarm is not announced."""

    name = "notifier"

    def __init__(self, *, retries: int = 0, backoff_s: float = 1.0, states: frozenset[str] | None = None) -> None:
        self.retries = retries
        self.backoff_s = backoff_s
        self.states = states

    def wants(self, event: Mapping[str, Any]) -> bool:
        if self.states is not None:
            return event["new_state"] in self.states
        return "ALARM" in (event["new_state"], event["old_state"])

    async def send(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def recovered_seq(self) -> int | None:
        """The highest event seq this notifier can prove it already delivered (None: it cannot tell)."""
        return None


class LogNotifier(Notifier):
    name = "log"

    def __init__(self, *, states: frozenset[str] | None = None, logger: logging.Logger | None = None) -> None:
        super().__init__(states=states)
        self._log = logger or log

    async def send(self, event: dict[str, Any]) -> None:
        level = logging.WARNING if event["new_state"] == "ALARM" else logging.INFO
        self._log.log(
            level, "alarm %s: %s -> %s: %s", event["alarm"], event["old_state"], event["new_state"], event["reason"]
        )


class FileNotifier(Notifier):
    """One JSON object per line; each append is fsynced before the event counts as delivered."""

    name = "file"

    def __init__(
        self, path: Path, *, retries: int = 3, backoff_s: float = 1.0, states: frozenset[str] | None = None
    ) -> None:
        super().__init__(retries=retries, backoff_s=backoff_s, states=states)
        self.path = path

    async def send(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n"
        await asyncio.to_thread(self._append, line.encode())

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a line torn by a crash stays alone on its line instead of spoiling this one
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def recovered_seq(self) -> int | None:
        try:
            with self.path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - _TAIL_BYTES))
                tail = f.read()
        except FileNotFoundError:
            return None
        best: int | None = None
        for raw in tail.splitlines():
            try:
                seq = json.loads(raw).get("seq")
            except (ValueError, AttributeError):
                continue  # the first line of the tail may be cut, or a line torn by a crash
            if isinstance(seq, int) and (best is None or seq > best):
                best = seq
        return best


class WebhookNotifier(Notifier):
    """HTTP POST of the event as JSON; any 2xx is a delivery, anything else (or no answer in time) a failure."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        retries: int = 3,
        backoff_s: float = 1.0,
        timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        states: frozenset[str] | None = None,
    ) -> None:
        super().__init__(retries=retries, backoff_s=backoff_s, states=states)
        self.url = url
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})

    async def send(self, event: dict[str, Any]) -> None:
        # urllib blocks; a thread keeps the event loop (and the Kinesis endpoint on it) responsive meanwhile
        await asyncio.to_thread(self._post, json.dumps(event, sort_keys=True).encode(), str(event["id"]))

    def _post(self, body: bytes, event_id: str) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "shardline-alarms",
            "Idempotency-Key": event_id,
            **self.headers,
        }
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                status = resp.status
                resp.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            raise OSError(f"webhook {self.url} answered HTTP {exc.code}") from None
        if not 200 <= status < 300:
            raise OSError(f"webhook {self.url} answered HTTP {status}")


# ------------------------------------------------------------------------------------------------ configuration
@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    retries: int = 3
    backoff_s: float = 1.0
    timeout_s: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)
    states: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    log: bool = True
    file: Path | None = None
    webhooks: tuple[WebhookConfig, ...] = ()
    states: frozenset[str] | None = None


def build_notifiers(cfg: NotifyConfig) -> list[Notifier]:
    out: list[Notifier] = []
    if cfg.log:
        out.append(LogNotifier(states=cfg.states))
    if cfg.file is not None:
        out.append(FileNotifier(cfg.file, states=cfg.states))
    for i, w in enumerate(cfg.webhooks):
        hook = WebhookNotifier(
            w.url,
            retries=w.retries,
            backoff_s=w.backoff_s,
            timeout_s=w.timeout_s,
            headers=w.headers,
            states=w.states if w.states is not None else cfg.states,
        )
        # the delivery cursor is kept per name, so every webhook needs its own
        hook.name = "webhook" if i == 0 else f"webhook-{i + 1}"
        out.append(hook)
    return out


def _states(cf: ConfigFile, where: str, value: Any) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise cf.fail(where, f"must be a list of states (allowed: {', '.join(STATES)})")
    for s in value:
        if s not in STATES:
            raise cf.fail(where, f"{s!r} is not a state (allowed: {', '.join(STATES)})")
    return frozenset(value)


def _webhook(cf: ConfigFile, where: str, value: Any) -> WebhookConfig:
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, dict):
        raise cf.fail(where, "must be a URL or a mapping with 'url'")
    cf.check_keys(where, value, {"url", "retries", "backoffSeconds", "timeoutSeconds", "headers", "states"})
    url = value.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise cf.fail(f"{where}.url", f"{url!r} is not allowed (allowed: an http:// or https:// URL)")
    headers = value.get("headers") or {}
    if not isinstance(headers, dict):
        raise cf.fail(f"{where}.headers", "must be a mapping of header name to value")
    return WebhookConfig(
        url=url,
        retries=cf.integer(f"{where}.retries", value.get("retries", 3), 0, 20),
        backoff_s=cf.number(f"{where}.backoffSeconds", value.get("backoffSeconds", 1), 0, 300),
        timeout_s=cf.number(f"{where}.timeoutSeconds", value.get("timeoutSeconds", 5), 0.1, 120),
        headers={str(k): str(v) for k, v in headers.items()},
        states=_states(cf, f"{where}.states", value["states"]) if "states" in value else None,
    )


def parse_notify(data: Any, path: Path, where: str = "alarms.notify") -> NotifyConfig:
    """The ``notify`` mapping; a relative ``file`` is resolved against the directory of ``path``."""
    if data is None:
        return NotifyConfig()
    cf = ConfigFile(path, AlarmConfigError)
    if not isinstance(data, dict):
        raise cf.fail(where, "must be a mapping with 'log', 'file', 'webhook' or 'states'")
    cf.check_keys(where, data, {"log", "file", "webhook", "webhooks", "states"})
    file: Path | None = None
    if data.get("file") not in (None, False):
        if not isinstance(data["file"], str) or not data["file"]:
            raise cf.fail(f"{where}.file", "must be the path of a JSONL file (relative to the config file)")
        file = (path.parent / data["file"]).resolve()
    hooks: list[WebhookConfig] = []
    for key in ("webhook", "webhooks"):
        raw = data.get(key)
        if raw is None:
            continue
        items = raw if isinstance(raw, list) else [raw]
        hooks += [
            _webhook(cf, f"{where}.{key}" + (f"[{i}]" if isinstance(raw, list) else ""), v) for i, v in enumerate(items)
        ]
    return NotifyConfig(
        log=cf.boolean(f"{where}.log", data.get("log", True)),
        file=file,
        webhooks=tuple(hooks),
        states=_states(cf, f"{where}.states", data["states"]) if "states" in data else None,
    )
