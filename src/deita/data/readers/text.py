"""A JSON file's text, decoded chunk by chunk, with a jiter fast path for well-laid-out array elements."""

from __future__ import annotations

import codecs
import json
import re
from typing import IO, Any

from deita.data.checks import SLOW, STRICT_DECODER, fast_loads

_CHUNK = 1 << 20
_WS = re.compile(r"[ \t\n\r]*")
_FAST_SPAN = 1 << 20  # characters the jiter path may look ahead for an element's end
_FAST_MISSES = 16  # elements in a row the layout fails to delimit before the jiter path gives up on a file
_KEEP_LINE = 1024  # consumed characters of the current line the buffer keeps, for its indentation


class TextBuffer:
    """Text of a binary file decoded chunk by chunk; ``buf[pos:]`` is the unread part."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.buf, self.pos, self.eof = f, "", 0, False
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.json = STRICT_DECODER  # refuses duplicate keys
        self.lines_before = 0  # newlines in the text already dropped from buf
        self.bytes_read = 0  # bytes of the file read into buf so far
        self.fast = True  # elements laid out one per line or pretty-printed: jiter may read them
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
        """The element at pos through jiter (``fast_loads``), where the file's layout shows its end: an element on one line
        (``{...},``), or a pretty-printed one whose closing bracket starts a line at the opening line's
        indentation. None where that fails (then ``decode`` decides, with the stdlib's rules and messages).
        jiter parses the whole candidate text as one value or nothing, so a wrong candidate can only fail, never
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
            if value is not SLOW:
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
        return None if value is SLOW else (value, end)

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
            return SLOW
        return fast_loads(data)

    def line_of(self, pos: int) -> int:
        return self.lines_before + self.buf.count("\n", 0, pos) + 1

    def indent_at(self, pos: int) -> int:
        """Leading whitespace of the line holding ``pos`` (as far as the buffer still holds that line)."""
        line = self.buf[self.buf.rfind("\n", 0, pos) + 1 : pos]
        return len(line) - len(line.lstrip(" \t"))
