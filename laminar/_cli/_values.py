"""Values from the command line: literal text, `-` for stdin, `@path` for a file's bytes.

A shell argument cannot hold a large or binary value (a 200 KiB argument fails in the shell), so
stdin and files are read as bytes, bounded by the largest value a node accepts (plus one byte, so
an oversized value gets the node's own clear rule instead of being cut silently).
"""

from __future__ import annotations

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
