"""The ``shardline`` command: serve, up, validate, redrive, run, top, cdc."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import __version__
from .api import KinesisApp
from .api.auth import SigV4Verifier, load_credentials
from .api.server import DEFAULT_LIMITS, ServerLimits, TlsFiles, bind, is_loopback, run
from .clock import SystemClock
from .compose import Front, compose
from .engine import Engine
from .errors import KinesisError
from .metrics import Monitor
from .metrics.access import TOKEN_ENV, MonitoringAccess, monitoring_access
from .metrics.alarms import AlarmsConfig, parse_alarms
from .metrics.worker import WorkerMonitor, serving
from .projectfile import Loaded, LoadOptions, load_project
from .runtime.config import ConfigError, ProjectConfig
from .runtime.destinations import local_stream_for
from .runtime.functions import FunctionPool
from .runtime.leases.coordinator import LeaseTiming
from .runtime.localworkers import LocalWorkers, workers_problem
from .runtime.redrive import RedriveResult, load_messages, redrive_all
from .runtime.remote import RemoteProject, kinesis_client, run_until_stopped
from .settings import Settings
from .sources.config import SourceConfig, parse_sources
from .storage.catalog import DataDirLocked

__all__ = ["main"]

log = logging.getLogger("shardline")


def _common(p: argparse.ArgumentParser, *, port: bool = True) -> None:
    p.add_argument("--data-dir", type=Path, default=Path("shardline-data"), help="default: ./shardline-data")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--account-id", default="000000000000")
    p.add_argument("--fsync", choices=["always", "interval", "never"], default="always")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    if port:
        p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, loopback only)")
        p.add_argument("--port", type=int, default=4567, help="TCP port (default 4567; 0 picks a free port)")
        p.add_argument("--enforce-limits", action="store_true", help="apply Kinesis per-shard throughput limits")
        p.add_argument(
            "--subscription-lifetime",
            type=float,
            default=300.0,
            metavar="SECONDS",
            help="how long a SubscribeToShard subscription lasts before the client must resubscribe (default 300, "
            "as AWS)",
        )
        _status_delays(p)
        p.add_argument("--log-requests", action="store_true", help="write a JSON access-log line per request")
        p.add_argument(
            "--no-metrics",
            action="store_true",
            help="no monitoring: no /metrics, /api, /dashboard, alarms or metric files",
        )
        p.add_argument(
            "--auth",
            choices=["none", "off", "sigv4"],
            default="none",
            help="none (default): any key is accepted, but a request must be signed as AWS requires (every AWS SDK "
            "and the CLI sign theirs); off: unsigned requests are served too; sigv4: signatures are verified "
            "against --credentials",
        )
        p.add_argument("--credentials", type=Path, help="AWS credentials file whose keys --auth sigv4 accepts")
        p.add_argument(
            "--allow-unauthenticated",
            action="store_true",
            help="serve without --auth on an address other than loopback (anyone who reaches it can write and delete)",
        )
        p.add_argument(
            "--max-connections",
            type=int,
            default=None,
            help=f"open client connections at most (default {DEFAULT_LIMITS.max_connections}, and at most half the "
            "open-file limit, so the storage engine always keeps files)",
        )
        p.add_argument(
            "--request-timeout",
            type=float,
            default=DEFAULT_LIMITS.request_timeout_s,
            help=f"seconds a client has to send a whole request (default {DEFAULT_LIMITS.request_timeout_s:g})",
        )
        p.add_argument(
            "--idle-timeout",
            type=float,
            default=DEFAULT_LIMITS.idle_timeout_s,
            help=f"seconds an idle connection is kept open (default {DEFAULT_LIMITS.idle_timeout_s:g})",
        )
        p.add_argument(
            "--write-timeout",
            type=float,
            default=DEFAULT_LIMITS.write_timeout_s,
            help=f"seconds a client may leave its response unread before it is dropped "
            f"(default {DEFAULT_LIMITS.write_timeout_s:g})",
        )
        p.add_argument(
            "--tls-cert",
            type=Path,
            metavar="PEM",
            help="serve https with this certificate chain (with --tls-key); ALPN offers HTTP/2 and HTTP/1.1",
        )
        p.add_argument("--tls-key", type=Path, metavar="PEM", help="the private key of --tls-cert (unencrypted PEM)")
        p.add_argument(
            "--monitoring-token",
            metavar="TOKEN",
            help=f"require this bearer token on /metrics and /api/* (also from ${TOKEN_ENV})",
        )
        p.add_argument(
            "--monitoring-token-file", metavar="FILE", type=Path, help="read the monitoring bearer token from FILE"
        )
        p.add_argument(
            "--monitoring",
            choices=["auto", "open"],
            default="auto",
            help="auto (default): monitoring is open, or needs the token when one is given, and is closed under "
            "--auth sigv4 until a token is given; open: everyone may read it, even under --auth sigv4",
        )


def _project_options(p: argparse.ArgumentParser) -> None:
    """How a serverless.yml or a SAM/CloudFormation template is resolved."""
    p.add_argument("--stage", help="serverless.yml: the stage (${opt:stage}, ${sls:stage}; default provider.stage)")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="serverless.yml: ${param:KEY} (repeatable)"
    )
    p.add_argument(
        "--parameter-overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="SAM/CloudFormation: values of the template's Parameters",
    )


# How long a stream is CREATING, UPDATING or DELETING (and a consumer CREATING or DELETING) unless told otherwise:
# long enough that code which uses a stream before it is ACTIVE fails here as it would on AWS (kinesalite's choice
# too), short enough for a development loop. The streams of `shardline up`'s project file are ACTIVE at once.
DEFAULT_STATUS_DELAY_S = 0.5


def _status_delays(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--status-delay",
        type=float,
        default=DEFAULT_STATUS_DELAY_S,
        metavar="SECONDS",
        help=f"how long streams stay CREATING, UPDATING and DELETING, and consumers CREATING and DELETING "
        f"(default {DEFAULT_STATUS_DELAY_S:g}; 0: every change at once)",
    )
    for state in ("creating", "updating", "deleting"):
        p.add_argument(
            f"--{state}-delay",
            type=float,
            metavar="SECONDS",
            help=f"how long {state.upper()} lasts (default: --status-delay)",
        )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shardline", description="Self-hosted streams with Kinesis semantics.")
    p.add_argument("--version", action="version", version=f"shardline {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    srv = sub.add_parser("serve", help="serve the Kinesis API (boto3, the AWS CLI and the SDKs work against it)")
    _common(srv)

    up = sub.add_parser("up", help="run a project: its streams, the Kinesis endpoint and every stream function")
    up.add_argument(
        "file",
        nargs="?",
        type=Path,
        default=Path("shardline.yml"),
        help="shardline.yml (default), serverless.yml, or a SAM/CloudFormation template",
    )
    _common(up)
    _project_options(up)
    up.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run the functions in N local worker processes sharing the shards through leases (default 1: in this "
        "process)",
    )

    va = sub.add_parser("validate", help="print what a project file means after resolution, without starting anything")
    va.add_argument("file", nargs="?", type=Path, default=Path("shardline.yml"), help="default: ./shardline.yml")
    va.add_argument("--region", default="us-east-1")
    va.add_argument("--account-id", default="000000000000")
    _project_options(va)

    rd = sub.add_parser("redrive", help="re-process the records that on-failure messages point to")
    rd.add_argument(
        "messages", help="where the on-failure records are: a JSONL file, or stream:NAME for a stream destination"
    )
    rd.add_argument("--config", type=Path, default=Path("shardline.yml"), help="project file (default ./shardline.yml)")
    rd.add_argument("--function", required=True, help="the function (from the project file) to invoke")
    rd.add_argument("--handler", help="use this handler instead of the one in the project file (the fixed one)")
    rd.add_argument("--again", action="store_true", help="also redrive messages that were redriven successfully")
    _common(rd, port=False)
    _project_options(rd)

    rn = sub.add_parser(
        "run", help="run a project's functions against a Kinesis endpoint (a shardline serve, or AWS itself)"
    )
    rn.add_argument("file", nargs="?", type=Path, default=Path("shardline.yml"), help="default: ./shardline.yml")
    rn.add_argument(
        "--endpoint-url", help="the Kinesis endpoint; without it boto3 resolves one (AWS, AWS_ENDPOINT_URL_KINESIS)"
    )
    rn.add_argument("--create-streams", action="store_true", help="create the project's streams if missing")
    rn.add_argument("--state-dir", type=Path, default=Path("shardline-data/runtime"), help="checkpoints (lease store)")
    rn.add_argument("--region", default="us-east-1")
    rn.add_argument("--account-id", default="000000000000")
    rn.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    _project_options(rn)
    _lease_options(rn)
    _worker_metrics_options(rn)

    cdc = sub.add_parser(
        "cdc", help="run a project's change-data-capture sources into a Kinesis endpoint (a shardline serve, or AWS)"
    )
    cdc.add_argument("file", nargs="?", type=Path, default=Path("shardline.yml"), help="default: ./shardline.yml")
    cdc.add_argument(
        "--endpoint-url", help="the Kinesis endpoint; without it boto3 resolves one (AWS, AWS_ENDPOINT_URL_KINESIS)"
    )
    cdc.add_argument(
        "--state-dir", type=Path, default=Path("shardline-data/sources"), help="checkpoints (one file per source)"
    )
    cdc.add_argument("--region", default="us-east-1")
    cdc.add_argument("--account-id", default="000000000000")
    cdc.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    _project_options(cdc)

    top = sub.add_parser("top", help="a live terminal view of a running server's streams, mappings and alarms")
    top.add_argument("--endpoint", default="http://127.0.0.1:4567", help="default: http://127.0.0.1:4567")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    top.add_argument("--once", action="store_true", help="print one snapshot and exit")
    top.add_argument("--token", help=f"the server's monitoring token (default: ${TOKEN_ENV})")
    top.add_argument("--token-file", type=Path, help="a file holding the server's monitoring token")
    return p


def _lease_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("shard leases (several workers sharing the shards; see docs/leases.md)")
    g.add_argument("--leases", help="postgresql://... or sqlite:PATH (default: sqlite:<state-dir>/leases.db)")
    g.add_argument("--worker-id", help="this worker's name in the lease table (default host:pid:random)")
    g.add_argument("--lease-ttl", type=float, default=10.0, help="seconds a lease lasts without renewal (default 10)")
    g.add_argument("--lease-renew", type=float, help="seconds between renewals (default TTL/3 - 0.025)")
    g.add_argument("--lease-take", type=float, help="seconds between take passes (default: the renew interval)")
    g.add_argument("--lease-balance", type=float, help="seconds between balance passes (default: the TTL)")
    g.add_argument("--handoff-timeout", type=float, default=30.0, help="seconds before a handoff is forced (30)")
    g.add_argument("--hard-steal", action="store_true", help="steal leases at once instead of asking for a handoff")
    g.add_argument("--lease-cleanup", type=float, default=60.0, help="seconds between cleanups of finished leases")
    g.add_argument("--completed-delay", type=float, default=300.0, help="keep finished parents this long (300)")


def _worker_metrics_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("monitoring of this worker (/metrics and /api/overview; see docs/leases.md)")
    g.add_argument("--metrics-port", type=int, help="serve this worker's lease metrics on this port (0: any free one)")
    g.add_argument("--metrics-host", default="127.0.0.1", help="the address to serve them on (default 127.0.0.1)")
    g.add_argument("--monitoring-token", help=f"require this bearer token on them (also from ${TOKEN_ENV})")
    g.add_argument("--monitoring-token-file", type=Path, help="read the monitoring bearer token from FILE")
    g.add_argument("--monitoring", default="auto", choices=["auto", "open"], help="as for serve")


def _lease_timing(args: argparse.Namespace) -> LeaseTiming:
    return LeaseTiming(
        ttl_s=args.lease_ttl,
        renew_s=args.lease_renew,
        take_s=args.lease_take,
        balance_s=args.lease_balance,
        handoff_timeout_s=args.handoff_timeout,
        graceful=not args.hard_steal,
        cleanup_s=args.lease_cleanup,
        completed_delay_s=args.completed_delay,
    )


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        data_dir=args.data_dir,
        region=args.region,
        account_id=args.account_id,
        enforce_limits=getattr(args, "enforce_limits", False),
        subscription_lifetime_s=getattr(args, "subscription_lifetime", 300.0),
        fsync=args.fsync,
        status_delay_s=getattr(args, "status_delay", 0.0),
        creating_delay_s=getattr(args, "creating_delay", None),
        updating_delay_s=getattr(args, "updating_delay", None),
        deleting_delay_s=getattr(args, "deleting_delay", None),
    )


def _fail(command: str, message: str) -> int:
    print(f"shardline {command}: {message}", file=sys.stderr)
    return 2


def _verifier(args: argparse.Namespace) -> SigV4Verifier | None:
    """The request authentication of ``--auth``; raises ValueError with the reason it cannot be set up."""
    if args.auth in ("none", "off"):
        if not is_loopback(args.host) and not args.allow_unauthenticated:
            raise ValueError(
                f"refusing to serve {args.host} without authentication: anyone who reaches it could write and "
                "delete streams. Use --auth sigv4 --credentials FILE, or --allow-unauthenticated to accept that"
            )
        return None
    if args.credentials is None:
        raise ValueError("--auth sigv4 needs --credentials FILE")
    return SigV4Verifier(load_credentials(args.credentials), region=args.region)


def _limits(args: argparse.Namespace) -> ServerLimits:
    limits = replace(
        DEFAULT_LIMITS,
        request_timeout_s=args.request_timeout,
        idle_timeout_s=args.idle_timeout,
        write_timeout_s=args.write_timeout,
    )
    if args.max_connections is not None:
        limits = replace(limits, max_connections=args.max_connections)
    limits.check()
    return limits


def _tls(args: argparse.Namespace) -> TlsFiles | None:
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    tls = TlsFiles(args.tls_cert, args.tls_key)
    tls.check()
    return tls


def _listen(
    args: argparse.Namespace, app: KinesisApp, banner: list[str], on_bound: Callable[[str], None] | None = None
) -> int:
    try:
        limits = _limits(args)
        tls = _tls(args)
    except ValueError as exc:
        return _fail(args.command, str(exc))
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"shardline {args.command}: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    if not is_loopback(args.host):
        log.warning("listening on %s: reachable from other machines", args.host)
    url = f"{'https' if tls else 'http'}://{'[' + host + ']' if ':' in host else host}:{port}"
    if on_bound is not None:
        on_bound(url)

    def ready() -> None:
        print(
            f"shardline {__version__} serving Kinesis at {url} (data {args.data_dir}, fsync={args.fsync})", flush=True
        )
        print(f'  boto3.client("kinesis", endpoint_url="{url}", region_name="{args.region}")', flush=True)
        for line in banner:
            print(line, flush=True)

    run(app, sock, limits=limits, tls=tls, on_ready=ready)
    if app.startup_error is not None:
        return _fail(args.command, app.startup_error)
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        verifier = _verifier(args)
        settings = _settings(args)
        access = _access(args, api_protected=verifier is not None)
    except ValueError as exc:
        return _fail("serve", str(exc))
    parts = compose(
        settings, clock=SystemClock(), metrics=not args.no_metrics, access=access, front=_front(args, verifier)
    )
    return _listen(args, parts.app, _monitor_banner(parts.monitor))


def _up(args: argparse.Namespace) -> int:
    try:
        verifier = _verifier(args)
        settings = _settings(args)
        loaded = _load(args, args.file)
        loaded.check_embedded()
        config = loaded.config
        alarms = parse_alarms(config.alarms, args.file)
        access = _access(args, api_protected=verifier is not None)
        if config.undeclared:
            asyncio.run(_check_present(settings, config))
    except (ValueError, ConfigError) as exc:
        return _fail("up", str(exc))
    except DataDirLocked as exc:
        return _fail("up", str(exc))
    if args.workers != 1:
        return _up_workers(args, config, settings, alarms, access, verifier=verifier)
    try:
        source_configs = parse_sources(config.sources, args.file)
        parts = compose(
            settings,
            clock=SystemClock(),
            project=config,
            beside=lambda engine: _sources_beside(config, source_configs, args, engine),
            alarms=alarms,
            metrics=not args.no_metrics,
            access=access,
            front=_front(args, verifier),
        )
    except ValueError as exc:
        return _fail("up", str(exc))
    banner = [
        f"  {len(config.streams)} streams, {len(config.functions)} functions, {len(config.mappings)} mappings "
        f"from {args.file}"
    ]
    for fn, m in config.mappings:
        dest = f", on failure -> {m.on_failure.kind} {m.on_failure.target}" if m.on_failure else ""
        banner.append(f"  {m.stream_name} -> {fn.config.name} ({fn.config.handler}){dest}")
    banner += _project_banner(config, embedded=True)
    banner += [f"  source {c.name} ({c.where}) -> {c.stream} ({c.format})" for c in source_configs.values()]
    return _listen(args, parts.app, banner + _monitor_banner(parts.monitor))


def _up_workers(
    args: argparse.Namespace,
    config: ProjectConfig,
    settings: Settings,
    alarms: AlarmsConfig,
    access: MonitoringAccess,
    *,
    verifier: SigV4Verifier | None,
) -> int:
    """``up --workers N``: this process serves the streams and the endpoint; N ``run`` processes run the functions."""
    if problem := workers_problem(config, args.workers):
        return _fail("up", problem)
    if args.tls_cert is not None:
        return _fail("up", "--workers needs the endpoint on plain http (the workers call it on loopback)")
    extra = ["--log-level", args.log_level]
    if args.stage:
        extra += ["--stage", args.stage]
    for kv in args.param:
        extra += ["--param", kv]
    if args.parameter_overrides:
        extra += ["--parameter-overrides", *args.parameter_overrides]
    env = dict(os.environ)
    if not args.no_metrics and not access.closed:
        extra += ["--metrics-port", "0"]  # each worker prints its address; the token goes in the environment
        if access.token is not None:
            env[TOKEN_ENV] = access.token
    made: list[LocalWorkers] = []

    def beside(engine: Engine) -> list[Any]:
        workers = LocalWorkers(config, engine, args.workers, Path(args.data_dir) / "runtime", extra=extra, env=env)
        made.append(workers)
        return [workers, *_sources_beside(config, source_configs, args, engine)]

    try:
        source_configs = parse_sources(config.sources, args.file)
        parts = compose(
            settings,
            clock=SystemClock(),
            beside=beside,
            alarms=alarms,
            metrics=not args.no_metrics,
            access=access,
            front=_front(args, verifier),
        )
    except ValueError as exc:
        return _fail("up", str(exc))
    workers = made[0]
    banner = [
        f"  {len(config.streams)} streams, {len(config.functions)} functions, {len(config.mappings)} mappings "
        f"from {args.file}, run by {args.workers} worker processes sharing the leases in {workers.leases_url}"
    ]

    def bound(url: str) -> None:
        workers.endpoint_url = url.replace("://0.0.0.0:", "://127.0.0.1:")

    return _listen(args, parts.app, banner + _monitor_banner(parts.monitor), on_bound=bound)


def _sources_beside(
    config: Any, configs: dict[str, SourceConfig], args: argparse.Namespace, engine: Engine
) -> list[Any]:
    """The project's CDC sources, writing into the embedded engine (none: nothing to import or start)."""
    if not configs:
        return []
    for c in configs.values():
        if c.stream not in config.streams:
            where = f"sources.{c.name}.stream"
            raise ValueError(f"{args.file}: {where}: stream '{c.stream}' is not declared under 'streams'")
    service = importlib.import_module("shardline.sources.service")
    return [service.Sources(configs, lambda s: service.EngineSink(engine, s), Path(args.data_dir) / "sources")]


