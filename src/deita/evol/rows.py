"""The EVOLVED and RANKED files: JSON Lines, one seed per line (docs/evol.md has the full description).

EVOLVED (`deita evol`)::

    {"index": 0, "id": "a17", "type": "complexity", "instruction": "<seed instruction>",
     "operations": ["add_constraint", ...], "variants": ["<seed>", "<evolution 1>", ...],
     "usage": {"calls": 5, "prompt_tokens": ..., ...}}

`index` is the seed's 0-based position in SEEDS, `id` its `id` field (when it has one). For complexity
the variants are instructions (the first is the seed's); for quality they are responses to
`instruction` (the first is the seed's `response`, which is also kept). RANKED (`deita rank`) is each
EVOLVED row plus `order` (the variant shown at each position), `scores` (one per variant, in variant
order, 1..len(variants)) and `rank_usage`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deita.errors import DeitaError, quote
from deita.scoring.templates import SCORE_TYPES

MIN_VARIANTS, MAX_VARIANTS = 2, 6

# (index, location, row or raw text, problem or None)
Row = tuple[int, str, Any, str | None]


def iter_rows(path: str | Path, position: list[int] | None = None) -> Iterator[Row]:
    """Every non-blank line of a JSONL file as (index, "line N", parsed object, None) or, for a line that is
    not a JSON object, (index, "line N", its text, problem). `position[0]` follows the bytes read."""
    path = Path(path)
    if path.suffix.lower() != ".jsonl":
        raise DeitaError(f"{path}: expected a .jsonl file (EVOLVED and RANKED files are JSON Lines)")
    if not path.exists():
        raise DeitaError(f"{path}: no such file or directory")
    index = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if position is not None:
                position[0] += len(line)
            if not line.strip():
                continue
            location = f"line {number}"
            try:
                row = json.loads(line)
            except ValueError as err:
                yield index, location, line.decode("utf-8", "replace").rstrip("\n"), f"invalid JSON ({err})"
            else:
                problem = None if isinstance(row, dict) else f"not a JSON object: {type(row).__name__}"
                yield index, location, row, problem
            index += 1


def _texts(value: Any, name: str) -> str | None:
    if not isinstance(value, list) or not MIN_VARIANTS <= len(value) <= MAX_VARIANTS:
        return f"'{name}' must be a list of {MIN_VARIANTS} to {MAX_VARIANTS} texts"
    for i, text in enumerate(value):
        if not isinstance(text, str) or not text.strip():
            return f"'{name}'[{i}] is not a non-empty text"
    return None


def evolved_problem(row: dict[str, Any], score_type: str | None = None) -> str | None:
    """Why `row` is not an EVOLVED row (of `score_type`, when given), or None."""
    row_type = row.get("type")
    if "type" not in row and "variants" not in row:
        return "not an EVOLVED row (it has no 'type' and 'variants'; `deita evol` writes them)"
    if row_type not in SCORE_TYPES:
        return f"'type' must be one of {', '.join(SCORE_TYPES)}, got {quote(row_type)}"
    if score_type is not None and row_type != score_type:
        return f"a {row_type} row, but --type is {score_type}"
    problem = _texts(row.get("variants"), "variants")
    if problem:
        return problem
    if row_type == "quality" and not (isinstance(row.get("instruction"), str) and row["instruction"].strip()):
        return "a quality row needs the 'instruction' its variants answer"
    return None


def ranked_problem(row: dict[str, Any], score_type: str | None = None) -> str | None:
    """Why `row` is not a RANKED row (of `score_type`, when given), or None."""
    problem = evolved_problem(row, score_type)
    if problem:
        return problem
    scores, count = row.get("scores"), len(row["variants"])
    if not isinstance(scores, list) or len(scores) != count:
        return f"'scores' must be a list of {count} scores, one per variant"
    for i, score in enumerate(scores):
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= count:
            return f"'scores'[{i}] = {quote(score)} is not a whole number from 1 to {count}"
    return None


def evolved_row(index: int, seed_id: Any, score_type: str, instruction: str, response: str,
                operations: list[str], variants: list[str], usage: dict[str, int]) -> dict[str, Any]:
    row: dict[str, Any] = {"index": index}
    if seed_id is not None:
        row["id"] = seed_id
    row.update({"type": score_type, "instruction": instruction})
    if score_type == "quality":
        row["response"] = response
    row.update({"operations": operations, "variants": variants, "usage": usage})
    return row
