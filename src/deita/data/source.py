"""The bytes of an input file, as every reader opens them: decompressed (gzip, zstd), decoded from UTF-16/32
to UTF-8 (by its BOM), streamed once from a pipe, and checked to be unchanged when a command reads it twice.

``open_source(path, stats)`` is the one place an input's bytes are opened. A command that reads a file twice
says so on the first read (``ReadStats(reread=True)``): a pipe is refused at once (it cannot be read twice),
and the read keeps a ``Fingerprint`` (size, mtime_ns and a hash of every byte read). The second read
(``stats.again()``) stops with ``InputChanged`` when the file on disk differs: at once for another size or
mtime, at the end of the file for other bytes. Its writers are atomic, so nothing is written.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from deita.errors import DeitaError

COMPRESSIONS: dict[str, str] = {".gz": "gzip", ".zst": "zstd"}
"""File suffix → compression; inputs are also recognised by their first bytes, whatever their name."""
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
_OTHER_MAGIC = {b"PAR1": "a parquet file (name it .parquet)", b"BZh": "bzip2-compressed data",
                b"\xfd7zXZ\x00": "xz-compressed data", b"PK\x03\x04": "a zip archive",
                b"\x89PNG": "a PNG image", b"%PDF": "a PDF document"}
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_CHUNK = 1 << 20
_BUFFER = 1 << 16  # each layer's buffer; readers ask for 1 MiB chunks, which pass through unbuffered


class InputChanged(DeitaError):
    """The second read of an input found other bytes than the first: the file changed during the run."""


@dataclass(frozen=True)
class Fingerprint:
    """What the first of two reads saw: the file's size and mtime at opening and a hash of its bytes (the
    sha256 of a file's own bytes, as a manifest states it; for a saved dataset, of its files' names and
    stats)."""

    size: int
    mtime_ns: int
    digest: str


def compression_of(path: str | Path) -> str | None:
    """The compression a file name says (``.jsonl.gz`` → gzip), or None."""
    return COMPRESSIONS.get(Path(path).suffix.lower())


def inner_name(path: str | Path) -> Path:
    """The name without its compression suffix: ``pool.jsonl.gz`` → ``pool.jsonl``."""
    p = Path(path)
    return p.with_suffix("") if compression_of(p) else p


def is_stream(path: str | Path) -> bool:
    """A pipe, a socket or a character device (``<(zcat pool.jsonl.gz)``, ``/dev/stdin``): readable once only."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def recoded_head(head: bytes) -> bool:
    """True when a file whose first four bytes are `head` is compressed or not UTF-8 text: the bytes readers
    see are not the file's own, so byte offsets of a read do not address the file (fetch by streaming)."""
    return any(head.startswith(m) for m in _MAGIC) or _bom_encoding(head) is not None


def _bom_encoding(head: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    # no BOM: JSON text starts with "[", "{" or whitespace, so NULs around it tell UTF-16/32 and the byte order
    starts = b"[{ \t\r\n"
    if len(head) >= 4 and head[0] in starts and not any(head[1:4]):
        return "utf-32-le"
    if len(head) >= 4 and not any(head[0:3]) and head[3] in starts:
        return "utf-32-be"
    if len(head) >= 2 and head[0] in starts and not head[1]:
        return "utf-16-le"
    if len(head) >= 2 and not head[0] and head[1] in starts:
        return "utf-16-be"
    return None


def describe_start(head: bytes) -> str:
    """What a file that is not JSON seems to be, from its first bytes, for an error message."""
    for magic, what in _OTHER_MAGIC.items():
        if head.startswith(magic):
            return what
    text = head[:40].decode("utf-8", "replace")
    if text.replace("\n", " ").replace("\r", " ").replace("\t", " ").isprintable():
        return f"text starting {text!r}"
    return f"binary data starting {head[:8].hex(' ')}"


class _Hashing(io.RawIOBase):
    """The file's own bytes, hashed (when a fingerprint is kept or checked) as they are read."""

    def __init__(self, f: IO[bytes], keep_hash: bool, on_end: Callable[[], None]) -> None:
        self.f, self.on_end, self.ended = f, on_end, False
        self.hash = hashlib.sha256() if keep_hash else None
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self.f.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self.bytes += n
            if self.hash is not None:
                self.hash.update(memoryview(buffer)[:n])
        elif not self.ended and len(buffer):
            self.ended = True
            self.on_end()
        return n or 0


class _Chain(io.RawIOBase):
    """``head`` and then the rest of ``f``: the bytes sniffed from a pipe, put back in front."""

    def __init__(self, head: bytes, f: IO[bytes]) -> None:
        self.head, self.f = head, f

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        return self.f.readinto(buffer)  # type: ignore[attr-defined]


class _Utf8(io.RawIOBase):
    """UTF-8 bytes of a text stream in another encoding; a byte that does not decode is a one-line error."""

    def __init__(self, f: IO[bytes], encoding: str, path: Path) -> None:
        self.decoder = codecs.getincrementaldecoder(encoding)("strict")
        self.f, self.encoding, self.path, self.pending, self.offset = f, encoding, path, b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.pending:
            data = self.f.read(_CHUNK)
            try:
                text = self.decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                raise DeitaError(f"{self.path}: not valid {self.encoding.upper()} text (the encoding its byte "
                                 f"order mark or first bytes give) near byte {self.offset + e.start}: {e.reason}"
                                 ) from e
            self.offset += len(data)
            self.pending = text.encode("utf-8", "surrogatepass")
            if not data:
                break
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def _decompressed(f: IO[bytes], compression: str, path: Path) -> IO[bytes]:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=f, mode="rb")
    try:
        import zstandard
    except ImportError as e:  # a dependency; missing only in a broken install
        raise DeitaError(f"{path}: zstd-compressed; reading it needs the zstandard package "
                         "(pip install zstandard)") from e
    return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)  # type: ignore[return-value]