def _cdc(args: argparse.Namespace) -> int:
    try:
        config = _load(args, args.file).config
        configs = parse_sources(config.sources, args.file)
    except (ValueError, ConfigError) as exc:
        return _fail("cdc", str(exc))
    if not configs:
        return _fail("cdc", f"{args.file} has no sources")
    service = importlib.import_module("shardline.sources.service")
    client = kinesis_client(args.endpoint_url, args.region)
    sources = service.Sources(configs, lambda s: service.KinesisSink(client, s), args.state_dir)

    def ready() -> None:
        where = args.endpoint_url or "the endpoint boto3 resolves"
        for c in configs.values():
            print(f"shardline {__version__} source {c.name} ({c.where}) -> stream {c.stream} on {where}", flush=True)

    try:
        asyncio.run(service.run_sources(sources, on_ready=ready))
    except (KinesisError, service.SourceSetupError) as exc:
        return _fail("cdc", getattr(exc, "message", None) or str(exc))
    return 0


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _load(args: argparse.Namespace, path: Path) -> Loaded:
    """The project of ``path`` in whichever dialect it is written (raises ConfigError or ValueError)."""
    return load_project(
        path,
        LoadOptions(
            region=args.region,
            account_id=args.account_id,
            stage=args.stage,
            params=_pairs(args.param, "--param"),
            overrides=_pairs(args.parameter_overrides, "--parameter-overrides"),
        ),
    )


