"""Account balances with a compare-and-swap check against a bounded cache.

Create the topic with args `{"cache_size": N}` (1 <= N <= 4096). A put's key is the source account (UTF-8, 1 to
64 bytes); its value is JSON:

    {"to": "bob", "amount": 5, "from_balance": 12, "to_balance": 0, "seen": 1041}

`seen` is the highest intention offset the client has observed on this topic, and the balances are what it
observed there plus the effect of its own transfers sent since (a brand-new account has balance 0). The account
"mint" issues money: it has no balance, so its `from_balance` is ignored and may be left out. On success the
program emits PUT(from, new balance) (not for mint) and PUT(to, new balance), balances in ASCII decimal.

Why a client's view can be trusted. The state keeps, for at most cache_size accounts, (balance, offset of its
last change, client that made it), ordered by that offset, and `horizon`: the last-change offset of the most
recently evicted entry (0 before any eviction). When a transfer from client C touches account A:
  - A cached, changed after `seen` by another client: C has not seen A's latest balance -> "stale:".
  - A cached, changed at or before `seen`, or after it by C itself: C's view is current (see below); the cached
    balance is the truth, and a different claim is refused -> "mismatch:".
  - A not cached: either A never changed (balance 0 everywhere), or it was evicted and not changed since; its
    last change L is then at most the horizon, because entries leave the cache in order of last change and the
    horizon only grows. So if seen >= horizon, C has seen A's last change and its claim is current;
    if seen < horizon the program cannot tell -> "unproven:" (retry with a fresher view).
Why a change after `seen` by C itself is no reason to refuse: a client's view is what it observed at `seen` plus
the transfers it has sent since, so it may pipeline transfers on its own accounts without waiting to observe each
commit. Such a change hides nobody else's: if A's last change, at L > seen, was C's, every change of A after
`seen` was C's. By induction on the changes: C's transfer at L was checked against C's `seen` then, s <= seen (a
client's seen only grows), and A's previous change L'. If L' <= seen, done. Otherwise L' > s, so A was cached
then (uncached, L' <= horizon <= s, as above), and the transfer was accepted only because L' was C's change too:
repeat with L'. And the balance check backs the argument whatever the client does: a cached balance is the
truth, so a claim that differs (one of C's earlier transfers was refused, a client lies or resets its `seen`) is
refused, and conservation never depends on trusting C.
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
FIELDS = '"to" (an account), "amount", "from_balance" (but from mint), "to_balance" and "seen"'


def on_create(ctx):
    try:
        args = ctx.args_json()
    except ValueError:
        args = None
    size = args.get("cache_size") if isinstance(args, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= CACHE_SIZE_MAX:
        ctx.reject(f'malformed: args must be JSON {{"cache_size": N}} with 1 <= N <= {CACHE_SIZE_MAX}')
    ctx.state["cache_size"] = size
    ctx.state["horizon"] = 0
    ctx.state["cache"] = {}  # account -> (balance, offset of last change, client id), oldest change first


def on_put(ctx, key, value):
    offset, client = ctx.offset, ctx.client_id
    source, target, amount, from_balance, to_balance, seen = parse(ctx, key, value, offset)
    state = ctx.state
    if source != MINT:
        check_view(ctx, state, source, from_balance, seen, client)
    check_view(ctx, state, target, to_balance, seen, client)
    # Record each changed account, removed first so that it moves to the end: the cache stays ordered by last
    # change, and the first entry is the one to evict.
    cache = state["cache"]
    if source != MINT:
        if from_balance < amount:
            ctx.reject(f"insufficient: {source} has {from_balance}, the transfer needs {amount}")
        from_balance = from_balance - amount
        cache.pop(source, None)
        cache[source] = (from_balance, offset, client)
        ctx.put(key, str(from_balance))
    to_balance = to_balance + amount
    cache.pop(target, None)
    cache[target] = (to_balance, offset, client)
    ctx.put(target, str(to_balance))
    while len(cache) > state["cache_size"]:
        state["horizon"] = cache.pop(first(cache))[1]  # offsets only grow, so the horizon does too


def on_delete(ctx, key):
    ctx.reject("unsupported: accounts cannot be deleted (their balances would vanish from the total)")


def parse(ctx, key, value, offset):
    """The transfer's fields (source, target, amount, from_balance, to_balance, seen), or a rejection."""
    try:
        source = key.decode("utf-8")
        transfer = json.loads(value)
        target = transfer["to"]
        target_bytes = len(target.encode("utf-8"))
        from_balance = 0 if source == MINT else transfer["from_balance"]
        numbers = (transfer["amount"], from_balance, transfer["to_balance"], transfer["seen"])
    except (ValueError, LookupError, TypeError, AttributeError):  # not UTF-8, not JSON, a field missing, ...
        ctx.reject(f"malformed: the key must be UTF-8 and the value a JSON object with {FIELDS}")
    source_bytes = len(key)
    if not (1 <= source_bytes <= ACCOUNT_BYTES_MAX and 1 <= target_bytes <= ACCOUNT_BYTES_MAX):
        ctx.reject(f"malformed: accounts are names of 1 to {ACCOUNT_BYTES_MAX} UTF-8 bytes")
    for number in numbers:
        if not isinstance(number, int) or number is True or number is False or number < 0:  # bools are ints
            ctx.reject('malformed: "amount", "from_balance", "to_balance" and "seen" must be non-negative integers')
    amount, from_balance, to_balance, seen = numbers
    if seen >= offset:
        ctx.reject(f"malformed: seen {seen} is not before this transfer (offset {offset})")
    if not 0 < amount <= AMOUNT_MAX:
        ctx.reject(f"invalid: the amount must be between 1 and {AMOUNT_MAX}")
    if target == source:
        ctx.reject("invalid: a transfer to the same account")
    if target == MINT:
        ctx.reject("invalid: money cannot be sent back to mint")
    return source, target, amount, from_balance, to_balance, seen


def check_view(ctx, state, account, claimed, seen, client):
    """Reject the transfer unless `claimed` is provably `account`'s current balance (see the module docstring)."""
    cache = state["cache"]
    entry = cache.get(account)
    if entry is None:
        if seen < state["horizon"]:
            horizon = state["horizon"]
            ctx.reject(f"unproven: {account} left the cache; seen {seen} is before the horizon {horizon}")
        return
    balance, changed, changer = entry
    if changed > seen and changer != client:
        ctx.reject(f"stale: {account} changed at offset {changed} by another client, after seen {seen}")
    if balance != claimed:
        ctx.reject(f"mismatch: {account} has had balance {balance} since offset {changed}, not {claimed}")


def first(cache):
    for account in cache:
        return account
    return None
