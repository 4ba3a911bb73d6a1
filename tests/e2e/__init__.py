"""End to end: real worker processes, real `shardline` processes, boto3 over loopback."""
