"""Values from the command line: literal text, `-` for stdin, `@path` for a file's bytes.

A shell argument cannot hold a large or binary value (a 200 KiB argument fails in the shell), so
stdin and files are read as bytes, bounded by the largest value a node accepts (plus one byte, so
an oversized value gets the node's own clear rule instead of being cut silently).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import BinaryIO

from laminar import limits
from laminar._cli._exits import CommandFailed, Exit

STDIN = "-"
FILE_PREFIX = "@"


def read_value(text: str, what: str, bytes_max: int = limits.VALUE_BYTES_MAX) -> bytes:
    """`-`: stdin; `@path`: the file's bytes; `@@text`: the literal `@text`; else the text itself."""
    if text == STDIN:
        return _bounded(sys.stdin.buffer, "stdin", what, bytes_max)
    if text.startswith(FILE_PREFIX + FILE_PREFIX):
        return text[1:].encode()
    if text.startswith(FILE_PREFIX):
        path = text[1:]
        try:
            with open(path, "rb") as f:
                return _bounded(f, path, what, bytes_max)
        except OSError as e:
            raise CommandFailed(Exit.USAGE, f"cannot read the {what} from {path}: {e.strerror or e}") from e
    return text.encode()


def _bounded(stream: BinaryIO, where: str, what: str, bytes_max: int) -> bytes:
    data = stream.read(bytes_max + 1)
    if len(data) > bytes_max:
        raise CommandFailed(Exit.REJECTED, f"the {what} in {where} is over {bytes_max} bytes, the limit")
    return data


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(text: str) -> int:
    """A duration such as 500ms, 90s, 10m, 12h or 7d, in milliseconds (an argparse type)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: a whole number and ms, s, m, h or d (e.g. 10m)")
    return int(found.group(1)) * _UNIT_MS[found.group(2)]
