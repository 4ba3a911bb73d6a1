"""`shardline serve` as a process: stopping, crashes, limits at the edge, full disks."""
