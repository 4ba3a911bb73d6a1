"""One module per action family. Each action parses nothing itself: it receives validated parameters, calls the
engine and shapes the response."""

from . import (  # noqa: F401  (registers the actions)
    account,
    channels,
    consumers,
    queues,
    records,
    shards,
    stream_settings,
    streams,
    subscribe,
)
from ._registry import ACTIONS, STREAMING_ACTIONS, Params, Response, StreamingBody

__all__ = ["ACTIONS", "STREAMING_ACTIONS", "Params", "Response", "StreamingBody"]
