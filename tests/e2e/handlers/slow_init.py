"""A handler whose import (the execution environment's init) blocks once it has created INIT_REACHED_FILE."""

import os
import time

open(os.environ["INIT_REACHED_FILE"], "w").close()
time.sleep(600)


def handler(event, context):
    return None
