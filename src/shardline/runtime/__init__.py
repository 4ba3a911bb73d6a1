"""Lambda semantics: functions in worker processes, and event source mappings that feed them from shards."""