async def _check_present(settings: Settings, config: ProjectConfig) -> None:
    """Streams the file uses without declaring them must already be in the data directory (before anything starts)."""
    async with Engine(settings) as engine:
        present = set(engine.view.stream_names())
    for _fn, m in config.mappings:
        if m.uuid in config.undeclared and m.stream_name not in present:
            raise ConfigError(config.undeclared[m.uuid])


def _project_banner(config: ProjectConfig, *, embedded: bool) -> list[str]:
    """What startup says beyond the mappings: where each SQS/SNS destination goes and what is not applied (once)."""
    lines: list[str] = []
    seen: set[str] = set()
    for fn, m in config.mappings:
        d = m.on_failure
        if d is None or d.kind not in ("sqs", "sns") or d.target in seen:
            continue
        seen.add(d.target)
        if embedded:
            name = local_stream_for(d.target)
            lines.append(
                f"  on-failure {d.target} -> local stream {name} (redrive: shardline redrive stream:{name} "
                f"--config {config.path} --function {fn.config.name})"
            )
        else:
            what = "queue" if d.kind == "sqs" else "topic"
            lines.append(f"  on-failure {d.target} -> sent to that {d.kind.upper()} {what}")
    if config.notices:
        lines.append(f"  not applied locally ({config.dialect}):")
        lines += [f"    - {n}" for n in config.notices]
    return lines


