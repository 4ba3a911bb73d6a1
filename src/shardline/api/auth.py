"""AWS Signature Version 4: the shape every request must have (checked under ``--auth none`` too, as AWS checks it
before anything else), and its verification for ``--auth sigv4``, in the Authorization header or the query string.

Credentials come from a file in the AWS CLI's credentials format (``[profile]`` sections with
``aws_access_key_id`` / ``aws_secret_access_key``); every profile's key is accepted.
"""

from __future__ import annotations

import configparser
import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote

from ..errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

__all__ = ["SigV4Verifier", "SignatureShape", "load_credentials", "signature_shape"]

_ALGORITHM = "AWS4-HMAC-SHA256"
_MAX_SKEW = dt.timedelta(minutes=15)
_SPACES = re.compile(r"\s+")
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access "
    "Key and signing method. Consult the service documentation for details."
)


def load_credentials(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text())
    except (OSError, configparser.Error) as exc:
        raise ValueError(f"{path}: cannot read credentials: {exc}") from None
    keys: dict[str, str] = {}
    for section in parser.sections():
        akid = parser.get(section, "aws_access_key_id", fallback=None)
        secret = parser.get(section, "aws_secret_access_key", fallback=None)
        if akid and secret:
            keys[akid.strip()] = secret.strip()
    if not keys:
        raise ValueError(f"{path}: no profile with aws_access_key_id and aws_secret_access_key")
    return keys


_QUERY_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date")
_MAX_EXPIRES_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class SignatureShape:
    """What a request says about its signature, once it has the parts AWS requires (``signature_shape``)."""

    algorithm: str
    credential: str
    signature: str
    signed_headers: str
    amz_date: str
    in_query: bool
    expires: str | None = None  # X-Amz-Expires of a presigned request


def signature_shape(headers: dict[str, str], query: str) -> SignatureShape:
    """The signature's parts, or the error AWS answers when one is missing (before it looks at the key or the
    signature itself): no Authorization header and no X-Amz-Algorithm parameter, both at once, a header without
    Credential, Signature or SignedHeaders or a request with no date, a presigned request without one of its five
    X-Amz-* parameters."""
    auth = headers.get("authorization")
    params = dict(parse_qsl(query, keep_blank_values=True)) if "X-Amz-" in query else {}
    in_query = "X-Amz-Algorithm" in params
    if auth is None and not in_query:
        raise MissingAuthenticationTokenException("Missing Authentication Token")
    if auth is not None and in_query:
        raise InvalidSignatureException(
            "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."
        )
    if auth is None:
        for name in _QUERY_PARAMS:
            if not params.get(name):
                raise IncompleteSignatureException(
                    f"AWS query-string parameters must include '{name}'. Re-examine the query-string parameters."
                )
        return SignatureShape(
            params["X-Amz-Algorithm"],
            params["X-Amz-Credential"],
            params["X-Amz-Signature"],
            params["X-Amz-SignedHeaders"],
            params["X-Amz-Date"],
            in_query=True,
            expires=params.get("X-Amz-Expires"),
        )
    algorithm, _, rest = auth.partition(" ")
    parts = dict(part.split("=", 1) for part in re.split(r"[,\s]+", rest.strip()) if "=" in part)
    missing = "".join(
        f"Authorization header requires '{k}' parameter. "
        for k in ("Credential", "Signature", "SignedHeaders")
        if not parts.get(k)
    )
    amz_date = headers.get("x-amz-date") or headers.get("date")
    if not amz_date:
        missing += "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
    if missing or amz_date is None:
        raise IncompleteSignatureException(f"{missing}Authorization={auth}")
    return SignatureShape(
        algorithm, parts["Credential"], parts["Signature"], parts["SignedHeaders"], amz_date, in_query=False
    )


@dataclass(frozen=True, slots=True)
class _Claim:
    """What a request's Authorization header claims, once its key is known and its scope and date are right."""

    akid: str
    secret: str
    amz_date: str
    date: str
    region: str
    service: str
    signed_headers: str
    signature: str
    in_query: bool


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _signed_value(headers: dict[str, str], name: str) -> str:
    """A signed header's value. The JavaScript SDK v3 signs HTTP/2 requests over the ``:authority`` pseudo-header
    (as AWS accepts); the server hands it to the app as ``host``."""
    if name == ":authority":
        return headers.get(name, headers.get("host", ""))
    return headers.get(name, "")


