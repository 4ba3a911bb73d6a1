"""The Kinesis API through unmodified clients (boto3, the AWS CLI) against a running server."""