def _validate(args: argparse.Namespace) -> int:
    try:
        loaded = _load(args, args.file)
    except (ValueError, ConfigError) as exc:
        return _fail("validate", str(exc))
    for line in loaded.describe():
        print(line)
    return 0


def _access(args: argparse.Namespace, *, api_protected: bool) -> MonitoringAccess:
    return monitoring_access(
        token=args.monitoring_token,
        token_file=args.monitoring_token_file,
        mode=args.monitoring,
        api_protected=api_protected,
    )


def _front(args: argparse.Namespace, verifier: SigV4Verifier | None) -> Front:
    return Front(verifier=verifier, signature_shape=args.auth == "none", log_requests=args.log_requests)


def _monitor_banner(monitor: Monitor | None) -> list[str]:
    if monitor is None:
        return []
    access = monitor.app.access
    state = " (closed: see the log)" if access.closed else " (bearer token required)" if access.protected else ""
    return [f"  metrics at /metrics, dashboard at /dashboard, JSON at /api/overview and /api/query{state}"]


def _top(args: argparse.Namespace) -> int:
    try:
        top = importlib.import_module("shardline.metrics.top")
    except ModuleNotFoundError as exc:
        if exc.name != "shardline.metrics.top":
            raise
        return _fail("top", "this installation has no terminal view (shardline.metrics.top is missing)")
    return int(top.main(args))


