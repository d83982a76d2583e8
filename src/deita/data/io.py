"""Streaming record reading (JSON, JSONL, parquet, saved datasets) and atomic record writing.

Readers hold one record (or one batch) at a time, so a million-record pool needs no more memory than a
few records; writers go to a temporary file in the output's folder and rename it on success, so a
crash never leaves a half-written output behind.

Every record a reader counts is either yielded or handed to ``on_bad`` with a reason, never dropped.
Besides syntax, a JSON record is bad when it is nested deeper than ``MAX_NESTING`` levels (deeper
records break the recursion limits of JSON encoders and parquet writers later on) or when it holds a
lone surrogate escape such as ``"\\ud800"`` (valid JSON syntax, but not Unicode text: writing UTF-8 or
tokenizing it fails later).

Parsing and serialising go through orjson on the hot paths; the stdlib ``json`` decides everything
orjson cannot say exactly: a record orjson refuses (bad syntax, NaN, a lone surrogate escape) is read
again with the stdlib, whose message and rules the rejects keep, and so is a record where orjson would
have turned an integer beyond 64 bits into a float. Writing falls back to the stdlib encoder for what
orjson cannot encode as it came (big integers, NaN/Infinity, lone surrogates, non-string keys).
"""

from __future__ import annotations

import atexit
import codecs
import json
import os
import re
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from deita.errors import DeitaError, RecordError

from .formats import (
    FILE_TYPES,
    FORMATS,
    PAIRINGS,
    convert_record,
    detect_format,
    file_type_of,
    json_type,
    parse_turns,
)
from .records import Record

if TYPE_CHECKING:
    from typing_extensions import Self

SKIP_HINT = "Use --on-error skip to write bad records to {rejects} and continue"
ON_ERROR = ("fail", "skip")
_CHUNK = 1 << 20
_BATCH_ROWS = 1000
_WS = re.compile(r"[ \t\n\r]*")
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # orjson's layout, for its fallbacks
_SURROGATE = re.compile("[\udc80-\udcff]")  # invalid UTF-8 bytes decoded with surrogateescape
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in decoded text: json joins valid pairs, so these are lone
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # in raw JSON text: the only way to write one
MAX_NESTING = 200
"""Records nested deeper than this many levels of objects/arrays are bad records (a ShareGPT record has 3)."""
_INT64 = (-(2**63), 2**63 - 1)
PARQUET_MAX_SCHEMA_DEPTH = 100
"""pyarrow's parquet reader refuses deeper schemas; a list takes two levels, an object one (root: 1)."""

_NOT_MARKS = bytes(b for b in range(256) if b not in b"0123456789{[")  # translate(None, _NOT_MARKS) keeps these
_DIGITS_ONLY = bytes(57 if 48 <= b <= 57 else 32 for b in range(256))  # translate table: digits to "9", rest " "
_DIGIT_RUN = b"9" * 19  # an integer literal this long may be beyond 64 bits, where orjson gives a float
_SLOW = object()
"""``_fast_loads``'s answer when the stdlib path must read the record."""

READS: Counter[str] = Counter()
"""How many times each input file (resolved path) was opened for reading records, in this process."""
COUNT_READS_ENV = "DEITA_COUNT_READS"


def _count_read(path: Path) -> None:
    READS[str(path.resolve())] += 1


def _report_reads() -> None:
    for path, count in READS.items():
        print(f"deita reads: {count} {path}", file=sys.stderr)
    for path, count in FETCHED.items():
        print(f"deita fetched: {count} records of {path}", file=sys.stderr)


if os.environ.get(COUNT_READS_ENV) == "1":
    atexit.register(_report_reads)


