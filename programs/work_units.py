"""A ticket counter per key: a put is accepted only if its value is the next integer for that key.

The first value of a key is b"1", then b"2", and so on (ASCII decimal, no sign, no leading zeros); the accepted
put is emitted unchanged. A delete resets the key's counter (the next put must be b"1" again) and is emitted.

State: key -> last accepted number. Bounded to 4096 counters and 384 KiB of key bytes, so it stays under the
1 MiB state limit whatever the keys; a put that would start a new counter past that is refused ("full:").
Reject reasons: "out-of-order:", "full:".
"""

COUNTERS_MAX = 4096
KEY_BYTES_TOTAL_MAX = 384 * 1024


def on_create(ctx):
    ctx.state["counters"] = {}  # key (latin-1, so any bytes) -> last accepted number
    ctx.state["key_bytes"] = 0


def on_put(ctx, key, value):
    counters = ctx.state["counters"]
    name = key.decode("latin-1")
    last = counters.get(name, 0)
    expected = str(last + 1).encode()
    if value != expected:
        ctx.reject(f"out-of-order: the next value for this key is {expected.decode()}, not {value[:24]!r}")
    if last == 0:
        reserve(ctx, len(key))
    counters[name] = last + 1
    ctx.put(key, value)


def on_delete(ctx, key):
    if ctx.state["counters"].pop(key.decode("latin-1"), None) is not None:
        ctx.state["key_bytes"] -= len(key)
    ctx.delete(key)


def reserve(ctx, size):
    state = ctx.state
    if len(state["counters"]) >= COUNTERS_MAX or state["key_bytes"] + size > KEY_BYTES_TOTAL_MAX:
        ctx.reject(f"full: at most {COUNTERS_MAX} counters and {KEY_BYTES_TOTAL_MAX} key bytes; delete some first")
    state["key_bytes"] += size
