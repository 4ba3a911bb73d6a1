"""The ``shardline`` command's options: one parser for every subcommand, the option groups they share, and what
the options make (Settings, lease timings)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import __version__
from ..api.server import DEFAULT_LIMITS
from ..metrics.access import TOKEN_ENV
from ..runtime.leases.coordinator import LeaseTiming
from ..settings import Settings


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

    rn = _endpoint_command(
        sub,
        "run",
        "run a project's functions against a Kinesis endpoint (a shardline serve, or AWS itself)",
        state_dir="shardline-data/runtime",
        state_help="checkpoints (lease store)",
        create_streams=True,
    )
    _lease_options(rn)
    _worker_metrics_options(rn)

    _endpoint_command(
        sub,
        "cdc",
        "run a project's change-data-capture sources into a Kinesis endpoint (a shardline serve, or AWS)",
        state_dir="shardline-data/sources",
        state_help="checkpoints (one file per source)",
    )

    top = sub.add_parser("top", help="a live terminal view of a running server's streams, mappings and alarms")
    top.add_argument("--endpoint", default="http://127.0.0.1:4567", help="default: http://127.0.0.1:4567")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    top.add_argument("--once", action="store_true", help="print one snapshot and exit")
    top.add_argument("--token", help=f"the server's monitoring token (default: ${TOKEN_ENV})")
    top.add_argument("--token-file", type=Path, help="a file holding the server's monitoring token")
    return p


def _endpoint_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help: str,
    *,
    state_dir: str,
    state_help: str,
    create_streams: bool = False,
) -> argparse.ArgumentParser:
    """A command that runs a project's parts against a Kinesis endpoint, with its state in a local directory."""
    p = sub.add_parser(name, help=help)
    p.add_argument("file", nargs="?", type=Path, default=Path("shardline.yml"), help="default: ./shardline.yml")
    p.add_argument(
        "--endpoint-url", help="the Kinesis endpoint; without it boto3 resolves one (AWS, AWS_ENDPOINT_URL_KINESIS)"
    )
    if create_streams:
        p.add_argument("--create-streams", action="store_true", help="create the project's streams if missing")
    p.add_argument("--state-dir", type=Path, default=Path(state_dir), help=state_help)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--account-id", default="000000000000")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    _project_options(p)
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
