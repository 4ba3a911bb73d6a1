"""The ``sources:`` section of ``shardline.yml``.

```yaml
sources:
  shop:
    type: mysql                       # MySQL or MariaDB (detected from the server)
    dsn: mysql://cdc@127.0.0.1:3306/shop
    passwordEnv: SHOP_DB_PASSWORD     # default: <SOURCE NAME>_DB_PASSWORD; or passwordFile: secrets/shop.txt
    tables: [shop.orders, shop.customers]   # or include: ["shop.*"] and exclude: ["shop.tmp_*"]
    stream: shop-changes
    format: debezium                  # or dms
    snapshot: initial                 # initial | never
    keyless: refuse                   # refuse | table (a table without a primary key goes to one shard)
    serverId: 1004243                 # the replica id this source uses (default: derived from the source's name)
    chunkSize: 1000                   # rows per snapshot query
```
The password never appears in the file (a DSN with one is refused) and is never logged.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .._config import ConfigError, ConfigFile

__all__ = ["ConfigError", "SourceConfig", "TableFilter", "parse_sources"]

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_KEYS = {
    "type", "dsn", "passwordEnv", "passwordFile", "tables", "include", "exclude", "stream", "format", "snapshot",
    "keyless", "serverId", "chunkSize",
}  # fmt: skip


@dataclass(frozen=True)
class TableFilter:
    """Which ``db.table`` names a source captures: the listed tables, or include patterns minus exclude patterns."""

    tables: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __call__(self, db: str, table: str) -> bool:
        name = f"{db}.{table}"
        if self.tables:
            chosen = name in self.tables
        else:
            chosen = any(fnmatch.fnmatchcase(name, p) for p in self.include or ("*.*",))
        return chosen and not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)


@dataclass(frozen=True)
class SourceConfig:
    name: str
    host: str
    port: int
    user: str
    database: str | None
    stream: str
    tables: TableFilter
    format: str = "debezium"
    snapshot: str = "initial"
    keyless: str = "refuse"
    server_id: int = 4243
    chunk_size: int = 1000
    password_env: str | None = None
    password_file: Path | None = None

    def password(self) -> str:
        """The password from the environment variable or the credentials file (read when asked, never stored in
        the config's repr)."""
        if self.password_file is not None:
            return self.password_file.read_text().rstrip("\r\n")
        if self.password_env is not None:
            return os.environ.get(self.password_env, "")
        return ""

    @property
    def where(self) -> str:
        """How logs name the server: never with credentials."""
        return f"{self.user}@{self.host}:{self.port}"


def parse_sources(raw: Any, path: Path) -> dict[str, SourceConfig]:
    """Parse the raw ``sources:`` mapping of ``path`` (None: no sources)."""
    ctx = ConfigFile(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ctx.fail("sources", "must be a mapping of source name to settings")
    return {str(name): _source(ctx, str(name), spec) for name, spec in raw.items()}


def _strings(ctx: ConfigFile, where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ctx.fail(where, "must be a list of 'db.table' names or patterns")
    return tuple(value)


def _source(ctx: ConfigFile, name: str, spec: Any) -> SourceConfig:
    where = f"sources.{name}"
    ctx.entry(
        where,
        name,
        spec,
        pattern=_NAME,
        naming="a source name is 1-64 characters of letters, digits, '_' and '-'",
        shape="must be a mapping with at least 'dsn' and 'stream'",
        keys=_KEYS,
    )
    if spec.get("type", "mysql") not in ("mysql", "mariadb"):
        raise ctx.fail(f"{where}.type", f"{spec['type']!r} is not supported (allowed: mysql, mariadb)")
    dsn = spec.get("dsn")
    if not isinstance(dsn, str):
        raise ctx.fail(f"{where}.dsn", "the server to read, such as mysql://cdc@127.0.0.1:3306/shop")
    parts = urlsplit(dsn)
    if parts.scheme not in ("mysql", "mariadb") or not parts.hostname:
        raise ctx.fail(f"{where}.dsn", "must look like mysql://USER@HOST:PORT/DATABASE")
    if parts.password is not None:
        raise ctx.fail(f"{where}.dsn", f"holds a password: put it in ${_env_name(name)} or a passwordFile instead")
    try:
        port = parts.port or 3306
    except ValueError:
        raise ctx.fail(f"{where}.dsn", "the port is not a number from 1 to 65535") from None
    stream = spec.get("stream")
    if not isinstance(stream, str) or not re.match(r"^[a-zA-Z0-9_.-]{1,128}$", stream):
        raise ctx.fail(f"{where}.stream", "the stream the changes go to (1-128 letters, digits, '_', '.', '-')")
    choices = {"format": ("debezium", "dms"), "snapshot": ("initial", "never"), "keyless": ("refuse", "table")}
    picked: dict[str, str] = {}
    for key, allowed in choices.items():
        value = spec.get(key, allowed[0])
        if value not in allowed:
            raise ctx.fail(f"{where}.{key}", f"{value!r} is not allowed (allowed: {', '.join(allowed)})")
        picked[key] = value
    tables = TableFilter(
        _strings(ctx, f"{where}.tables", spec["tables"]) if "tables" in spec else (),
        _strings(ctx, f"{where}.include", spec["include"]) if "include" in spec else (),
        _strings(ctx, f"{where}.exclude", spec["exclude"]) if "exclude" in spec else (),
    )
    if tables.tables and tables.include:
        raise ctx.fail(f"{where}.tables", "give either 'tables' or 'include' patterns, not both")
    database = unquote(parts.path.lstrip("/")) or None
    if not tables.tables and not tables.include:
        if database is None:
            raise ctx.fail(f"{where}.tables", "name the tables (or include patterns), or a database in the dsn")
        tables = TableFilter((), (f"{database}.*",), tables.exclude)
    password_file: Path | None = None
    if "passwordFile" in spec:
        password_file = (ctx.path.parent / str(spec["passwordFile"])).resolve()
        try:
            mode = password_file.stat().st_mode
        except OSError as exc:
            raise ctx.fail(f"{where}.passwordFile", f"cannot read {password_file}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ctx.fail(f"{where}.passwordFile", f"{password_file} is readable by others (chmod 600 it)")
    password_env = spec.get("passwordEnv", _env_name(name))
    if not isinstance(password_env, str) or not password_env:
        raise ctx.fail(f"{where}.passwordEnv", "the name of the environment variable holding the password")
    return SourceConfig(
        name=name,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username or "root"),
        database=database,
        stream=stream,
        tables=tables,
        format=picked["format"],
        snapshot=picked["snapshot"],
        keyless=picked["keyless"],
        # Two readers with one id make the server drop the older connection: each source gets its own by default.
        server_id=ctx.integer(f"{where}.serverId", spec.get("serverId", default_server_id(name)), 1, 2**32 - 1),
        chunk_size=ctx.integer(f"{where}.chunkSize", spec.get("chunkSize", 1000), 1, 100_000),
        password_env=password_env,
        password_file=password_file,
    )


def default_server_id(name: str) -> int:
    return 1_000_000 + zlib.crc32(name.encode()) % 1_000_000


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", name.upper()) + "_DB_PASSWORD"