class SigV4Verifier:
    """Verifies requests signed for ``service`` in ``region`` with one of ``keys`` (access key id -> secret)."""

    def __init__(self, keys: dict[str, str], *, region: str = "us-east-1", service: str = "kinesis") -> None:
        self._keys = keys
        self.region = region
        self.service = service

    def check_headers(self, headers: dict[str, str], query: str, *, now: dt.datetime | None = None) -> _Claim:
        """Everything the headers alone decide (credentials present and well formed, a known key, its scope, the
        clock), so a request without valid credentials is refused before its body is read; raises AWS's error."""
        shape = signature_shape(headers, query)
        amz_date = shape.amz_date
        if shape.algorithm != _ALGORITHM:
            raise IncompleteSignatureException(f"Unsupported AWS 'algorithm': '{shape.algorithm}'")
        scope = shape.credential.split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise IncompleteSignatureException(
                f"Credential should be scoped to a valid region. Credential={shape.credential}"
            )
        akid, date, region, service, _ = scope
        secret = self._keys.get(akid)
        if secret is None:
            raise UnrecognizedClientException("The security token included in the request is invalid.")
        try:
            when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            raise IncompleteSignatureException(f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.") from None
        self._check_scope(date, region, service, amz_date)
        now = now or dt.datetime.now(dt.UTC)
        if shape.expires is not None:
            self._check_expiry(shape.expires, when, now, amz_date)
        if abs(now - when) > _MAX_SKEW and (shape.expires is None or when > now):
            raise InvalidSignatureException(
                f"Signature expired: {amz_date} is now earlier than "
                f"{(now - _MAX_SKEW).strftime('%Y%m%dT%H%M%SZ')} ({now.strftime('%Y%m%dT%H%M%SZ')} - 15 min.)"
                if when < now
                else f"Signature not yet current: {amz_date} is still later than "
                f"{(now + _MAX_SKEW).strftime('%Y%m%dT%H%M%SZ')} ({now.strftime('%Y%m%dT%H%M%SZ')} + 15 min.)"
            )
        return _Claim(
            akid, secret, amz_date, date, region, service, shape.signed_headers, shape.signature, shape.in_query
        )

    @staticmethod
    def _check_expiry(expires: str, when: dt.datetime, now: dt.datetime, amz_date: str) -> None:
        """A presigned request is good from its date for X-Amz-Expires seconds (at most seven days)."""
        if not expires.isascii() or not expires.isdigit() or not 1 <= int(expires) <= _MAX_EXPIRES_S:
            raise InvalidSignatureException(
                f"X-Amz-Expires must be a number of seconds from 1 to {_MAX_EXPIRES_S}. Got '{expires}'."
            )
        end = when + dt.timedelta(seconds=int(expires))
        if now > end:
            raise InvalidSignatureException(
                f"Signature expired: {amz_date} is now earlier than "
                f"{(now - (end - when)).strftime('%Y%m%dT%H%M%SZ')} ({now.strftime('%Y%m%dT%H%M%SZ')} - {expires} s.)"
            )

    def verify(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        *,
        now: dt.datetime | None = None,
        claim: _Claim | None = None,
    ) -> str:
        """Check the request's signature over its headers and the body received; returns the access key id, or
        raises the error AWS gives. ``claim``: what ``check_headers`` already returned for these headers."""
        if claim is None:
            claim = self.check_headers(headers, query, now=now)
        signed = claim.signed_headers.split(";")
        canonical_headers = "".join(f"{h}:{_SPACES.sub(' ', _signed_value(headers, h).strip())}\n" for h in signed)
        # The payload hash is always the hash of the body received. An X-Amz-Content-SHA256 header is not trusted:
        # when signed, its value is covered by the signature like any header, and it must then match the body too.
        payload_hash = hashlib.sha256(body).hexdigest()
        claimed = headers.get("x-amz-content-sha256")
        if claimed is not None and claimed != payload_hash:
            raise InvalidSignatureException(SIGNATURE_MISMATCH)
        # (A presigned request signs its query string without its own X-Amz-Signature.)
        canonical_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
            for k, v in sorted(parse_qsl(query, keep_blank_values=True))
            if not (claim.in_query and k == "X-Amz-Signature")
        )
        canonical = "\n".join(
            [
                method,
                quote(path or "/", safe="/-_.~"),
                canonical_query,
                canonical_headers,
                claim.signed_headers,
                payload_hash,
            ]
        )
        string_to_sign = "\n".join(
            [
                _ALGORITHM,
                claim.amz_date,
                f"{claim.date}/{claim.region}/{claim.service}/aws4_request",
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        key = _hmac(
            _hmac(_hmac(_hmac(f"AWS4{claim.secret}".encode(), claim.date), claim.region), claim.service), "aws4_request"
        )
        expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, claim.signature):
            raise InvalidSignatureException(SIGNATURE_MISMATCH)
        return claim.akid

    def _check_scope(self, date: str, region: str, service: str, amz_date: str) -> None:
        """A key derived for another region, service or day is refused even when its signature is right.

        AWS quirk: every failed part of the scope is named, in this order, each sentence ending in a space, all in
        one InvalidSignatureException."""
        problems = []
        if region != self.region:
            problems.append("Credential should be scoped to a valid region. ")
        if service != self.service:
            problems.append(f"Credential should be scoped to correct service: '{self.service}'. ")
        if date != amz_date[:8]:
            problems.append(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{date}' != '{amz_date[:8]}', from '{amz_date}'."
            )
        if problems:
            raise InvalidSignatureException("".join(problems))
