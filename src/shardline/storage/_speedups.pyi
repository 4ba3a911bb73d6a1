from collections.abc import Callable
from typing import Any

HEADER_SIZE: int
REC_SIZE: int

def configure(record: type, stored_record: type, fallback: Callable[..., tuple[int, int, bool]]) -> None: ...
def decode_into(
    out: list[Any],
    buf: bytes,
    pos: int,
    header: tuple[int, int, int, int, int],
    start: int,
    stop: int,
    max_records: int,
    max_bytes: int,
    id_base: int | None,
    encryption: str | None,
) -> tuple[int, int, bool]: ...
