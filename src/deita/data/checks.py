"""What makes a decoded JSON value a bad record, and when the fast parse must defer to the stdlib.

A record is bad when it is nested deeper than ``MAX_NESTING`` levels (deeper records break the recursion
limits of JSON encoders and parquet writers later on), when it holds a lone surrogate escape such as
``"\\ud800"`` (valid JSON syntax, but not Unicode text: writing UTF-8 or tokenizing it fails later), or when
one of its objects holds a key twice (a parser would keep the last value and drop the first without a word).
For parquet, integers must fit int64 and the schema must stay within what pyarrow reads back.

jiter parses on the hot paths and refuses duplicate keys as it builds each object (keys compared after
their escapes are decoded: ``"\\u0072ole"`` is ``"role"``); the stdlib ``json`` decides everything jiter
refuses (bad syntax, NaN, a lone surrogate escape, a duplicate key, nesting too deep), with the message and
rules the rejects keep.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jiter

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in decoded text: json joins valid pairs, so these are lone
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # in raw JSON text: the only way to write one
MAX_NESTING = 200
"""Records nested deeper than this many levels of objects/arrays are bad records (a ShareGPT record has 3)."""
_INT64 = (-(2**63), 2**63 - 1)
PARQUET_MAX_SCHEMA_DEPTH = 100
"""pyarrow's parquet reader refuses deeper schemas; a list takes two levels, an object one (root: 1)."""

SLOW = object()
"""``fast_loads``'s answer when the stdlib path must read the record."""


CHECK_DUPLICATE_KEYS = True
"""Refuse duplicate keys on the fast path (benchmarks/io.py turns it off to time what the check costs)."""


class DuplicateKey(ValueError):
    """An object of a record holds one key twice; JSON parsers keep the last value and drop the first."""


def _pairs_once(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook`` of the stdlib path: a dict, or ``DuplicateKey`` naming the key."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                break
            seen.add(key)
        raise DuplicateKey(f"duplicate key {key!r} in one object (a JSON parser would keep only its last value "
                           "and drop the first without a word; keep one)")
    return value


STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_once)
"""The stdlib decoder every slow path uses: it refuses duplicate keys (``DuplicateKey``)."""


def _jiter_parses(depth: int) -> bool:
    try:
        jiter.from_json(b"[" * depth + b"]" * depth)
    except ValueError:
        return False
    return True


_JITER_DEPTH_GUARD = _jiter_parses(MAX_NESTING + 1) and not _jiter_parses(MAX_NESTING + 2)
"""jiter refuses values nested deeper than 201 levels; with the record wrapped in one array (see ``fast_loads``),
that is exactly the records deeper than ``MAX_NESTING``. A jiter with another limit makes ``fast_loads`` count
brackets instead."""


def fast_loads(data: bytes) -> Any:
    """jiter's value of one record's UTF-8 text, or ``SLOW`` where the stdlib path must decide: jiter refuses
    it (syntax, NaN, lone surrogates, an integer of more than 4300 digits, a key twice in one object, nesting
    deeper than ``MAX_NESTING``).

    The text is parsed as the one element of an array: the extra level turns jiter's depth limit into
    ``MAX_NESTING`` (``_JITER_DEPTH_GUARD``), and a text that is not one JSON value (``1, 2``) gives another
    count of elements. jiter keeps integers beyond 64 bits exact, as the stdlib does."""
    try:
        wrapped = jiter.from_json(b"".join((b"[", data, b"]")), allow_inf_nan=False, cache_mode="keys",
                                  catch_duplicate_keys=CHECK_DUPLICATE_KEYS)
    except ValueError:
        return SLOW
    if len(wrapped) != 1 or (not _JITER_DEPTH_GUARD and data.count(b"{") + data.count(b"[") > MAX_NESTING):
        return SLOW
    return wrapped[0]


def _field(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def value_problem(value: Any, *, surrogates: bool = False, parquet: bool = False) -> str | None:
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
                    return surrogate_problem(
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
                return surrogate_problem(bad.group(), path or "the record")
        elif parquet and isinstance(v, int) and not isinstance(v, bool) and not _INT64[0] <= v <= _INT64[1]:
            shown = str(v) if v.bit_length() < 256 else f"of about {int(v.bit_length() * 0.30103)} digits"
            return (
                f"integer {shown} in {path or 'the record'} is outside the 64-bit range parquet can hold "
                "(write .jsonl or .json to keep it)"
            )
    return None


def surrogate_problem(char: str, where: str) -> str:
    return f"text is not valid Unicode: lone surrogate \\u{ord(char):04x} in {where}"


def text_problem(text: str, value: Any, start: int = 0, end: int | None = None) -> str | None:
    """Problems of a record decoded from ``text[start:end]``; walks the value only when the raw text could
    hold one (a surrogate escape, or more brackets than ``MAX_NESTING``), so typical records cost two counts."""
    end = len(text) if end is None else end
    surrogates = _SURROGATE_ESCAPE.search(text, start, end) is not None
    if not surrogates and text.count("{", start, end) + text.count("[", start, end) <= MAX_NESTING:
        return None
    return value_problem(value, surrogates=surrogates)


TOO_DEEP = f"nested deeper than the JSON parser allows; records are limited to {MAX_NESTING} levels of objects/arrays"


def syntax_message(e: json.JSONDecodeError) -> str:
    """The error's message without the trailing "at" some have ("Invalid control character at")."""
    return e.msg.removesuffix(" at")


def decode_problem(e: Exception) -> str:
    """A problem sentence for an exception of ``json.loads`` other than a syntax error."""
    if isinstance(e, RecursionError):
        return TOO_DEEP
    if isinstance(e, DuplicateKey):
        return str(e)
    return f"invalid JSON: {e}"  # e.g. an integer of more than 4300 digits
