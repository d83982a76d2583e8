"""Record formats (ShareGPT, Alpaca, chat ``messages``) and file types: detection, turn rules, conversion.

Turns are formed by role (DEITA.md §1), never by position, because a third of real ShareGPT records
start with an assistant message. Problems are raised as ``ValueError(problem sentence)``; the reader
adds the file and record location. Messages are numbered from 1 in problem sentences.
"""

# ruff: noqa: TRY004  (problems are ValueError by contract: the reader turns them into RecordError)
from __future__ import annotations

import difflib
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from deita.errors import DeitaError, quote

from .records import Turn
from .source import inner_name, is_stream

FORMATS = ("sharegpt", "alpaca", "messages")
FILE_TYPES = ("json", "jsonl", "parquet", "dataset")
PAIRINGS = ("role", "positional")

_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
_SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
    "system": "system",
}  # fmt: skip
_MESSAGES_ROLES = {"user": "user", "assistant": "assistant", "system": "system"}


class _Layout(NamedTuple):
    key: str
    role_key: str
    text_key: str
    roles: dict[str, str]
    expected: str
    names: dict[str, str]  # canonical role -> the name this format writes


_LAYOUTS = {
    "sharegpt": _Layout("conversations", "from", "value", _SHAREGPT_ROLES,
                        "human/user, gpt/assistant/chatgpt/bing/bard, system",
                        {"user": "human", "assistant": "gpt", "system": "system"}),
    "messages": _Layout("messages", "role", "content", _MESSAGES_ROLES, "user, assistant, system",
                        {"user": "user", "assistant": "assistant", "system": "system"}),
}  # fmt: skip


class Message(NamedTuple):
    """One message of a sharegpt/messages record, its role made canonical."""

    role: str  # canonical: user / assistant / system
    text: str
    name: str  # the role as written in the record


def json_type(value: Any) -> str:
    """JSON name of a Python value's type, for problem sentences ("null", "number", "array", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def detect_format(raw: dict) -> str:
    """The record's format from its keys: ``conversations`` / ``messages`` / ``instruction``."""
    if not isinstance(raw, dict):
        raise ValueError(f"the record is {json_type(raw)}, expected an object")
    for key, fmt in (("conversations", "sharegpt"), ("messages", "messages"), ("instruction", "alpaca")):
        if key in raw:
            return fmt
    keys = ", ".join(map(repr, list(raw)[:8])) or "none"
    raise ValueError(
        "cannot tell the record format: it has no 'conversations' (ShareGPT), 'messages' (chat) "
        f"or 'instruction' (Alpaca) field (its fields: {keys})"
    )


def file_type_of(path: str | Path) -> str:
    """File type from the suffix; a directory (or a suffix-less new path) is a ``save_to_disk`` dataset."""
    p = Path(path)
    if p.is_dir():
        if any((p / marker).exists() for marker in ("state.json", "dataset_info.json", "dataset_dict.json")):
            return "dataset"
        raise DeitaError(f"{p}: a directory that is not a dataset saved with datasets' save_to_disk")
    name = inner_name(p)  # pool.jsonl.gz reads as pool.jsonl
    file_type = _SUFFIXES.get(name.suffix.lower())
    if file_type and (file_type != "parquet" or name == p):
        return file_type
    if not file_type and is_stream(p):  # <(zcat pool.jsonl.gz): a JSON array or JSON Lines, told by its text
        return "json"
    if not p.suffix and not p.exists():
        return "dataset"
    near = difflib.get_close_matches(p.suffix.lower(), list(_SUFFIXES), n=1)
    hint = f"did you mean '{near[0]}'? " if near else ""
    raise DeitaError(f"{p}: unknown file type {quote(''.join(p.suffixes[-2:]) if name != p else p.suffix)} "
                     f"({hint}expected {', '.join(_SUFFIXES)}, .json.gz, .jsonl.gz, .jsonl.zst or a dataset "
                     "directory)")


def _blank(text: str) -> bool:
    """Empty or whitespace-only, without copying long texts as ``strip()`` would."""
    return not text or text.isspace()


