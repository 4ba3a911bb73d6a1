"""The fixed handler: also accepts the legacy CSV lines an old producer still sends ("id;customer;12.50")."""

import base64
import json
import logging

from handlers.ledger import book

log = logging.getLogger()


def parse(record: dict) -> dict:
    raw = base64.b64decode(record["kinesis"]["data"])
    try:
        order = json.loads(raw)
    except ValueError:
        order_id, customer, amount = raw.decode().split(";")
        return {"order_id": int(order_id), "customer": customer, "amount_cents": round(float(amount) * 100)}
    return {"order_id": order["order_id"], "customer": order["customer"], "amount_cents": int(order["amount_cents"])}


def handler(event, context):
    orders = [parse(r) for r in event["Records"]]
    book(orders)
    log.info("booked %d orders (%s)", len(orders), context.aws_request_id)
