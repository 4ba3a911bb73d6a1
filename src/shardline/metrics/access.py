"""Who may read the monitoring endpoints (/metrics and /api/*): everyone, holders of a bearer token, or nobody.

The token is sent as ``Authorization: Bearer <token>`` (what Prometheus' ``authorization`` scrape setting, curl's
``--oauth2-bearer`` and the dashboard send). The dashboard's own files are the same for every installation and
hold no data, so they are served to everyone; the page asks for the token and sends it on its requests.

When the Kinesis API requires SigV4 and no token is given, monitoring is closed: the stream names, shard maps,
counters and failed batches it shows are what the signature protects, so it does not open by omission. The
operator opens it with a token, or explicitly with ``open``.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CLOSED", "OPEN", "TOKEN_ENV", "MonitoringAccess", "monitoring_access"]

log = logging.getLogger("shardline.metrics")

TOKEN_ENV = "SHARDLINE_MONITORING_TOKEN"
# RFC 6750's b64token: what `openssl rand -hex 32` and `openssl rand -base64 32` print.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]{1,4096}=*")
_CLOSED_HINT = (
    "monitoring is closed because the Kinesis API requires SigV4 and no monitoring token was given; start the server "
    f"with --monitoring-token, --monitoring-token-file or {TOKEN_ENV} to open it to token holders, "
    "or with --monitoring open to open it to everyone"
)


@dataclass(frozen=True, slots=True)
class MonitoringAccess:
    """``token`` None and ``closed`` False: open to everyone. ``token`` set: open to requests that carry it. ``closed``:
    refused to everyone (see the module docstring)."""

    token: str | None = field(default=None, repr=False)
    closed: bool = False

    @property
    def protected(self) -> bool:
        return self.closed or self.token is not None

    def refusal(self, authorization: str | None) -> str | None:
        """Why a request with this Authorization header value is refused, or None when it may read."""
        if self.closed:
            return _CLOSED_HINT
        if self.token is None:
            return None
        if authorization is None:
            return "monitoring requires a bearer token (Authorization: Bearer <token>)"
        scheme, _, presented = authorization.strip().partition(" ")
        # compare_digest: the time taken must not tell how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), self.token.encode()):
            return "the monitoring token is not valid"
        return None


OPEN = MonitoringAccess()
CLOSED = MonitoringAccess(closed=True)


def monitoring_access(
    *,
    token: str | None = None,
    token_file: Path | None = None,
    mode: str = "auto",
    api_protected: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> MonitoringAccess:
    """The access the command line asks for. ``token`` (--monitoring-token), ``token_file`` (--monitoring-token-file)
    and the SHARDLINE_MONITORING_TOKEN variable give the token (the variable only when neither option is given);
    ``mode`` "open" (--monitoring open) opens monitoring to everyone and excludes a token; "auto" is open unless
    ``api_protected`` (--auth sigv4), then closed until a token is given. Raises ValueError with the message to show."""
    if mode not in ("auto", "open"):
        raise ValueError(f"--monitoring must be auto or open, not {mode!r}")
    if token is not None and token_file is not None:
        raise ValueError("give --monitoring-token or --monitoring-token-file, not both")
    source = "--monitoring-token"
    if token_file is not None:
        source = f"--monitoring-token-file {token_file}"
        token = _read_token(token_file)
    elif token is None and environ.get(TOKEN_ENV) is not None:
        source, token = TOKEN_ENV, environ[TOKEN_ENV]
    if token is None:
        return CLOSED if api_protected and mode == "auto" else OPEN
    if mode == "open":
        raise ValueError(f"--monitoring open lets everyone read monitoring; it cannot be combined with {source}")
    token = token.strip()
    if not _TOKEN.fullmatch(token):
        raise ValueError(
            f"the monitoring token from {source} must be 1 to 4096 of the characters A-Z a-z 0-9 - . _ ~ + / "
            "(then any = padding), e.g. the output of `openssl rand -hex 32`"
        )
    return MonitoringAccess(token=token)


def _read_token(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read --monitoring-token-file {path}: {reason}") from None
    if mode & 0o077:
        log.warning("monitoring token file %s can be read by other users (chmod 600 it)", path)
    return text
