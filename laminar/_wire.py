"""Hand-built protobuf framing for hot paths that splice already-serialized messages together."""

from __future__ import annotations


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(tag: bytes, payload: bytes) -> bytes:
    """One length-delimited field (`tag` is the field's key byte) holding `payload`."""
    return tag + varint(len(payload)) + payload
