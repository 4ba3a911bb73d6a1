"""The fixed function: poison items are now understood and recorded like any other."""

from handlers.pipeline import decode, record


def handler(event, context):
    record(decode(event))