async def _redrive(args: argparse.Namespace) -> int:
    try:
        config = _load(args, args.config).config
        from_stream = args.messages.startswith("stream:")
        messages = None if from_stream else load_messages(Path(args.messages))
    except (ValueError, ConfigError, OSError) as exc:
        return _fail("redrive", str(exc))
    fn = config.functions.get(args.function)
    if fn is None:
        return _fail("redrive", f"{args.config} has no function '{args.function}'")
    fconfig = fn.config
    if args.handler:
        fconfig = replace(fconfig, handler=args.handler)
    pool = FunctionPool(fconfig)
    try:
        async with Engine(_settings(args)) as engine:
            run = await redrive_all(
                engine,
                messages=messages,
                stream=args.messages.removeprefix("stream:") if from_stream else None,
                function=pool,
                region=args.region,
                role_arn=fconfig.role_arn,
                state=args.data_dir / "runtime" / "redriven.jsonl",
                again=args.again,
                report=_print_redriven,
            )
    except DataDirLocked:
        return _fail("redrive", f"{args.data_dir} is in use: stop `shardline up` first, then redrive")
    finally:
        await pool.close()
    if not run.redriven:
        print(f"nothing to redrive: {run.found} messages in {args.messages}, all redriven already")
        return 0
    print(f"redrove {run.redriven - run.failed} of {run.redriven} messages")
    return 1 if run.failed else 0


