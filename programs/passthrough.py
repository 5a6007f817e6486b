"""Emits every mutation unchanged: the baseline for measuring what running a program costs."""


def on_put(ctx, key, value):
    ctx.put(key, value)


def on_delete(ctx, key):
    ctx.delete(key)
