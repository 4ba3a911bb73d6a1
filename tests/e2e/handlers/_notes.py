"""What the Powertools handlers saw, appended as JSON lines to the file named by E2E_NOTES (test instrumentation)."""

import json
import os


def note(**fields):
    line = json.dumps(fields) + "\n"
    fd = os.open(os.environ["E2E_NOTES"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def fails_now(item):
    """A record fails if it says so; with ``fail_once`` only on its first delivery."""
    if item.get("fail"):
        return True
    if not item.get("fail_once"):
        return False
    marker = os.path.join(os.environ["E2E_MARKERS"], f"failed-{item['id']}")
    if os.path.exists(marker):
        return False
    open(marker, "w").close()
    return True
