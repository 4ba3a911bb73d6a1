"""Engine behaviour: streams, shards, records, resharding, retention, recovery, crashes."""
