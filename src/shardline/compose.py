"""What ``shardline serve`` and ``shardline up`` run, composed in one place: the engine, the project's stream functions
(under ``up``), the monitor with its alarm manager and notifiers, and the Kinesis app that serves them, every part on
one injected clock.

The command line passes the system clock and hands the app to the HTTP server, whose ASGI lifespan opens the engine
and starts the services in order (project, then monitor) and stops them in reverse. Tests build the same composition
with a ManualClock and drive that lifespan in-process, so what they advance is the time every part reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api import KinesisApp
from .api.app import Service
from .api.auth import SigV4Verifier
from .clock import Clock
from .engine import Engine
from .metrics import Monitor
from .metrics.access import OPEN, MonitoringAccess
from .metrics.alarms import AlarmManager, AlarmsConfig, default_rules_for, merge_rules, parse_alarms
from .metrics.leases import WorkersLike, restart_hook
from .metrics.notify import build_notifiers
from .metrics.series import SeriesStore
from .metrics.sources import SourcesLike, source_hook, source_rules
from .runtime.config import ProjectConfig
from .runtime.project import Project
from .settings import Settings

__all__ = ["Composition", "Front", "compose"]

NO_ALARMS = parse_alarms(None, Path("shardline.yml"))  # the built-in rules with their defaults, no notifier


@dataclass(frozen=True, slots=True)
class Front:
    """How the endpoint treats requests: ``verifier`` checks signatures (``--auth sigv4``); without one,
    ``signature_shape`` still requires a signature of AWS's shape (``--auth none``) and False serves unsigned requests
    (``--auth off``); ``log_requests`` writes an access-log line per request."""

    verifier: SigV4Verifier | None = None
    signature_shape: bool = False
    log_requests: bool = False


@dataclass(frozen=True, slots=True)
class Composition:
    engine: Engine
    project: Project | None  # the project's functions and mappings (``up``); None under ``serve``
    monitor: Monitor | None  # None without monitoring (``--no-metrics``)
    app: KinesisApp  # serves the Kinesis API, and /metrics, /api and /dashboard through the monitor's app


def compose(
    settings: Settings,
    *,
    clock: Clock,
    project: ProjectConfig | None = None,
    beside: Callable[[Engine], Sequence[Service]] | None = None,
    alarms: AlarmsConfig | None = None,
    metrics: bool = True,
    access: MonitoringAccess = OPEN,
    front: Front | None = None,
) -> Composition:
    """The engine over ``settings``, the project of ``project`` when given, the services ``beside`` makes over the
    engine (the project's CDC sources; they start after the project), and (with ``metrics``) the monitor: it
    samples into <data dir>/metrics and alarms with the built-in rules for every stream, mapping and function
    (re-derived as they come and go) plus the rules and notifiers of ``alarms``. Nothing runs until the app's
    lifespan starts."""
    engine = Engine(settings, clock=clock)
    running = Project(project, engine, clock=clock) if project is not None else None
    extra = list(beside(engine)) if beside else []
    sources = next((s for s in extra if isinstance(s, SourcesLike)), None)  # (read by the monitor, if any)
    workers = next((s for s in extra if isinstance(s, WorkersLike)), None)  # (``up --workers``: their restarts)
    monitor = _monitor(engine, running, alarms or NO_ALARMS, access, sources, workers=workers) if metrics else None
    front = front or Front()
    services: list[Service] = [*([running] if running else []), *extra, *([monitor] if monitor else [])]
    app = KinesisApp(
        engine,
        verifier=front.verifier,
        signature_shape=front.signature_shape,
        log_requests=front.log_requests,
        services=services,
        extra_http=monitor.app if monitor else None,
    )
    return Composition(engine, running, monitor, app)


def _monitor(
    engine: Engine,
    project: Project | None,
    alarms: AlarmsConfig,
    access: MonitoringAccess,
    sources: SourcesLike | None = None,
    *,
    workers: WorkersLike | None = None,
) -> Monitor:
    state = Path(engine.settings.data_dir) / "metrics" / "alarms.json"
    notifiers = build_notifiers(alarms.notify)

    def rules() -> list[Any]:
        builtin = default_rules_for(engine, project, alarms.defaults)
        if sources is not None:
            builtin += source_rules(sources.names(), sources.lag_alarm_s, alarms.defaults)
        return merge_rules(builtin, alarms.rules)

    def manager(store: SeriesStore) -> AlarmManager:
        return AlarmManager(store, rules(), notifiers, engine.clock, state)

    hooks = [] if sources is None else [source_hook(sources)]
    if workers is not None:
        hooks.append(restart_hook(workers))
    return Monitor(engine, project=project, alarms_factory=manager, rules=rules, access=access, hooks=hooks)
