"""TLS for ``shardline serve --tls-cert/--tls-key``: the certificate files, checked before the server starts, and the
server context offering ALPN ``h2`` and ``http/1.1`` (clients that speak HTTP/2 choose it during the handshake)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ALPN_PROTOCOLS", "TlsFiles", "alpn_context"]

ALPN_PROTOCOLS = ["h2", "http/1.1"]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A PEM certificate chain and its PEM private key."""

    cert: Path
    key: Path

    def check(self) -> None:
        """Load both now, so a wrong path, a key that does not match or a password-protected key is reported as a
        startup error with its cause instead of failing each connection."""
        for path in (self.cert, self.key):
            if not path.is_file():
                raise ValueError(f"cannot read {path}: no such file")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key, password=_no_password)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"cannot use --tls-cert {self.cert} with --tls-key {self.key}: {exc}") from exc


def _no_password() -> str:
    raise ssl.SSLError("the private key is encrypted; give an unencrypted key file")


def alpn_context(_config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's server context (TLS 1.2 at least), with ALPN."""
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    return context
