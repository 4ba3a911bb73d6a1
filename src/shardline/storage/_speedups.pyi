from collections.abc import Callable

# The compiled decoder takes and returns exactly what the Python reference does.
from .framing import _py_decode_into as decode_into

HEADER_SIZE: int
REC_SIZE: int

def configure(record: type, stored_record: type, fallback: Callable[..., tuple[int, int, bool]]) -> None: ...

__all__ = ["HEADER_SIZE", "REC_SIZE", "configure", "decode_into"]
