"""Orders paid through a service, in two transactions (docs/pipelines.md; examples/pipeline.py runs it).

A put of an order (JSON {"id": str, "amount": int cents}) records it as pending, emits order/<id>, and calls
payments.charge with the order; the call's result, in a second transaction, emits paid/<id> (the service's
receipt) or failed/<id> (why), and totals (JSON: orders, paid, failed, paid_cents) so a reader can check the
money without replaying the stream. Creation arguments (optional JSON): {"service": name}, default "payments".

State: the pending orders (id -> amount) and the totals. Pending orders are bounded by the calls a topic may have
in flight (CALLS_IN_FLIGHT_PER_TOPIC_MAX): an order past it is refused at ctx.call, and the client sends it again
later. Reject reasons: "duplicate:" (an order with that id is pending), "bad order:".
"""

import json


def on_create(ctx):
    args = ctx.args_json() or {}
    ctx.state["service"] = args.get("service", "payments")
    ctx.state["pending"] = {}
    ctx.state["totals"] = {"orders": 0, "paid": 0, "failed": 0, "paid_cents": 0}


def on_put(ctx, key, value):
    order = json.loads(value)
    order_id = order.get("id")
    amount = order.get("amount")
    if not isinstance(order_id, str) or not isinstance(amount, int) or amount <= 0:
        ctx.reject("bad order: needs a str id and an int amount > 0")
    if order_id in ctx.state["pending"]:
        ctx.reject("duplicate: order " + order_id + " is pending")
    request = json.dumps({"order": order_id, "amount": amount})
    ctx.call(ctx.state["service"], "charge", request, context={"order": order_id})  # refused past the in-flight bound
    ctx.state["pending"][order_id] = amount
    ctx.state["totals"]["orders"] += 1
    ctx.put("order/" + order_id, value)


def on_result(ctx, call, response, failure):
    order_id = call.context["order"]
    amount = ctx.state["pending"].pop(order_id)
    totals = ctx.state["totals"]
    if failure is None:
        totals["paid"] += 1
        totals["paid_cents"] += amount
        ctx.put("paid/" + order_id, response)
    else:
        totals["failed"] += 1
        ctx.put("failed/" + order_id, failure)
    ctx.put("totals", json.dumps(totals))
