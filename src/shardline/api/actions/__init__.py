"""One module per action family. Each action parses nothing itself: it receives validated parameters, calls the
engine and shapes the response."""

from . import account, channels, consumers, queues, records, shards, streams  # noqa: F401  (registers the actions)
from ._registry import ACTIONS, Params, Response

__all__ = ["ACTIONS", "Params", "Response"]
