"""The HTTP front end in-process: the ASGI app over an engine, requests as plain ASGI calls."""
