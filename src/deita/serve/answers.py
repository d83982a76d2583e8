"""The shape of every error the service answers: `{"error": {"kind", "reason", "message"[, "field"]}}`.

`kind` and `reason` are what a record's slot holds too; `message` repeats the reason where OpenAI-style
clients look for it. No traceback ever goes into a body: the server log has it.
"""

from __future__ import annotations

from typing import Any

import orjson


def error_body(kind: str, reason: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"kind": kind, "reason": reason, "message": reason}
    if field is not None:
        error["field"] = field
    return {"error": error}


def json_bytes(value: Any) -> bytes:
    """JSON of an answer (numpy floats and arrays included)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
