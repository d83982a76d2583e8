"""JSON arrays of records, decoded one element at a time; a broken element is one bad record and reading
resumes at the next one."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deita.data.checks import decode_problem, syntax_message, text_problem
from deita.data.source import describe_start, first_byte
from deita.errors import RecordError

from .base import Item, ReadStats
from .jsonl import jsonl_items
from .text import TextBuffer

_SURROGATE = re.compile("[\udc80-\udcff]")  # invalid UTF-8 bytes decoded with surrogateescape
_STRUCTURE = re.compile(r'["{}\[\],\n]')
_IN_STRING = re.compile(r'["\\\n]')
# a line that starts an array element: "{", ", {" or "}, {" (the previous element's end on the same line)
_ELEMENT_LINE = re.compile(r"([ \t]*)(?:[}\]][ \t]*,|,)?[ \t]*[{\[]")
_CLOSE_LINE = re.compile(r"([ \t]*)\][ \t]*(?:\r?\n|$)")
_OPENER = {"}": "{", "]": "["}
_LOOKAHEAD = 256  # characters kept after a newline so a line's start can be inspected
_STACK_WINDOW = 1 << 16  # how far bracket counting may go on after a line that looks like the next element
_MAX_STACK = 1 << 16  # bracket types remembered; deeper levels are only counted
_PREVIEW = 500  # characters of a broken span kept in its reject


def _skip_broken(t: TextBuffer, indent: int) -> tuple[int | None, int]:
    """Skip the broken array element at ``t.pos``; return where the next element starts (or the array's
    closing ']'), None when the file ends first, and the file line where the broken text ends.

    Bracket counting with string awareness finds the end when the element's brackets balance: a ','
    or ']' at depth 0; strings end at a newline, which JSON strings never hold. Where counting cannot
    find the end (an opener too many, a closer of the wrong kind, a quote too few), the first later line
    that starts an element at the broken element's indentation is taken, unless counting finds the end
    within ``_STACK_WINDOW`` characters after it. Memory stays bounded: the buffer drops the text it has
    passed.
    """
    stack: list[str] = []
    overflow = 0  # levels beyond _MAX_STACK
    in_string = False
    candidate: int | None = None
    line = last_line = candidate_line = t.line_of(t.pos)  # lines counted as the scan passes newlines
    i = t.pos
    while True:
        if candidate is not None and i - candidate > _STACK_WINDOW:
            return candidate, candidate_line
        m = (_IN_STRING if in_string else _STRUCTURE).search(t.buf, i)
        if m is None or (not t.eof and m.start() > len(t.buf) - _LOOKAHEAD):
            if t.eof:
                return candidate, (last_line if candidate is None else candidate_line)
            t.pos = candidate if candidate is not None else (m.start() if m else len(t.buf))
            before = t.pos
            t.fill()
            shift = before - t.pos
            i = max(i - shift, t.pos)
            candidate = None if candidate is None else candidate - shift
            continue
        c, j = m.group(), m.start()
        i = j + 1
        if c == "\n":
            line += 1
            in_string = False
            if candidate is None:
                start = _ELEMENT_LINE.match(t.buf, i)
                if start and len(start.group(1)) == indent:
                    if not stack and not overflow:  # the element ended, then a new one without a ','
                        return start.end() - 1, last_line
                    candidate, candidate_line = start.end() - 1, last_line
                else:
                    close = _CLOSE_LINE.match(t.buf, i)
                    if close and len(close.group(1)) <= indent:
                        candidate, candidate_line = close.end(1), last_line
            continue
        last_line = line
        if in_string:
            if c == '"':
                in_string = False
            elif t.buf[i : i + 1] != "\n":  # a backslash escapes the next character
                i += 1
        elif c == '"':
            in_string = True
        elif c in "{[":
            if len(stack) < _MAX_STACK:
                stack.append(c)
            else:
                overflow += 1
        elif c in "}]":
            if overflow:
                overflow -= 1
            elif stack:
                if stack[-1] == _OPENER[c]:
                    stack.pop()
                # else a mismatched closer: ignored, as closing down to its opener would end the element
                # too early (inside it); counting stays too deep, and the line rule below takes over
            elif c == "]":
                return j, last_line  # the array's end
        elif not stack and not overflow:  # ','
            return i, last_line


def read_json(path: Path, stats: ReadStats | None = None) -> Iterator[Item]:
    """Records of a JSON array, decoded one at a time; a .json file of objects one per line is JSONL.

    A broken element (bad syntax, too deep to parse, a missing ',') is one bad item; reading resumes at
    the next element (see ``_skip_broken``), whose index counts on.
    """
    stats = stats if stats is not None else ReadStats()
    with stats.open(path) as source:
        first, line, f = first_byte(source)
        if first == b"{":
            yield from jsonl_items(f, stats)
            return
        if first == b"":
            return
        if first != b"[":
            raise RecordError(path, f"line {line}", _not_records(first, f.peek(1 << 16)[:1 << 16]))
        t = TextBuffer(f)
        t.peek()
        if t.buf[t.pos : t.pos + 1] == "\ufeff":
            t.pos += 1
            t.peek()
        t.pos += 1
        index = 0
        if t.peek() == "]":
            t.pos += 1
        else:
            while True:  # at the start of an element
                loc = f"index {index}"
                if t.peek() == "":
                    stats.bytes_read = t.consumed()
                    yield index, loc, "", "invalid JSON: the array is not closed (is the file cut off?)"
                    return
                problem = None
                fast = t.fast_decode()
                try:
                    value, end = fast if fast is not None else t.decode()
                except json.JSONDecodeError as e:
                    problem = (
                        f"invalid JSON: {syntax_message(e)} at file line {t.line_of(e.pos)}, "
                        f"character {e.pos - t.pos + 1} of the record"
                    )
                except (RecursionError, ValueError) as e:
                    problem = f"{decode_problem(e)} (file line {t.line_of(t.pos)})"
                if problem is None:
                    item = (index, loc, value, None) if fast is not None else _checked_element(t, index, value, end)
                    t.pos, index = end, index + 1
                    stats.bytes_read = t.consumed()
                    yield item
                    sep = t.peek()
                    if sep == "]":
                        break
                    if sep == ",":
                        t.pos += 1
                        continue
                    if sep == "":
                        yield (
                            index,
                            f"index {index}",
                            "",
                            (
                                f"invalid JSON: the array is not closed after the record at index {index - 1} "
                                "(is the file cut off?)"
                            ),
                        )
                        return
                    loc = f"index {index}"
                    problem = (
                        f"invalid JSON: expected ',' or ']' after the record at index {index - 1}, "
                        f"found {sep!r} (file line {t.line_of(t.pos)})"
                    )
                # a broken span from t.pos: one bad item, then on with what follows it
                first_line, preview = t.line_of(t.pos), t.buf[t.pos : t.pos + _PREVIEW]
                nxt, last = _skip_broken(t, t.indent_at(t.pos))
                if nxt is None:
                    problem += (
                        f"; no record follows it up to the end of the file (line {last}), "
                        "and the array is not closed (is the file cut off?)"
                    )
                else:
                    lines = (
                        f"file line {first_line}"
                        if last <= first_line
                        else (f"file lines {first_line}-{last}")
                    )
                    problem += f"; skipped its text ({lines}) and read on from the next record"
                    t.pos = nxt
                stats.bytes_read = t.consumed() if nxt is not None else t.bytes_read
                yield index, loc, preview, problem
                index += 1
                if nxt is None:
                    return
                if t.buf[nxt] == "]":
                    break
        t.pos += 1
        if t.peek():
            line = t.line_of(t.pos)
            preview = t.buf[t.pos : t.pos + _PREVIEW]
            stats.bytes_read = t.bytes_read
            yield (
                index,
                f"line {line}",
                preview,
                (
                    f"unexpected data after the closing ']' of the array (file line {line}); "
                    "it is not read as records"
                ),
            )
            return
        stats.bytes_read = t.bytes_read


def _not_records(first: bytes, head: bytes) -> str:
    """Why a file whose first character is ``first`` holds no records, naming what it is."""
    if first in b'"-0123456789tfn':
        return ("not a JSON array of records (nor JSON Lines): the file holds a single JSON value; give a "
                "JSON array of records ('[...]') or one object a line")
    head = head.lstrip().removeprefix(b"\xef\xbb\xbf")
    return (f"not JSON: {describe_start(head)}; expected a JSON array of records or JSON Lines (gzip "
            "and zstd files are read as they are, UTF-16/32 files by their byte order mark)")


def _checked_element(t: TextBuffer, index: int, value: Any, end: int) -> Item:
    """The item for a decoded element ``t.buf[t.pos:end]``: bad if its text is not UTF-8 or its value
    is too deep or holds a lone surrogate."""
    start, loc = t.pos, f"index {index}"
    bad = _SURROGATE.search(t.buf, start, end)
    if bad:
        text = t.buf[start:end].encode("utf-8", "surrogateescape")
        offset = len(t.buf[start : bad.start()].encode("utf-8", "surrogateescape"))
        problem = (
            f"not valid UTF-8: byte 0x{ord(bad.group()) - 0xDC00:02x} at byte {offset + 1} "
            f"of the record (file line {t.line_of(bad.start())})"
        )
        return index, loc, text.decode("utf-8", "replace"), problem
    problem = text_problem(t.buf, value, start, end)
    if problem:
        return index, loc, t.buf[start:end], f"{problem} (file line {t.line_of(start)})"
    return index, loc, value, None
