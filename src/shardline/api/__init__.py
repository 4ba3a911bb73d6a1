"""The Kinesis wire: AWS JSON 1.1 and CBOR over HTTP, served by one ASGI app."""

from .app import KinesisApp

__all__ = ["KinesisApp"]
