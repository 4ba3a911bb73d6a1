"""One module per action family. Each action parses nothing itself: it receives validated parameters, calls the
engine and shapes the response."""

from . import account, channels, consumers, queues, records, shards, streams, subscribe  # noqa: F401  (registers)
from ._registry import ACTIONS, STREAMING_ACTIONS, Params, Response, StreamingBody

__all__ = ["ACTIONS", "STREAMING_ACTIONS", "Params", "Response", "StreamingBody"]