def _head(f: IO[bytes], size: int) -> tuple[bytes, IO[bytes]]:
    """Up to ``size`` first bytes of ``f`` and a stream that still starts with them (a pipe may hand its bytes
    out one at a time, so they are read, not peeked)."""
    head = b""
    while len(head) < size:
        chunk = f.read(size - len(head))
        if not chunk:
            break
        head += chunk
    return head, io.BufferedReader(_Chain(head, f), _BUFFER)  # type: ignore[arg-type]


def check_stat(path: Path, st: os.stat_result, expect: Fingerprint | None) -> None:
    """``InputChanged`` when the file now open (``st``) has another size or mtime than the first read saw."""
    if expect is not None and (st.st_size, st.st_mtime_ns) != (expect.size, expect.mtime_ns):
        raise InputChanged(f"{path} changed during the run (size {expect.size:,} → {st.st_size:,} bytes, or its "
                           "modification time): nothing was written; run again on a file that stays put")


class _Guard:
    """Checks a read against the fingerprint of the first read, and records this read's fingerprint."""

    def __init__(self, path: Path, st: os.stat_result, expect: Fingerprint | None, record: Callable) -> None:
        self.path, self.st, self.expect, self.record = path, st, expect, record
        self.raw: _Hashing | None = None

    def opened(self) -> None:
        check_stat(self.path, self.st, self.expect)

    def ended(self) -> None:
        assert self.raw is not None
        if self.raw.hash is None:
            return
        fingerprint = Fingerprint(self.st.st_size, self.st.st_mtime_ns, self.raw.hash.hexdigest())
        if self.expect is not None and fingerprint != self.expect:
            raise InputChanged(f"{self.path} changed during the run (its bytes differ from the first read): "
                               "nothing was written; run again on a file that stays put")
        self.record(fingerprint)


@contextmanager
def open_source(path: str | Path, *, reread: bool = False, expect: Fingerprint | None = None,
                record: Callable[[Fingerprint], None] = lambda _: None) -> Iterator[IO[bytes]]:
    """The UTF-8 bytes of an input (a buffered reader): decompressed and recoded as needed.

    ``reread``: the caller will read the file again, so a pipe is refused now and the fingerprint of this
    read goes to ``record`` at its end. ``expect``: this is that second read; a different file raises
    ``InputChanged``.
    """
    p = Path(path)
    if (reread or expect is not None) and is_stream(p):
        raise DeitaError(f"{p} is a pipe or device, which can be read only once, and this command reads its "
                         "input twice: write it to a file first (e.g. zcat pool.jsonl.gz > pool.jsonl, or give "
                         "the .gz file itself)")
    with open(p, "rb") as f:
        guard = _Guard(p, os.fstat(f.fileno()), expect, record)
        guard.opened()
        raw = guard.raw = _Hashing(f, reread or expect is not None, guard.ended)
        head, stream = _head(io.BufferedReader(raw, _BUFFER), 4)
        compression = next((c for m, c in _MAGIC.items() if head.startswith(m)), None)
        if compression is not None:
            head, stream = _head(_decompressed(stream, compression, p), 4)
        encoding = _bom_encoding(head)
        if encoding is not None:
            stream.read(next((len(b) for b, e in _BOMS if e == encoding and head.startswith(b)), 0))
            stream = io.BufferedReader(_Utf8(stream, encoding, p), _BUFFER)  # type: ignore[arg-type]
        yield stream
        if raw.hash is not None and not raw.ended:  # a reader that stopped early: the rest counts too
            while raw.read(_CHUNK):
                pass


def folder_fingerprint(path: Path, expect: Fingerprint | None = None) -> Fingerprint:
    """A saved dataset's fingerprint from its files' names, sizes and mtimes (arrow files are rewritten
    whole, never edited in place); ``InputChanged`` when it differs from ``expect``."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    digest = hashlib.blake2b(repr(stats).encode(), digest_size=16).hexdigest()
    fingerprint = Fingerprint(sum(s for _, s, _ in stats), max((m for _, _, m in stats), default=0), digest)
    if expect is not None and fingerprint != expect:
        raise InputChanged(f"{path} changed during the run (its files differ from the first read): nothing was "
                           "written; run again on a dataset that stays put")
    return fingerprint


def first_byte(stream: IO[bytes]) -> tuple[bytes, int, IO[bytes]]:
    """The first non-whitespace byte of ``stream`` (b"" when empty), its line number, and a stream that still
    starts at the beginning: what was read to find it is put back in front, so a pipe can be sniffed too."""
    seen = b""
    while True:
        chunk = stream.read(_BUFFER)
        seen += chunk
        text = seen.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n")
        if text or not chunk:
            line = seen.count(b"\n", 0, len(seen) - len(text)) + 1
            return text[:1], line, io.BufferedReader(_Chain(seen, stream), _BUFFER)  # type: ignore[arg-type]
