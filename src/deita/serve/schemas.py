"""Request and response models: they check request bodies (strictly: no coercion, no unknown fields) and
document every route at /docs."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

RECORDS_HELP = ("ShareGPT ({'conversations': [...]}), chat messages ({'messages': [...]}), Alpaca "
                "({'instruction', 'input', 'output'}) or plain {'question', 'answer'} records; the format is "
                "detected per record.")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ScoreRequest(Strict):
    records: list[Any] = Field(description=RECORDS_HELP)
    include_turns: bool = Field(False, description="Also return each record's turns as the scorers read them.")


class NeighborsRequest(ScoreRequest):
    k: int = Field(5, ge=1, description="Neighbours per record (at most --max-neighbors).")


class EmbeddingsRequest(Strict):
    input: str | list[str] = Field(description="A text or a list of texts (token arrays are not accepted).")
    model: str | None = Field(None, description="The served embedding model's id (GET /v1/models), or left out.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description="Must equal the model's dimensions when given.")
    user: str | None = None


class ErrorDetail(BaseModel):
    kind: str
    reason: str


class RecordScores(BaseModel):
    """One record's slot: per-turn lists by field (complexity_scores and quality_scores, or the offline
    preset's instruction_lengths and response_lengths), the record score, and its rank against the pool."""

    model_config = ConfigDict(extra="allow")
    score: float | None = None
    rank_percentile: float | None = Field(None, description="% of the loaded pool scoring lower (ties count half).")
    rank: int | None = None
    error: ErrorDetail | None = None


class ScoreResponse(BaseModel):
    results: list[RecordScores]
    aggregation: str
    score_keys: list[str]


class Neighbor(BaseModel):
    ordinal: int
    cosine: float
    score: float
    selected: bool
    turns: list[dict[str, str]]


class RecordNeighbors(RecordScores):
    neighbors: list[Neighbor] = []
    near_duplicate: Neighbor | None = Field(None, description="The selected record, ranked at or above this one, "
                                            "whose cosine is over the threshold: the filter would skip this record.")


class NeighborsResponse(BaseModel):
    results: list[RecordNeighbors]
    threshold: float
    aggregation: str


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: dict[str, int]


class InfoResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: str
    models: list[dict[str, str]]
    config: dict[str, Any]
    selection: dict[str, Any] | None


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body the route parses itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


UNION_HINTS = {"input": "expected a string or a list of strings"}


def validation_answer(err: ValidationError) -> tuple[str, str]:
    """(field, reason) of the first problem, the field written as in the body (`records`, `input[2]`); an
    unknown field comes first, with the missing one it may be a typo of."""
    errors = err.errors()
    missing = [str(e["loc"][0]) for e in errors if e["type"] == "missing" and e["loc"]]
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    problem = unknown[0] if unknown else errors[0]
    location = list(problem["loc"])
    if not location:
        return "body", "the body must be a JSON object"
    top = str(location[0])
    path = top + "".join(f"[{part}]" for part in location[1:] if isinstance(part, int))
    if problem["type"] == "extra_forbidden":
        near = difflib.get_close_matches(top, missing, n=1)
        return path, f"{path}: unknown field" + (f" (did you mean '{near[0]}'?)" if near else "")
    if problem["type"] == "missing":
        return path, f"{path}: required field missing"
    if top in UNION_HINTS and len(errors) > 1:
        return top, f"{top}: {UNION_HINTS[top]}"
    return path, f"{path}: {problem['msg']}"