def _check(name: str, value: Any, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{name} is {json_type(value)}, expected a string")
    return value


def checked_messages(raw: dict, fmt: str) -> list[Message]:
    """The validated messages of a sharegpt/messages record."""
    lay = _LAYOUTS[fmt]
    if lay.key not in raw:
        raise ValueError(
            f"missing '{lay.key}' (a {fmt} record holds a list of {{'{lay.role_key}', '{lay.text_key}'}} messages)"
        )
    msgs = raw[lay.key]
    if not isinstance(msgs, list):
        raise ValueError(f"'{lay.key}' is {json_type(msgs)}, expected an array of messages")
    out = []
    for n, m in enumerate(msgs, 1):
        if not isinstance(m, dict):
            raise ValueError(
                f"message {n} is {json_type(m)}, expected an object with '{lay.role_key}' and '{lay.text_key}'"
            )
        for k in (lay.role_key, lay.text_key):
            if k not in m:
                raise ValueError(f"message {n} has no '{k}'")
            _check(f"message {n} '{k}'", m[k])
        name, text = m[lay.role_key], m[lay.text_key]
        role = lay.roles.get(name) or lay.roles.get(name.strip().lower())
        if role is None:
            raise ValueError(f"message {n} has unknown role {quote(name)} (expected {lay.expected})")
        if _blank(text) and role != "system":  # an empty system prompt is harmless: no system
            raise ValueError(f"message {n} ({name}) is empty (whitespace-only '{lay.text_key}')")
        out.append(Message(role, text, name))
    return out


def pair_by_role(msgs: list[Message]) -> tuple[list[Turn], str | None, int]:
    """(turns, leading system text, leading assistant messages skipped): each user message paired with the
    assistant message after it (the full rules; ``parse_turns`` has a one-pass path for common records)."""
    i, system, skipped = 0, None, 0
    if msgs and msgs[0].role == "system":
        system, i = (None if _blank(msgs[0].text) else msgs[0].text), 1
    while i < len(msgs) and msgs[i].role == "assistant":
        skipped, i = skipped + 1, i + 1
    turns = []
    while i < len(msgs):
        m = msgs[i]
        if m.role == "system":
            raise ValueError(
                f"message {i + 1} is a system message inside the conversation (only a leading one is allowed)"
            )
        if m.role == "assistant":
            raise ValueError(
                f"messages {i} and {i + 1} are both from the assistant ({msgs[i - 1].name}, {m.name}): "
                "roles must alternate user/assistant"
            )
        nxt = msgs[i + 1] if i + 1 < len(msgs) else None
        if nxt is not None and nxt.role == "user":
            raise ValueError(
                f"messages {i + 1} and {i + 2} are both from the user ({m.name}, {nxt.name}): "
                "roles must alternate user/assistant"
            )
        if nxt is not None and nxt.role == "assistant":
            turns.append(Turn(m.text, nxt.text))
            i += 2
        else:
            turns.append(Turn(m.text, ""))
            i += 1
    return turns, system, skipped


def _common_turns(msgs: list, lay: _Layout) -> tuple[list[Turn], str | None, int] | None:
    """``pair_by_role(checked_messages(...))`` in one pass for the common record: objects with string roles of
    the exact names, non-blank texts, no system message, optional leading assistant messages, then user
    and assistant alternating. None for anything else (the full checks then find the problem, or the
    alias, system or spacing the common case leaves out). Every record of a large pool passes here."""
    roles = lay.roles
    turns: list[Turn] = []
    pending: str | None = None  # a user message waiting for its answer
    skipped = 0
    try:
        for name, text in map(_FIELDS[lay.key], msgs):  # KeyError, TypeError: not an object with both fields
            if type(name) is not str or type(text) is not str or not text or text.isspace():
                return None
            role = roles.get(name)
            if role == "user" and pending is None:
                pending = text
            elif role == "assistant" and pending is not None:
                turns.append(_turn((pending, text)))
                pending = None
            elif role == "assistant" and not turns:
                skipped += 1
            else:
                return None
    except (KeyError, TypeError, IndexError):
        return None
    if pending is not None:
        turns.append(_turn((pending, "")))
    return (turns, None, skipped) if turns else None


_FIELDS = {lay.key: itemgetter(lay.role_key, lay.text_key) for lay in _LAYOUTS.values()}
_turn = partial(tuple.__new__, Turn)  # Turn(a, b) without the Python-level __new__ of a named tuple


def parse_turns(raw: dict, fmt: str, pairing: str = "role") -> tuple[list[Turn], str | None, int]:
    """(turns, leading system text, leading assistant messages skipped) of a record in format ``fmt``.

    ``pairing="positional"`` pairs message 0 with 1, 2 with 3, ... ignoring roles, as the reference
    toolkit did; use it only to reproduce published scores.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {pairing!r} (expected one of {', '.join(PAIRINGS)})")
    if fmt == "alpaca":
        if "instruction" not in raw:
            raise ValueError(
                "missing 'instruction' (an Alpaca record holds 'instruction', 'input', 'output')"
            )
        instruction = _check("'instruction'", raw["instruction"])
        extra = _check("'input'", raw.get("input"), "")
        output = _check("'output'", raw.get("output"), "")
        if _blank(instruction):
            raise ValueError("'instruction' is empty (whitespace-only)")
        return [Turn(instruction + "\n" + extra if extra else instruction, output)], None, 0
    if pairing == "role":
        lay = _LAYOUTS[fmt]
        msgs = raw.get(lay.key) if type(raw) is dict else None
        if type(msgs) is list and (common := _common_turns(msgs, lay)) is not None:
            return common
    msgs = checked_messages(raw, fmt)
    if pairing == "positional":
        turns = [
            Turn(msgs[i].text, msgs[i + 1].text if i + 1 < len(msgs) else "") for i in range(0, len(msgs), 2)
        ]
        system, skipped = None, 0
    else:
        turns, system, skipped = pair_by_role(msgs)
    if not turns:
        raise ValueError("no turns: the conversation has no user message")
    return turns, system, skipped


def _splice(raw: dict, remove: tuple[str, ...], new: dict) -> dict:
    """``raw`` without the ``remove`` keys and with ``new`` placed where the first removed key was."""
    out: dict = {}
    for k, v in raw.items():
        if k in remove:
            if new:
                out.update(new)
                new = {}
        else:
            out[k] = v
    out.update(new)
    return out


def convert_record(raw: dict, src: str, dst: str) -> dict:
    """``raw`` converted from format ``src`` to ``dst``, keeping every other field (and its position)."""
    for fmt in (src, dst):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if src == dst:
        return dict(raw)
    if dst == "alpaca":
        turns, system, skipped = parse_turns(raw, src)
        if skipped:
            raise ValueError(
                f"record starts with {skipped} assistant message(s) with no instruction; Alpaca cannot hold them"
            )
        if len(turns) != 1:
            raise ValueError(f"record has {len(turns)} turns; Alpaca holds one instruction/response pair")
        new = {"instruction": turns[0].instruction, "input": "", "output": turns[0].response}
        if system is not None:
            new["system"] = system
        return _splice(
            raw, (_LAYOUTS[src].key, "system") if system is not None else (_LAYOUTS[src].key,), new
        )
    lay = _LAYOUTS[dst]
    if src == "alpaca":
        (turn,), _, _ = parse_turns(raw, "alpaca")
        system = raw.get("system")
        has_system = isinstance(system, str) and not _blank(system)  # set by an earlier conversion
        msgs = [("system", system)] if has_system else []
        msgs.append(("user", turn.instruction))
        if turn.response:
            msgs.append(("assistant", turn.response))
        conv = [{lay.role_key: lay.names[role], lay.text_key: text} for role, text in msgs]
        drop = ("instruction", "input", "output") + (("system",) if has_system else ())
        return _splice(raw, drop, {lay.key: conv})
    src_lay = _LAYOUTS[src]
    conv = []
    for m, original in zip(checked_messages(raw, src), raw[src_lay.key], strict=True):
        rest = {k: v for k, v in original.items() if k not in (src_lay.role_key, src_lay.text_key)}
        conv.append({lay.role_key: lay.names[m.role], lay.text_key: m.text, **rest})
    return _splice(raw, (src_lay.key,), {lay.key: conv})



def role_messages(raw: dict, fmt: str) -> list[tuple[str, str]]:
    """Every message of a record the reader accepted, as (canonical role, text), in order: the system message
    (unless blank) and a split chat's leading assistant messages included, which turns leave out. Alpaca
    gives the user turn (instruction and input, as in its turn) and the output when there is one.

    The record is not checked again (``parse_turns`` did that when it was read), so this is cheap."""
    if fmt == "alpaca":
        (turn,), _, _ = parse_turns(raw, "alpaca")
        system = raw.get("system")
        msgs = [("system", system)] if isinstance(system, str) and not _blank(system) else []
        msgs.append(("user", turn.instruction))
        return msgs + ([("assistant", turn.response)] if turn.response else [])
    lay = _LAYOUTS[fmt]
    out = []
    for m in raw[lay.key]:
        name, text = m[lay.role_key], m[lay.text_key]
        role = lay.roles.get(name) or lay.roles[name.strip().lower()]
        if role != "system" or not _blank(text):
            out.append((role, text))
    return out
