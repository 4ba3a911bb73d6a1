"""The ``shardline`` command: serve, up, validate, redrive, run, top, cdc."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import uvloop
from botocore.exceptions import BotoCoreError

from .. import __version__
from .._tasks import first_of
from ..api import KinesisApp
from ..api.auth import SigV4Verifier, load_credentials
from ..api.server import DEFAULT_LIMITS, ServerLimits, TlsFiles, bind, is_loopback, serve
from ..clock import SystemClock
from ..compose import Front, compose
from ..engine import Engine
from ..errors import KinesisError
from ..metrics import Monitor
from ..metrics.access import TOKEN_ENV, MonitoringAccess, monitoring_access
from ..metrics.alarms import parse_alarms
from ..metrics.worker import WorkerMonitor, serving
from ..projectfile import Loaded, LoadOptions, load_project
from ..runtime.config import ConfigError, ProjectConfig
from ..runtime.destinations import local_stream_for
from ..runtime.functions import FunctionPool
from ..runtime.leases import LeaseUnavailable
from ..runtime.localworkers import LocalWorkers, workers_problem
from ..runtime.redrive import RedriveResult, load_messages, redrive_all
from ..runtime.remote import RemoteProject, kinesis_client
from ..settings import Settings
from ..sources.config import SourceConfig, parse_sources
from ..storage.catalog import DataDirLocked
from .options import _lease_timing, _parser, _settings

__all__ = ["main"]

log = logging.getLogger("shardline")


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

    uvloop.run(serve(app, sock, limits=limits, tls=tls, on_ready=ready))
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
    local_workers: Callable[[Engine], LocalWorkers] | None = None
    if args.workers != 1:
        try:
            local_workers = _local_workers(args, config, access)
        except ValueError as exc:
            return _fail("up", str(exc))
    made: list[LocalWorkers] = []

    def beside(engine: Engine) -> list[Any]:
        if local_workers is not None:
            made.append(local_workers(engine))
        return [*made, *_sources_beside(config, source_configs, args, engine)]

    try:
        source_configs = parse_sources(config.sources, args.file)
        parts = compose(
            settings,
            clock=SystemClock(),
            project=config if local_workers is None else None,
            beside=beside,
            alarms=alarms,
            metrics=not args.no_metrics,
            access=access,
            front=_front(args, verifier),
        )
    except ValueError as exc:
        return _fail("up", str(exc))
    counts = (
        f"  {len(config.streams)} streams, {len(config.functions)} functions, {len(config.mappings)} mappings "
        f"from {args.file}"
    )
    if made:
        [workers] = made
        banner = [f"{counts}, run by {args.workers} worker processes sharing the leases in {workers.leases_url}"]

        def bound(url: str) -> None:
            workers.endpoint_url = url.replace("://0.0.0.0:", "://127.0.0.1:")

        return _listen(args, parts.app, banner + _monitor_banner(parts.monitor), on_bound=bound)
    banner = [counts]
    for fn, m in config.mappings:
        dest = f", on failure -> {m.on_failure.kind} {m.on_failure.target}" if m.on_failure else ""
        banner.append(f"  {m.stream_name} -> {fn.config.name} ({fn.config.handler}){dest}")
    banner += _project_banner(config, embedded=True)
    banner += [f"  source {c.name} ({c.where}) -> {c.stream} ({c.format})" for c in source_configs.values()]
    return _listen(args, parts.app, banner + _monitor_banner(parts.monitor))


def _local_workers(
    args: argparse.Namespace, config: ProjectConfig, access: MonitoringAccess
) -> Callable[[Engine], LocalWorkers]:
    """``up --workers N``: this process serves the streams and the endpoint; N ``run`` processes (made over the
    engine) run the functions. A ValueError says why the project cannot run so."""
    if problem := workers_problem(config, args.workers):
        raise ValueError(problem)
    if args.tls_cert is not None:
        raise ValueError("--workers needs the endpoint on plain http (the workers call it on loopback)")
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
    return lambda engine: LocalWorkers(
        config, engine, args.workers, Path(args.data_dir) / "runtime", extra=extra, env=env
    )


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

    async def cdc() -> None:
        await _run_until_signalled(sources, ready, ended=sources.wait_ended)
        if sources.failed:
            raise service.SourceSetupError("; ".join(sources.failed.values()))

    try:
        asyncio.run(cdc())
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
            await _run_until_signalled(project, ready)

    try:
        asyncio.run(worker())
    except KinesisError as exc:
        return _fail("run", exc.message or type(exc).__name__)
    except (ConfigError, LeaseUnavailable) as exc:
        return _fail("run", str(exc))
    except BotoCoreError as exc:  # no credentials, an endpoint that cannot be reached: nothing a traceback explains
        return _fail("run", str(exc))
    except OSError as exc:
        if monitor is None or monitor.port != args.metrics_port or not exc.strerror:
            raise
        return _fail("run", f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {exc.strerror}")
    return 0


class _Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def _run_until_signalled(
    service: _Service, on_ready: Callable[[], None], *, ended: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Start ``service``, then run until SIGINT or SIGTERM (or until ``ended`` returns); stopping it lets in-flight
    work finish and checkpoint."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    try:
        on_ready()
        if ended is None:
            await stop.wait()
        else:
            await first_of(ended(), stop.wait())
    finally:
        await service.stop()


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
