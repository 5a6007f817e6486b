"""The rules a mutation must follow before it may reach the log. Shared by client and node.

The client checks them before sending (so a user gets a clear error at once); the node checks them
again before proposing (a client in another language may not).
"""

from __future__ import annotations

import functools
import re

from laminar import limits
from laminar.v1 import laminar_pb2 as pb

_TOPIC_NAME = re.compile(limits.TOPIC_NAME_PATTERN)
TOPIC_NAMES_CACHED_MAX = 1024  # verdicts on topic names kept: a client writes to few topics, many times


def topic_problem(topic: str) -> str | None:
    if not isinstance(topic, str):
        return f"a topic name is a str, not {type(topic).__name__}"
    return _topic_name_problem(topic)


@functools.lru_cache(maxsize=TOPIC_NAMES_CACHED_MAX)
def _topic_name_problem(topic: str) -> str | None:
    if not _TOPIC_NAME.fullmatch(topic):
        return f"topic name {topic[:64]!r} must match {limits.TOPIC_NAME_PATTERN}"
    return None


def mutation_problem(m: pb.Mutation) -> str | None:
    """Why `m` may not be proposed, or None. Nonces are checked by the session, not here."""
    problem = topic_problem(m.topic)
    if problem:
        return problem
    if m.kind not in (pb.CREATE_TOPIC, pb.DESTROY_TOPIC, pb.PUT, pb.DELETE):
        return f"unknown mutation kind {m.kind}"
    return write_problem(m.key, m.value) or _program_problem(m)


def write_problem(key: bytes, value: bytes) -> str | None:
    """Why a key and value may not be written, or None (the topic is checked separately)."""
    if len(key) > limits.KEY_BYTES_MAX:
        return f"key is {len(key)} bytes; the limit is {limits.KEY_BYTES_MAX}"
    if len(value) > limits.VALUE_BYTES_MAX:
        return f"value is {len(value)} bytes; the limit is {limits.VALUE_BYTES_MAX}"
    return None


def _program_problem(m: pb.Mutation) -> str | None:
    program_bytes = len(m.program.encode())
    if program_bytes > limits.PROGRAM_SOURCE_BYTES_MAX:
        return f"program is {program_bytes} bytes; the limit is {limits.PROGRAM_SOURCE_BYTES_MAX}"
    if len(m.args) > limits.PROGRAM_ARGS_BYTES_MAX:
        return f"program args are {len(m.args)} bytes; the limit is {limits.PROGRAM_ARGS_BYTES_MAX}"
    return None
