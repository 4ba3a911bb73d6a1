"""Bytes and integer offsets only: segment logs, batch framing, sparse indexes, recovery and catalog files."""
