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


def field_spans(message: bytes | memoryview) -> list[tuple[int, int, int]]:
    """(field number, start, end) of each top-level field of a serialized message, in order: the
    bytes message[start:end] are that field whole (key, length and payload). Raises ValueError on
    input that is not a well-formed message (wire types 0, 1, 2 and 5 only)."""
    spans = []
    pos, end = 0, len(message)
    while pos < end:
        start = pos
        key, pos = _read_varint(message, pos)
        wire_type = key & 7
        if wire_type == 0:
            _, pos = _read_varint(message, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 2:
            size, pos = _read_varint(message, pos)
            pos += size
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError(f"wire type {wire_type} at byte {start}")
        if pos > end:
            raise ValueError(f"field at byte {start} runs past the end")
        spans.append((key >> 3, start, pos))
    return spans


def only_field_payloads(message: bytes, number: int) -> list[memoryview] | None:
    """The payloads (views, not copies) of the top-level fields of a serialized message when every one of them is
    field `number`, length-delimited; None if it holds anything else or is not well formed. Concatenated, they are
    that field's message as a parser merges it (protobuf concatenation is merging)."""
    view = memoryview(message)
    payloads = []
    pos, end = 0, len(message)
    try:
        while pos < end:
            key, pos = _read_varint(message, pos)
            if key != (number << 3) | 2:
                return None
            size, pos = _read_varint(message, pos)
            if pos + size > end:
                return None
            payloads.append(view[pos : pos + size])
            pos += size
    except ValueError:
        return None
    return payloads


def _read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
