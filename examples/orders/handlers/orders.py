"""Books a batch of orders. Every record must be a JSON order; anything else fails the whole batch."""

import base64
import json
import logging

from handlers.ledger import book

log = logging.getLogger()


def parse(record: dict) -> dict:
    order = json.loads(base64.b64decode(record["kinesis"]["data"]))
    return {"order_id": order["order_id"], "customer": order["customer"], "amount_cents": int(order["amount_cents"])}


def handler(event, context):
    orders = [parse(r) for r in event["Records"]]
    book(orders)
    log.info("booked %d orders (%s)", len(orders), context.aws_request_id)