def _fast_loads(data: bytes) -> Any:
    """orjson's value of one record's UTF-8 text, or ``_SLOW`` where the stdlib path must decide: orjson
    refuses it (syntax, NaN, lone surrogates), it may hold an integer beyond 64 bits (a run of 19 digits
    in its text), or it holds more brackets than ``MAX_NESTING`` levels."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _SLOW
    marks = data.translate(None, _NOT_MARKS)  # the digits and openers only: one pass over the text
    openers = marks.count(b"{") + marks.count(b"[")
    if openers > MAX_NESTING or (len(marks) - openers >= 19 and _DIGIT_RUN in data.translate(_DIGITS_ONLY)):
        return _SLOW
    return value


# (index, location, record or raw text, problem or None)
_Item = tuple[int, str, Any, str | None]
OnBad = Callable[[int, str, str, Any], None]


@dataclass
class ReadStats:
    """Counts filled in while reading; ``records == yielded + rejected``."""

    records: int = 0
    rejected: int = 0
    turns: int = 0
    skipped_leading_assistant: int = 0
    format: str | None = None
    file_type: str | None = None
    bytes_read: int = 0
    """Progress through the input, in ``input_size``'s unit: bytes for JSON/JSONL (approximate for a JSON
    array: it moves chunk by chunk), rows for parquet and datasets."""
    record_start: int = 0
    """JSONL only: the byte offset where the last record yielded starts; it ends at ``bytes_read``. With
    ``records_at`` a later step can fetch chosen records without reading the whole file again."""


def rejects_path_for(output: str | Path) -> Path:
    """Where bad records of a run writing ``output`` go: ``<output>.rejects.jsonl``."""
    p = Path(output)
    return p.with_name(p.name + ".rejects.jsonl")


class RejectsWriter:
    """JSONL of rejected records: ``{"index", "location", "reason", "record"}``; created on the first one.

    A stale rejects file from an earlier run is removed at construction, so the file always describes
    this run.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._f: IO[str] | None = None
        self.path.unlink(missing_ok=True)

    def add(self, index: int, location: str, reason: str, record: Any) -> None:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "w", encoding="utf-8", errors="backslashreplace", newline="\n")  # noqa: SIM115
        row = {"index": index, "location": location, "reason": reason, "record": record}
        self._f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- value checks


