"""A module whose import fails, as a handler shipped without its dependency does."""

import shardline_e2e_no_such_dependency  # noqa: F401


def handler(event, context):
    return None
