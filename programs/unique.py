"""Create-only keys: a put of a key that exists is refused; a delete frees the key.

Accepted puts and all deletes are emitted unchanged.

State: the set of existing keys (a dict, key -> True). Bounded to 4096 keys and 384 KiB of key bytes, so it stays
under the 1 MiB state limit whatever the keys; a put of a new key past that is refused ("full:").
Reject reasons: "exists:", "full:".
"""

KEYS_MAX = 4096
KEY_BYTES_TOTAL_MAX = 384 * 1024


def on_create(ctx):
    ctx.state["keys"] = {}  # key (latin-1, so any bytes) -> True
    ctx.state["key_bytes"] = 0


def on_put(ctx, key, value):
    keys = ctx.state["keys"]
    name = key.decode("latin-1")
    if name in keys:
        ctx.reject("exists: the key was created before (delete it first)")
    if len(keys) >= KEYS_MAX or ctx.state["key_bytes"] + len(key) > KEY_BYTES_TOTAL_MAX:
        ctx.reject(f"full: at most {KEYS_MAX} keys and {KEY_BYTES_TOTAL_MAX} key bytes; delete some first")
    keys[name] = True
    ctx.state["key_bytes"] += len(key)
    ctx.put(key, value)


def on_delete(ctx, key):
    if ctx.state["keys"].pop(key.decode("latin-1"), None) is not None:
        ctx.state["key_bytes"] -= len(key)
    ctx.delete(key)
