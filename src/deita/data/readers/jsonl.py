"""JSON Lines: one record a line, read through jiter (data/checks.py), with the stdlib deciding what jiter refuses."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from deita.data.checks import SLOW, STRICT_DECODER, decode_problem, fast_loads, syntax_message, text_problem

from .base import Item, ReadStats


def read_jsonl(path: Path, stats: ReadStats | None = None) -> Iterator[Item]:
    stats = stats if stats is not None else ReadStats()
    with stats.open(path) as f:
        yield from jsonl_items(f, stats)


def jsonl_items(f: IO[bytes], stats: ReadStats) -> Iterator[Item]:
    """The items of JSON Lines bytes (``read_json`` hands over a .json file of one object a line)."""
    index, offset = 0, 0
    for lineno, line in enumerate(f, 1):
        start, offset = offset, offset + len(line)
        stats.bytes_read = offset
        if lineno == 1 and line.startswith(codecs.BOM_UTF8):
            line, start = line[3:], 3
        if line.isspace() or not line:
            continue
        loc = f"line {lineno}"
        stats.record_start = start
        value = fast_loads(line)
        if value is not SLOW:
            yield index, loc, value, None
            index += 1
            continue
        try:
            text = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            problem = (
                f"not valid UTF-8: byte 0x{line[e.start]:02x} at column {e.start + 1} "
                f"(byte offset {start + e.start} of the file)"
            )
            yield index, loc, line.decode("utf-8", "replace").rstrip("\r\n"), problem
        else:
            try:
                value = STRICT_DECODER.decode(text)
            except json.JSONDecodeError as e:
                yield index, loc, text, f"invalid JSON: {syntax_message(e)} at column {e.colno}"
            except (RecursionError, ValueError) as e:
                yield index, loc, text, decode_problem(e)
            else:
                problem = text_problem(text, value)
                yield index, loc, (text if problem else value), problem
        index += 1
