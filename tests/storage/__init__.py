"""Unit and property tests of the storage layer: frames, segments, shard logs, recovery, retention, catalog."""
