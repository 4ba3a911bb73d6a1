"""Where booked orders go: one JSON line per order in the file named by ORDERS_LEDGER."""

import json
import os


def book(orders: list[dict]) -> None:
    path = os.environ.get("ORDERS_LEDGER", "ledger.jsonl")
    with open(path, "a", encoding="utf-8") as f:
        for order in orders:
            f.write(json.dumps(order) + "\n")
