"""A mutex per key.

put(key, anything) acquires: it succeeds if the lock is free or already held by the same client (ctx.client_id),
and emits PUT(key, client_id). delete(key) releases: only the holder may, and it emits DELETE(key).

State: key -> holder. Bounded to 4096 held locks and 256 KiB of key bytes (under the 1 MiB state limit whatever
the keys); acquiring a new lock past that is refused ("full:").
Reject reasons: "held:" (someone else holds it), "not-held:" (releasing a free lock), "not-holder:", "full:".
"""

LOCKS_MAX = 4096
KEY_BYTES_TOTAL_MAX = 256 * 1024


def on_create(ctx):
    ctx.state["holders"] = {}  # key (latin-1, so any bytes) -> client id
    ctx.state["key_bytes"] = 0


def on_put(ctx, key, value):
    holders = ctx.state["holders"]
    name = key.decode("latin-1")
    holder = holders.get(name)
    if holder is None:
        if len(holders) >= LOCKS_MAX or ctx.state["key_bytes"] + len(key) > KEY_BYTES_TOTAL_MAX:
            ctx.reject(f"full: at most {LOCKS_MAX} locks and {KEY_BYTES_TOTAL_MAX} key bytes may be held")
        holders[name] = ctx.client_id
        ctx.state["key_bytes"] += len(key)
    elif holder != ctx.client_id:
        ctx.reject(f"held: the lock is held by {holder}")
    ctx.put(key, ctx.client_id)


def on_delete(ctx, key):
    holders = ctx.state["holders"]
    name = key.decode("latin-1")
    holder = holders.get(name)
    if holder is None:
        ctx.reject("not-held: the lock is free")
    if holder != ctx.client_id:
        ctx.reject(f"not-holder: the lock is held by {holder}")
    del holders[name]
    ctx.state["key_bytes"] -= len(key)
    ctx.delete(key)
