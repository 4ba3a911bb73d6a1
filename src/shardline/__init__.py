"""shardline: self-hosted streams with Kinesis semantics and Lambda-style stream functions."""

from . import errors, models
from .clock import Clock, ManualClock, SystemClock
from .engine import Engine
from .models import *  # noqa: F403  (exactly models.__all__, added to this package's below)
from .settings import Settings

__version__ = "0.1.0"

# Every value the engine takes or returns, and what builds and clocks it.
__all__ = ["Clock", "Engine", "ManualClock", "Settings", "SystemClock", "__version__", "errors"]
__all__ += models.__all__