def _print_redriven(result: RedriveResult) -> None:
    status = "ok" if result.ok else f"FAILED ({result.error})"
    gone = " (some records are past retention)" if result.missing else ""
    print(f"{result.shard_id} {result.start}..{result.end}: {result.found} records {status}{gone}")


def _run(args: argparse.Namespace) -> int:
    try:
        config = _load(args, args.file).config
    except (ValueError, ConfigError) as exc:
        return _fail("run", str(exc))
    timing = _lease_timing(args)
    if problems := timing.problems():
        return _fail("run", "; ".join(problems))
    if args.leases is not None and not args.leases.startswith(("postgresql://", "postgres://", "sqlite:")):
        return _fail("run", "--leases must be postgresql://... or sqlite:PATH")
    monitor = None
    if args.metrics_port is not None:
        try:
            access = _access(args, api_protected=False)
        except ValueError as exc:
            return _fail("run", str(exc))
        if not 0 <= args.metrics_port <= 65535:
            return _fail("run", "--metrics-port must be from 0 to 65535")
        if not is_loopback(args.metrics_host):
            log.warning("serving worker metrics on %s: reachable from other machines", args.metrics_host)
    client = kinesis_client(args.endpoint_url, args.region)
    project = RemoteProject(
        config,
        client,
        args.state_dir,
        create_streams=args.create_streams,
        region=args.region,
        leasing=timing,
        leases=args.leases,
        worker_id=args.worker_id,
    )
    if args.metrics_port is not None:
        monitor = WorkerMonitor(project, access, args.metrics_host, args.metrics_port)

    def ready() -> None:
        where = args.endpoint_url or "the endpoint boto3 resolves"
        print(
            f"shardline {__version__} running {len(config.mappings)} mappings from {args.file} on {where}", flush=True
        )
        for line in _project_banner(config, embedded=False):
            print(line, flush=True)
        if monitor is not None:
            print(f"  worker metrics at {monitor.url}/metrics, JSON at {monitor.url}/api/overview", flush=True)

    async def worker() -> None:
        async with serving(monitor):
            await run_until_stopped(project, on_ready=ready)

    try:
        asyncio.run(worker())
    except KinesisError as exc:
        return _fail("run", exc.message or type(exc).__name__)
    except ConfigError as exc:
        return _fail("run", str(exc))
    except OSError as exc:
        if monitor is None or monitor.port != args.metrics_port or not exc.strerror:
            raise
        return _fail("run", f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {exc.strerror}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = getattr(args, "log_level", "warning")
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        return _serve(args)
    if args.command == "up":
        return _up(args)
    if args.command == "redrive":
        return asyncio.run(_redrive(args))
    if args.command == "top":
        return _top(args)
    if args.command == "run":
        return _run(args)
    if args.command == "cdc":
        return _cdc(args)
    if args.command == "validate":
        return _validate(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
