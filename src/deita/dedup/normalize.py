"""The text that dedup and decontamination compare: which messages of a record, and how they are normalised.

Normalising is NFKC, then casefold, then every run of whitespace collapsed to one space, so variants that
differ only in Unicode normal form, case or spacing become the same text. Exact dedup hashes that text.
Near dedup and decontamination read *words*: the normalised text with punctuation (Unicode category P)
turned into spaces, so a changed comma or quote does not break an n-gram.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence

import regex

from deita.data.formats import role_messages
from deita.data.records import Record

FIELDS = ("all", "instruction")
"""all: every message of a record with its role; instruction: the first instruction only."""
FIELD_HELP = "all: every message, by role; instruction: the first instruction only."

_PUNCTUATION = regex.compile(r"\p{P}+")


def normalize(text: str) -> str:
    """NFKC, casefold, whitespace collapsed to single spaces (and stripped)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


_ASCII_PUNCTUATION = str.maketrans(dict.fromkeys("!\"#%&'()*,-./:;?@[\\]_{}", " "))
"""The ASCII characters of Unicode category P, as spaces (str.translate's fast ASCII path)."""


def words_text(normalized: str) -> str:
    """A normalised text with its punctuation turned into spaces: `.split()` gives its words."""
    if normalized.isascii():
        return normalized.translate(_ASCII_PUNCTUATION)
    return _PUNCTUATION.sub(" ", normalized)


def words(text: str) -> list[str]:
    """The words of a raw text: normalised, split at whitespace and punctuation (Unicode category P).
    What n-grams and shingles are made of."""
    return words_text(normalize(text)).split()


def field_messages(record: Record, fmt: str, field: str) -> list[tuple[str, str]]:
    """(role, raw text) of the messages `field` compares: every message (system and a split chat's leading
    assistant messages included), or the first instruction alone."""
    if field == "instruction":
        return [("user", record.turns[0].instruction)]
    return role_messages(record.raw, fmt)


def compared_texts(messages: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """(exact text, shingle text) of the same messages, normalising each message once: the text exact dedup
    hashes (one `role: text` line per message) and the words near dedup shingles (each message's words after
    its role's name, on one line)."""
    normalized = [(role, normalize(text)) for role, text in messages]
    return ("\n".join(f"{role}: {text}" for role, text in normalized),
            " ".join(f"{role} {words_text(text)}" for role, text in normalized))


def text_key(text: str) -> bytes:
    """A 128-bit hash of a text (collisions among 10⁹ records: about 10⁻²¹)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
