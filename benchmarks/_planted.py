"""Near-copies of real records, for calibrating a diversity threshold: light edits, a changed name, a
reordered list. Each copy changes the text a little, as a re-shared or lightly edited chat would."""

from __future__ import annotations

import copy
import random
import re

KINDS = ("light edits", "changed name", "reordered list")
_NAME = re.compile(r"\b[A-Z][a-z]{2,}\b")
_LIST_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_NAMES = ["Alice", "Bob", "Carlos", "Dana", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas"]


def _messages(record: dict) -> list[dict]:
    return [m for m in record.get("conversations", []) if isinstance(m, dict) and isinstance(m.get("value"), str)]


def light_edits(record: dict, rng: random.Random, rate: float = 0.03) -> bool:
    """Typos, dropped and doubled words in about `rate` of the words of every message."""
    changed = False
    for message in _messages(record):
        words = message["value"].split(" ")
        out = []
        for word in words:
            r = rng.random()
            if r < rate / 3 and len(word) > 3:
                k = rng.randrange(len(word) - 1)
                out.append(word[:k] + word[k + 1] + word[k] + word[k + 2:])  # swapped letters
            elif r < 2 * rate / 3:
                continue  # dropped
            elif r < rate:
                out += [word, word]  # doubled
            else:
                out.append(word)
                continue
            changed = True
        message["value"] = " ".join(out)
    return changed


def changed_name(record: dict, rng: random.Random) -> bool:
    """Every occurrence of one capitalised word (a name, a product, a place) replaced by another name."""
    text = " ".join(m["value"] for m in _messages(record))
    candidates = sorted({w for w in _NAME.findall(text)} - {"The", "This", "That", "What", "How", "Here", "You",
                                                             "Yes", "For", "And", "But", "There", "These", "Can"})
    if not candidates:
        return False
    old = rng.choice(candidates)
    new = rng.choice([n for n in _NAMES if n != old])
    pattern = re.compile(rf"\b{re.escape(old)}\b")
    for message in _messages(record):
        message["value"] = pattern.sub(new, message["value"])
    return True


def reordered_list(record: dict, rng: random.Random) -> bool:
    """The items of the longest list (consecutive list lines) of a message shuffled; without a list, the
    paragraphs of the longest message."""
    best = None
    for message in _messages(record):
        lines = message["value"].split("\n")
        start = None
        for i, line in enumerate([*lines, ""]):
            if _LIST_LINE.match(line):
                start = i if start is None else start
            elif start is not None:
                if i - start >= 3 and (best is None or i - start > best[2] - best[1]):
                    best = (message, start, i)
                start = None
    if best is not None:
        message, start, end = best
        lines = message["value"].split("\n")
        items = lines[start:end]
        while items == lines[start:end]:
            rng.shuffle(items)
        message["value"] = "\n".join(lines[:start] + items + lines[end:])
        return True
    messages = sorted(_messages(record), key=lambda m: len(m["value"]), reverse=True)
    if not messages:
        return False
    paragraphs = messages[0]["value"].split("\n\n")
    if len(paragraphs) < 3:
        return False
    shuffled = paragraphs[:]
    while shuffled == paragraphs:
        rng.shuffle(shuffled)
    messages[0]["value"] = "\n\n".join(shuffled)
    return True


EDITS = {"light edits": light_edits, "changed name": changed_name, "reordered list": reordered_list}


def plant(records: list[dict], count: int, seed: int = 0) -> list[tuple[int, str, dict]]:
    """(index of the original, kind of edit, the near-copy) for `count` records, kinds in turn; a record
    the edit cannot change (no name, no list) is passed over."""
    rng = random.Random(seed)
    order = list(range(len(records)))
    rng.shuffle(order)
    planted: list[tuple[int, str, dict]] = []
    for index in order:
        if len(planted) == count:
            break
        kind = KINDS[len(planted) % len(KINDS)]
        near = copy.deepcopy(records[index])
        if EDITS[kind](near, rng) and near != records[index]:
            near["id"] = f"{records[index].get('id', index)}-near-copy"
            planted.append((index, kind, near))
    return planted
