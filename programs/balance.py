"""Account balances with a compare-and-swap check against a bounded cache.

Create the topic with args `{"cache_size": N}` (1 <= N <= 4096). A put's key is the source account (UTF-8, 1 to
64 bytes); its value is JSON:

    {"to": "bob", "amount": 5, "from_balance": 12, "to_balance": 0, "seen": 1041}

`seen` is the highest intention offset the client has observed on this topic, and the balances are what it
observed there (a brand-new account has balance 0). The account "mint" issues money: it has no balance, so its
`from_balance` is ignored and may be left out. On success the program emits PUT(from, new balance) (not for
mint) and PUT(to, new balance), balances in ASCII decimal.

Why a client's view can be trusted. The state keeps, for at most cache_size accounts, (balance, offset of its
last change), ordered by that offset, and `horizon`: the last-change offset of the most recently evicted entry
(0 before any eviction). When a transfer touches account A:
  - A cached, changed after `seen`: the client has not seen A's latest balance -> "stale:".
  - A cached, changed at or before `seen`: the client's view is current; the cached balance is the truth, and a
    different claim is refused -> "mismatch:".
  - A not cached: either A never changed (balance 0 everywhere), or it was evicted and not changed since; its
    last change L is then at most the horizon, because entries leave the cache in order of last change and the
    horizon only grows. So if seen >= horizon, the client has seen A's last change and its claim is current;
    if seen < horizon the program cannot tell -> "unproven:" (retry with a fresher view).
The check catches stale views (races), not lies: a client that misreports a balance it observed is trusted when
the account is not cached. The state stays bounded by cache_size however many accounts exist.

Reject reasons start with a stable word a client can branch on: "malformed:", "invalid:", "stale:",
"mismatch:", "unproven:", "insufficient:", "unsupported:".
"""

import json

MINT = "mint"
ACCOUNT_BYTES_MAX = 64
CACHE_SIZE_MAX = 4096
AMOUNT_MAX = 10**18


def on_create(ctx):
    try:
        args = ctx.args_json()
    except ValueError:
        args = None
    size = args.get("cache_size") if isinstance(args, dict) else None
    if not is_int(size) or not 1 <= size <= CACHE_SIZE_MAX:
        ctx.reject(f'malformed: args must be JSON {{"cache_size": N}} with 1 <= N <= {CACHE_SIZE_MAX}')
    ctx.state["cache_size"] = size
    ctx.state["horizon"] = 0
    ctx.state["cache"] = {}  # account -> (balance, offset of last change), oldest change first


def on_put(ctx, key, value):
    problem, transfer = parse(key, value, ctx.offset)
    if problem:
        ctx.reject(problem)
    state = ctx.state
    source, target, amount = transfer["from"], transfer["to"], transfer["amount"]
    for account, claimed in ((source, transfer["from_balance"]), (target, transfer["to_balance"])):
        if account != MINT:
            problem = check_fresh(state, account, claimed, transfer["seen"])
            if problem:
                ctx.reject(problem)
    if source != MINT and transfer["from_balance"] < amount:
        ctx.reject(f"insufficient: {source} has {transfer['from_balance']}, the transfer needs {amount}")
    if source != MINT:
        record(state, source, transfer["from_balance"] - amount, ctx.offset)
        ctx.put(source, str(transfer["from_balance"] - amount))
    record(state, target, transfer["to_balance"] + amount, ctx.offset)
    ctx.put(target, str(transfer["to_balance"] + amount))
    evict(state)


def on_delete(ctx, key):
    ctx.reject("unsupported: accounts cannot be deleted (their balances would vanish from the total)")


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def account_problem(name, what):
    size = len(name.encode("utf-8")) if isinstance(name, str) else 0
    if not 1 <= size <= ACCOUNT_BYTES_MAX:
        return f"malformed: {what} must be an account name of 1 to {ACCOUNT_BYTES_MAX} UTF-8 bytes"
    return None


def parse(key, value, offset):
    """(reason, None) for a transfer that must be refused, else (None, transfer)."""
    try:
        source = key.decode("utf-8")
        transfer = json.loads(value)
    except ValueError:
        return "malformed: the key must be UTF-8 and the value JSON", None
    if not isinstance(transfer, dict):
        return "malformed: the value must be a JSON object", None
    transfer["from"] = source
    if source == MINT:
        transfer["from_balance"] = 0
    problem = account_problem(source, "the key") or account_problem(transfer.get("to"), '"to"')
    if problem:
        return problem, None
    for field in ("amount", "from_balance", "to_balance", "seen"):
        if not is_int(transfer.get(field)) or transfer[field] < 0:
            return f'malformed: "{field}" must be a non-negative integer', None
    return transfer_problem(transfer, offset), transfer


def transfer_problem(transfer, offset):
    if transfer["seen"] >= offset:
        return f"malformed: seen {transfer['seen']} is not before this transfer (offset {offset})"
    if not 0 < transfer["amount"] <= AMOUNT_MAX:
        return f"invalid: the amount must be between 1 and {AMOUNT_MAX}"
    if transfer["to"] == transfer["from"]:
        return "invalid: a transfer to the same account"
    if transfer["to"] == MINT:
        return "invalid: money cannot be sent back to mint"
    return None


def check_fresh(state, account, claimed, seen):
    entry = state["cache"].get(account)
    if entry is not None:
        balance, changed = entry
        if changed > seen:
            return f"stale: {account} changed at offset {changed}, after seen {seen}"
        if balance != claimed:
            return f"mismatch: {account} has had balance {balance} since offset {changed}, not {claimed}"
        return None
    if seen < state["horizon"]:
        return f"unproven: {account} left the cache; seen {seen} is before the horizon {state['horizon']}"
    return None


def record(state, account, balance, offset):
    cache = state["cache"]
    cache.pop(account, None)  # re-inserting moves it to the end: the cache stays ordered by last change
    cache[account] = (balance, offset)


def evict(state):
    cache = state["cache"]
    while len(cache) > state["cache_size"]:
        state["horizon"] = cache.pop(first(cache))[1]  # offsets only grow, so the horizon does too


def first(cache):
    for account in cache:
        return account
    return None
