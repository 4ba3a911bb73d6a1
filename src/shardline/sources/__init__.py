"""Change data capture: a MySQL/MariaDB database's row changes into a stream, in order per row.

config.py parses the ``sources:`` section; server.py connects and checks the server's binary-log settings;
snapshot.py reads the existing rows; binlog.py reads the binary log; envelope.py builds the Debezium and DMS
records and the partition keys; checkpoint.py keeps the durable position; sink.py puts records through the one
seam (the embedded engine, or any Kinesis endpoint through boto3); mysql.py runs a source from end to end.
The MySQL client libraries are imported only when a source runs.
"""