def _field(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _value_problem(value: Any, *, surrogates: bool = False, parquet: bool = False) -> str | None:
    """Why ``value`` is not a usable record, or None: nesting deeper than ``MAX_NESTING``; with
    ``surrogates`` (or ``parquet``), a lone surrogate in a string or key; with ``parquet``, an integer
    outside int64 or a schema deeper than parquet readers accept. Iterative: never recurses."""
    surrogates = surrogates or parquet
    stack: list[tuple[Any, str, int, int]] = [(value, "", 1, 1)]  # value, path, level, parquet schema depth
    while stack:
        v, path, level, schema = stack.pop()
        if isinstance(v, (dict, list)):
            is_dict = isinstance(v, dict)
            child_schema = schema + (1 if is_dict else 2)  # a parquet list is two schema levels
            if level > MAX_NESTING or (parquet and child_schema > PARQUET_MAX_SCHEMA_DEPTH):
                top = path.split(".", 1)[0].split("[", 1)[0]
                if level > MAX_NESTING:
                    return (
                        f"nested deeper than {MAX_NESTING} levels (in field {top!r}); records are limited "
                        f"to {MAX_NESTING} levels so that every writer can handle them"
                    )
                return (
                    f"nested too deep for parquet (in field {top!r}: more than {PARQUET_MAX_SCHEMA_DEPTH} "
                    "schema levels, a list counting two); write .jsonl or .json to keep it"
                )
            items = v.items() if is_dict else enumerate(v)
            children = []
            for k, x in items:
                if is_dict and surrogates and isinstance(k, str) and (bad := _LONE_SURROGATE.search(k)):
                    return _surrogate_problem(
                        bad.group(), f"a key of {path}" if path else "a key of the record"
                    )
                if (
                    isinstance(x, (dict, list))
                    or (surrogates and isinstance(x, str))
                    or (parquet and isinstance(x, int))
                ):
                    child = _field(path, k) if is_dict else f"{path}[{k}]"
                    children.append((x, child, level + 1, child_schema))
            stack.extend(reversed(children))  # first problem in document order
        elif isinstance(v, str):
            if bad := _LONE_SURROGATE.search(v):
                return _surrogate_problem(bad.group(), path or "the record")
        elif parquet and isinstance(v, int) and not isinstance(v, bool) and not _INT64[0] <= v <= _INT64[1]:
            shown = str(v) if v.bit_length() < 256 else f"of about {int(v.bit_length() * 0.30103)} digits"
            return (
                f"integer {shown} in {path or 'the record'} is outside the 64-bit range parquet can hold "
                "(write .jsonl or .json to keep it)"
            )
    return None


def _surrogate_problem(char: str, where: str) -> str:
    return f"text is not valid Unicode: lone surrogate \\u{ord(char):04x} in {where}"


def _text_problem(text: str, value: Any, start: int = 0, end: int | None = None) -> str | None:
    """Problems of a record decoded from ``text[start:end]``; walks the value only when the raw text could
    hold one (a surrogate escape, or more brackets than ``MAX_NESTING``), so typical records cost two counts."""
    end = len(text) if end is None else end
    surrogates = _SURROGATE_ESCAPE.search(text, start, end) is not None
    if not surrogates and text.count("{", start, end) + text.count("[", start, end) <= MAX_NESTING:
        return None
    return _value_problem(value, surrogates=surrogates)


_TOO_DEEP = f"nested deeper than the JSON parser allows; records are limited to {MAX_NESTING} levels of objects/arrays"


def _msg(e: json.JSONDecodeError) -> str:
    """The error's message without the trailing "at" some have ("Invalid control character at")."""
    return e.msg.removesuffix(" at")


def _decode_problem(e: Exception) -> str:
    """A problem sentence for an exception of ``json.loads`` other than a syntax error."""
    if isinstance(e, RecursionError):
        return _TOO_DEEP
    return f"invalid JSON: {e}"  # e.g. an integer of more than 4300 digits


# ---------------------------------------------------------------- raw readers (one per file type)


def _iter_jsonl(path: Path, stats: ReadStats | None = None) -> Iterator[_Item]:
    index, offset = 0, 0
    stats = stats if stats is not None else ReadStats()
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            start, offset = offset, offset + len(line)
            stats.bytes_read = offset
            if lineno == 1 and line.startswith(codecs.BOM_UTF8):
                line, start = line[3:], 3
            if line.isspace() or not line:
                continue
            loc = f"line {lineno}"
            stats.record_start = start
            value = _fast_loads(line)
            if value is not _SLOW:
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
                    value = json.loads(text)
                except json.JSONDecodeError as e:
                    yield index, loc, text, f"invalid JSON: {_msg(e)} at column {e.colno}"
                except (RecursionError, ValueError) as e:
                    yield index, loc, text, _decode_problem(e)
                else:
                    problem = _text_problem(text, value)
                    yield index, loc, (text if problem else value), problem
            index += 1


class _TextBuffer:
    """Text of a binary file decoded chunk by chunk; ``buf[pos:]`` is the unread part."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.buf, self.pos, self.eof = f, "", 0, False
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.json = json.JSONDecoder()
        self.lines_before = 0  # newlines in the text already dropped from buf
        self.bytes_read = 0  # bytes of the file read into buf so far
        self.fast = True  # elements laid out one per line or pretty-printed: orjson may read them
        self.fast_misses = 0  # elements in a row that the layout did not delimit

    def fill(self) -> bool:
        """Drop the consumed text (but the start of pos's line, when short: ``indent_at`` needs it) and
        append the next chunk; False at end of file."""
        if self.eof:
            return False
        data = self.f.read(max(_CHUNK, len(self.buf) - self.pos))  # grow geometrically for huge records
        self.eof = not data
        self.bytes_read += len(data)
        cut = self.buf.rfind("\n", 0, self.pos) + 1
        if not cut or self.pos - cut > _KEEP_LINE:
            cut = self.pos
        self.lines_before += self.buf.count("\n", 0, cut)
        self.buf = self.buf[cut:] + self.decoder.decode(data, final=self.eof)
        self.pos -= cut
        return not self.eof

    def consumed(self) -> int:
        """About how many bytes of the file lie before pos (exact for ASCII text)."""
        return max(0, self.bytes_read - (len(self.buf) - self.pos))

    def peek(self) -> str:
        """The next non-whitespace character ("" at end of file), leaving pos on it."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf) or not self.fill():
                return self.buf[self.pos : self.pos + 1]

    def decode(self) -> tuple[Any, int]:
        """The JSON value at pos and its end, reading more text while the value is cut off by the chunk."""
        while True:
            try:
                value, end = self.json.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                cut = e.pos >= len(self.buf) - 64 or e.msg.startswith("Unterminated string")
                if self.eof or not cut:
                    raise
                self.fill()  # then decode again, in the new buffer's coordinates
                continue
            if end < len(self.buf) or self.eof:
                return value, end
            self.fill()  # the value ends at the chunk's end: a number may go on

    def fast_decode(self) -> tuple[Any, int] | None:
        """The element at pos through orjson, where the file's layout shows its end: an element on one line
        (``{...},``), or a pretty-printed one whose closing bracket starts a line at the opening line's
        indentation. None where that fails (then ``decode`` decides, with the stdlib's rules and messages).
        orjson parses the whole candidate text or nothing, so a wrong candidate can only fail, never
        yield a different value. A file without such a layout (a whole array on one line, several elements
        a line) turns the fast path off, and no search reads more than ``_FAST_SPAN`` characters ahead."""
        if not self.fast:
            return None
        found = self._fast_element()
        self.fast_misses = 0 if found is not None else self.fast_misses + 1
        self.fast = self.fast and self.fast_misses < _FAST_MISSES
        return found

    def _fast_element(self) -> tuple[Any, int] | None:
        opener = self.buf[self.pos : self.pos + 1]
        if opener not in ("{", "["):
            return None
        closer = "}" if opener == "{" else "]"
        line_end = self._find("\n", 0)
        if line_end is None:
            self.fast = False
            return None
        start = self.pos
        head = self.buf[start:line_end].rstrip()
        if head.endswith(","):
            head = head[:-1].rstrip()
        if head.endswith(closer):
            value = self._fast_value(start, start + len(head))
            if value is not _SLOW:
                return value, start + len(head)
        indent = self.buf[self.buf.rfind("\n", 0, start) + 1 : start]
        if indent.strip(" \t"):  # the element shares its line with other text: no layout to go by
            return None
        mark = "\n" + indent + closer
        found = self._find(mark, line_end - start)
        if found is None:
            return None
        end = found + len(mark)
        value = self._fast_value(self.pos, end)
        return None if value is _SLOW else (value, end)

    def _find(self, text: str, offset: int) -> int | None:
        """Where ``text`` next occurs from ``pos + offset``, reading on up to ``_FAST_SPAN`` characters
        past pos; None if not there."""
        while True:
            found = self.buf.find(text, self.pos + offset, self.pos + _FAST_SPAN)
            if found >= 0:
                return found
            if self.eof or len(self.buf) - self.pos >= _FAST_SPAN:
                return None
            offset = max(0, len(self.buf) - self.pos - len(text))
            self.fill()

    def _fast_value(self, start: int, end: int) -> Any:
        try:
            data = self.buf[start:end].encode("utf-8")  # surrogate escapes of invalid bytes fail here
        except UnicodeEncodeError:
            return _SLOW
        return _fast_loads(data)

    def line_of(self, pos: int) -> int:
        return self.lines_before + self.buf.count("\n", 0, pos) + 1

    def indent_at(self, pos: int) -> int:
        """Leading whitespace of the line holding ``pos`` (as far as the buffer still holds that line)."""
        line = self.buf[self.buf.rfind("\n", 0, pos) + 1 : pos]
        return len(line) - len(line.lstrip(" \t"))


_STRUCTURE = re.compile(r'["{}\[\],\n]')
_IN_STRING = re.compile(r'["\\\n]')
# a line that starts an array element: "{", ", {" or "}, {" (the previous element's end on the same line)
_ELEMENT_LINE = re.compile(r"([ \t]*)(?:[}\]][ \t]*,|,)?[ \t]*[{\[]")
_CLOSE_LINE = re.compile(r"([ \t]*)\][ \t]*(?:\r?\n|$)")
_OPENER = {"}": "{", "]": "["}
_LOOKAHEAD = 256  # characters kept after a newline so a line's start can be inspected
_STACK_WINDOW = 1 << 16  # how far bracket counting may go on after a line that looks like the next element
_MAX_STACK = 1 << 16  # bracket types remembered; deeper levels are only counted
_FAST_SPAN = 1 << 20  # characters the orjson path may look ahead for an element's end
_FAST_MISSES = 16  # elements in a row the layout fails to delimit before the orjson path gives up on a file
_PREVIEW = 500  # characters of a broken span kept in its reject
_KEEP_LINE = 1024  # consumed characters of the current line the buffer keeps, for its indentation


def _skip_broken(t: _TextBuffer, indent: int) -> tuple[int | None, int]:
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


def _iter_json(path: Path, stats: ReadStats | None = None) -> Iterator[_Item]:
    """Records of a JSON array, decoded one at a time; a .json file of objects one per line is JSONL.

    A broken element (bad syntax, too deep to parse, a missing ',') is one bad item; reading resumes at
    the next element (see ``_skip_broken``), whose index counts on.
    """
    stats = stats if stats is not None else ReadStats()
    with open(path, "rb") as f:
        t = _TextBuffer(f)
        first = t.peek()
        if first == "\ufeff":
            t.pos += 1
            first = t.peek()
        if first == "{":
            yield from _iter_jsonl(path, stats)
            return
        if first == "":
            return
        if first != "[":
            raise RecordError(
                path, f"line {t.line_of(t.pos)}", "not a JSON array of records (nor JSON Lines)"
            )
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
                        f"invalid JSON: {_msg(e)} at file line {t.line_of(e.pos)}, "
                        f"character {e.pos - t.pos + 1} of the record"
                    )
                except (RecursionError, ValueError) as e:
                    problem = f"{_decode_problem(e)} (file line {t.line_of(t.pos)})"
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


def _checked_element(t: _TextBuffer, index: int, value: Any, end: int) -> _Item:
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
    problem = _text_problem(t.buf, value, start, end)
    if problem:
        return index, loc, t.buf[start:end], f"{problem} (file line {t.line_of(start)})"
    return index, loc, value, None


def _iter_parquet(path: Path, stats: ReadStats | None = None) -> Iterator[_Item]:
    stats = stats if stats is not None else ReadStats()
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DeitaError(f"{path}: cannot read as parquet: {e}") from e
    index = 0
    for batch in pf.iter_batches(batch_size=_BATCH_ROWS):
        for row in batch.to_pylist():
            stats.bytes_read = index + 1  # rows, the unit input_size gives for parquet
            yield index, f"index {index}", row, None
            index += 1


def _load_dataset(path: Path) -> Any:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        splits = ", ".join(ds)
        raise DeitaError(
            f"{path}: a dataset with splits ({splits}); give one split's folder, e.g. {path}/{next(iter(ds))}"
        )
    return ds


def _iter_dataset(path: Path, stats: ReadStats | None = None) -> Iterator[_Item]:
    stats = stats if stats is not None else ReadStats()
    index = 0
    for table in _load_dataset(path).with_format("arrow").iter(batch_size=_BATCH_ROWS):
        for row in table.to_pylist():
            stats.bytes_read = index + 1  # rows, the unit input_size gives for datasets
            yield index, f"index {index}", row, None
            index += 1


_READERS: dict[str, Callable[[Path, ReadStats], Iterator[_Item]]] = {
    "json": _iter_json, "jsonl": _iter_jsonl, "parquet": _iter_parquet, "dataset": _iter_dataset,
}  # fmt: skip


# ---------------------------------------------------------------- records


def _check_options(fmt: str | None, on_error: str, pairing: str) -> None:
    if fmt is not None and fmt not in FORMATS:
        raise DeitaError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if on_error not in ON_ERROR:
        raise DeitaError(f"unknown on_error {on_error!r} (expected one of {', '.join(ON_ERROR)})")
    if pairing not in PAIRINGS:
        raise DeitaError(f"unknown pairing {pairing!r} (expected one of {', '.join(PAIRINGS)})")


def _open(path: str | Path) -> tuple[Path, str]:
    p = Path(path)
    if not p.exists():
        raise DeitaError(f"{p}: no such file or directory")
    return p, file_type_of(p)


def _records(
    path: Path, file_type: str, fmt: str | None, pairing: str, stats: ReadStats, on_bad: OnBad
) -> Iterator[Record]:
    """Parsed good records; each bad one goes to ``on_bad(index, location, problem, record)``."""
    stats.file_type, stats.format = file_type, fmt
    _count_read(path)
    for index, loc, obj, problem in _READERS[file_type](path, stats):
        stats.records += 1
        if problem is None:
            if not isinstance(obj, dict):
                problem = f"not a JSON object: the record is {json_type(obj)}"
            else:
                try:
                    if fmt is None:
                        fmt = stats.format = detect_format(obj)
                    turns, system, skipped = parse_turns(obj, fmt, pairing)
                except ValueError as e:
                    problem = str(e)
        if problem is not None:
            stats.rejected += 1
            on_bad(index, loc, problem, obj)
            continue
        stats.turns += len(turns)
        stats.skipped_leading_assistant += skipped
        yield Record(index, loc, obj, turns, system, skipped)


def iter_records(
    path: str | Path,
    *,
    fmt: str | None = None,
    on_error: str = "fail",
    rejects: RejectsWriter | None = None,
    pairing: str = "role",
    stats: ReadStats | None = None,
    rejects_hint: str | Path | None = None,
) -> Iterator[Record]:
    """Stream the good records of a file (one record in memory at a time).

    The format is detected from the first good record unless ``fmt`` is given. ``on_error="fail"``
    raises ``RecordError`` on the first bad record (its hint names ``rejects_hint``, the rejects file a
    rerun with skip would write); ``"skip"`` sends it to ``rejects`` and goes on.
    Options and the path are checked now, before the first record is asked for.
    """
    _check_options(fmt, on_error, pairing)
    p, file_type = _open(path)
    stats = stats if stats is not None else ReadStats()

    def on_bad(index: int, location: str, problem: str, record: Any) -> None:
        if on_error == "fail":
            where = rejects.path if rejects is not None else rejects_hint or "<output>.rejects.jsonl"
            raise RecordError(p, location, problem, hint=SKIP_HINT.format(rejects=where))
        if rejects is not None:
            rejects.add(index, location, problem, record)

    return _records(p, file_type, fmt, pairing, stats, on_bad)


def count_records(path: str | Path) -> int:
    """Number of records (good and bad), cheaply where the file type allows, for progress bars."""
    p, file_type = _open(path)
    if file_type == "parquet":
        return pq.ParquetFile(p).metadata.num_rows
    if file_type == "dataset":
        return len(_load_dataset(p))
    _count_read(p)
    if file_type == "jsonl":
        with open(p, "rb") as f:
            return sum(1 for line in f if line and not line.isspace())
    return sum(1 for _ in _iter_json(p))


FETCHED: Counter[str] = Counter()
"""Records fetched by ``records_at`` per file (resolved path): reads of a few records, not of the file."""


def records_at(path: str | Path, spans: Iterable[tuple[int, int]]) -> Iterator[dict]:
    """The records of a JSONL file at byte ``(start, end)`` spans, in the order given. The spans come from
    ``ReadStats.record_start`` and ``bytes_read`` of an earlier ``iter_records`` pass over the same,
    unchanged file, whose records were good; values are decoded as that pass decoded them."""
    p = Path(path)
    key = str(p.resolve())
    with open(p, "rb") as f:
        for start, end in spans:
            f.seek(start)
            data = f.read(end - start)
            value = _fast_loads(data)
            if value is _SLOW:
                try:
                    value = json.loads(data.decode("utf-8"))
                except (ValueError, RecursionError) as e:
                    raise DeitaError(f"{p}: bytes {start}-{end} are not the record read before ({e}); "
                                     "did the file change?") from e
            FETCHED[key] += 1
            yield value


def input_size(path: str | Path) -> tuple[int, str]:
    """(total, unit) of an input for progress: its size in ``"bytes"`` for JSON/JSONL, its ``"rows"`` for
    parquet and datasets (from metadata, without reading the data). ``ReadStats.bytes_read`` counts in
    the same unit, so progress can show an ETA without a counting pass over the file."""
    p, file_type = _open(path)
    if file_type == "parquet":
        try:
            return pq.ParquetFile(p).metadata.num_rows, "rows"
        except (pa.ArrowException, OSError) as e:
            raise DeitaError(f"{p}: cannot read as parquet: {e}") from e
    if file_type == "dataset":
        return len(_load_dataset(p)), "rows"  # memory-maps the arrow files; reads no rows
    return p.stat().st_size, "bytes"


# ---------------------------------------------------------------- writing


class _ParquetSink:
    """Rows to a parquet file in batches; a later batch with new fields or wider types rewrites the file
    once with the unified schema (rare: e.g. a column that was all null in the first batch)."""

    def __init__(self, path: Path) -> None:
        self.path, self.written = path, 0
        self.rows: list[dict] = []
        self.schema: pa.Schema | None = None
        self.writer: pq.ParquetWriter | None = None

    def add(self, raw: dict) -> None:
        self.rows.append(raw)
        if len(self.rows) >= _BATCH_ROWS:
            self.flush()

    def _table(self, schema: pa.Schema | None = None) -> pa.Table:
        try:
            if schema is not None:
                return pa.Table.from_pylist(self.rows, schema=schema)
            keys = dict.fromkeys(k for row in self.rows for k in row)  # from_pylist would see row 0's only
            return pa.Table.from_pydict({k: [row.get(k) for row in self.rows] for k in keys})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            first = self.written
            raise DeitaError(
                f"cannot write records {first}-{first + len(self.rows) - 1} to parquet: {e} "
                "(parquet needs one type per field; write .jsonl instead)"
            ) from e

    def flush(self) -> None:
        if not self.rows:
            return
        table = self._table()
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.path, self.schema)
        elif not table.schema.equals(self.schema):
            try:
                unified = pa.unify_schemas([self.schema, table.schema], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise DeitaError(
                    f"cannot write record {self.written} onwards to parquet: {e} "
                    "(parquet needs one type per field; write .jsonl instead)"
                ) from e
            if not unified.equals(self.schema):
                self._rewrite(unified)
            table = self._table(self.schema)
        self.writer.write_table(table)
        self.written += len(self.rows)
        self.rows = []

    def _rewrite(self, schema: pa.Schema) -> None:
        assert self.writer is not None
        self.writer.close()
        old = self.path.with_name(self.path.name + ".old")
        os.replace(self.path, old)
        self.schema, self.writer = schema, pq.ParquetWriter(self.path, schema)
        for batch in pq.ParquetFile(old).iter_batches(batch_size=_BATCH_ROWS):
            self.writer.write_table(pa.Table.from_pylist(batch.to_pylist(), schema=schema))
        old.unlink()

    def close(self) -> None:
        self.flush()
        if self.writer is None:
            pq.write_table(pa.table({}), self.path)
        else:
            self.writer.close()
            self.writer = None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        for p in (self.path, self.path.with_name(self.path.name + ".old")):
            p.unlink(missing_ok=True)


class UnwritableRecord(DeitaError, ValueError):
    """``RecordWriter.write`` cannot write this record to its file type (e.g. an integer beyond int64 to
    parquet). Raised before anything of the record is buffered, so the caller can send the record to a
    rejects writer and go on writing; the message is the reason and names the field."""


_WRITE_BUFFER = 1 << 20


def encode_record(raw: Any, option: int = 0) -> bytes:
    """One record as compact UTF-8 JSON (orjson), keys in their order. What orjson cannot encode exactly
    as it came goes through the stdlib encoder: integers beyond 64 bits, NaN and Infinity (orjson would
    write null), lone surrogates (written as their ``\\ud800`` escape), non-string keys. ``option``:
    orjson options; the fallback honours ``OPT_APPEND_NEWLINE`` too. Raises ``UnwritableRecord`` for what
    neither can write (too deep, circular)."""
    try:
        data = orjson.dumps(raw, option=option)
    except orjson.JSONEncodeError:
        pass
    else:
        if data.rfind(b"null") < 0:  # NaN and Infinity come out as null: let the stdlib write those records
            return data
    try:
        text = _ENCODER.encode(raw)
    except RecursionError as e:
        raise UnwritableRecord("nested deeper than the JSON encoder allows") from e
    except ValueError as e:  # a circular reference, an integer of more than 4300 digits
        raise UnwritableRecord(f"cannot encode as JSON: {e}") from e
    data = text.encode("utf-8", "backslashreplace")
    return data + b"\n" if option & orjson.OPT_APPEND_NEWLINE else data


def _replace(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing a file or a dataset folder already there."""
    if dst.is_dir() and not dst.is_symlink():
        aside = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(dst, aside)
        os.replace(src, dst)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(src, dst)


class RecordWriter:
    """Write raw records atomically: to a temporary file beside ``path``, renamed there on a clean close.

    JSON is an array written record by record; parquet goes in batches; a ``dataset`` folder is written
    through a temporary parquet file and ``datasets.Dataset.save_to_disk`` at close.

    ``write`` raises ``UnwritableRecord`` for a record this file type cannot hold, leaving the output as
    it was, so one such record need not fail the whole write: parquet and datasets need integers within
    int64, valid Unicode text and a schema at most ``PARQUET_MAX_SCHEMA_DEPTH`` deep (what pyarrow reads
    back); JSON/JSONL take any integer (Python's
    json round-trips big ints) and write a lone surrogate as its ``\\ud800`` escape.
    """

    def __init__(self, path: str | Path, file_type: str | None = None) -> None:
        self.path = Path(path)
        self.file_type = file_type or file_type_of(self.path)
        if self.file_type not in FILE_TYPES:
            raise DeitaError(
                f"unknown file type {self.file_type!r} (expected one of {', '.join(FILE_TYPES)})"
            )
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        self._f: IO[bytes] | None = None
        self._sink: _ParquetSink | None = None
        if self.file_type in ("json", "jsonl"):
            self._f = open(self._tmp, "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115
            if self.file_type == "json":
                self._f.write(b"[\n")
        else:
            self._sink = _ParquetSink(self._tmp)

    def check(self, raw: dict) -> str | None:
        """Why ``write(raw)`` would raise ``UnwritableRecord``, or None. For JSON outputs only nesting is
        checked here (an encoder failure, e.g. a circular reference, still surfaces in ``write``)."""
        return _value_problem(raw, parquet=self._sink is not None)

    def write(self, raw: dict) -> None:
        """Add one record; ``UnwritableRecord`` (nothing written) when this file type cannot hold it."""
        if self._sink is not None:
            problem = self.check(raw)
            if problem is not None:
                raise UnwritableRecord(problem)
            self._sink.add(raw)
        else:
            assert self._f is not None
            if self.file_type == "jsonl":
                self._f.write(encode_record(raw, orjson.OPT_APPEND_NEWLINE))
            else:
                data = encode_record(raw)
                self._f.write(data if not self.count else b",\n" + data)
        self.count += 1

    def close(self) -> None:
        """Finish the file and move it into place (on failure, remove the temporary file and re-raise)."""
        try:
            if self._f is not None:
                if self.file_type == "json":
                    self._f.write(b"\n]\n" if self.count else b"]\n")
                self._f.close()
                self._f = None
                _replace(self._tmp, self.path)
            elif self._sink is not None:
                self._sink.close()
                self._sink = None
                if self.file_type == "dataset":
                    self._save_dataset()
                else:
                    _replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def _save_dataset(self) -> None:
        import datasets

        tmp_dir = self._tmp.with_suffix(".dir")
        quiet = datasets.are_progress_bars_disabled()
        datasets.disable_progress_bars()
        try:
            table = pq.read_table(self._tmp)
            if not self.count:  # datasets can save no rows only with a field and one shard
                table = pa.table({"id": pa.array([], pa.string())})
            datasets.Dataset(table).save_to_disk(str(tmp_dir), num_shards=None if self.count else 1)
            _replace(tmp_dir, self.path)
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        finally:
            if not quiet:
                datasets.enable_progress_bars()
            self._tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop everything written so far; the output path is left as it was."""
        if self._f is not None:
            self._f.close()
            self._f = None
        if self._sink is not None:
            self._sink.abort()
            self._sink = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_records(path: str | Path, raws: Iterable[dict], file_type: str | None = None) -> int:
    """Write ``raws`` to ``path`` atomically; returns how many were written."""
    with RecordWriter(path, file_type) as w:
        for raw in raws:
            w.write(raw)
    return w.count


def convert_file(
    src: str | Path,
    dst: str | Path,
    to_fmt: str,
    *,
    fmt: str | None = None,
    file_type: str | None = None,
    on_error: str = "fail",
    rejects: RejectsWriter | None = None,
    stats: ReadStats | None = None,
) -> int:
    """Convert every record of ``src`` to format ``to_fmt`` into ``dst`` (atomically); returns records written.

    A record that cannot be converted (e.g. a multi-turn chat to Alpaca) or that ``dst``'s file type
    cannot hold (``UnwritableRecord``, e.g. an integer beyond int64 for parquet) is a bad record like any
    other: named by file and location, and raised or sent to ``rejects`` according to ``on_error``.
    """
    if to_fmt not in FORMATS:
        raise DeitaError(f"unknown format {to_fmt!r} (expected one of {', '.join(FORMATS)})")
    stats = stats if stats is not None else ReadStats()
    with RecordWriter(dst, file_type) as w:
        for rec in iter_records(src, fmt=fmt, on_error=on_error, rejects=rejects, stats=stats):
            cause: Exception
            try:
                out = rec.raw if stats.format == to_fmt else convert_record(rec.raw, stats.format or "", to_fmt)
            except ValueError as e:
                cause, problem = e, str(e)
            else:
                try:
                    w.write(out)
                    continue
                except (
                    UnwritableRecord
                ) as e:  # only this: a failed batch write must not pass as one bad record
                    cause, problem = e, f"cannot write to {w.file_type}: {e}"
            stats.rejected += 1
            if on_error == "fail":
                where = rejects.path if rejects is not None else rejects_path_for(dst)
                raise RecordError(src, rec.location, problem, hint=SKIP_HINT.format(rejects=where)) from cause
            if rejects is not None:
                rejects.add(rec.index, rec.location, problem, rec.raw)
    return w.count
