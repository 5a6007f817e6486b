"""Data on stdout as a table (for people) or JSON (for scripts): `-o table|json`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

FORMATS = ("table", "json")


def add_output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--json", dest="output", action="store_const", const="json", help="same as -o json")


def text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def print_json(value: Any, indent: int | None = None) -> None:
    print(json.dumps(value, indent=indent), flush=True)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns padded to their widest cell; a header line first."""
    cells = [list(columns)] + [[str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
