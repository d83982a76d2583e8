"""The routes: the page, /v1/score, /v1/embeddings (OpenAI format), /v1/neighbors, /v1/info, /healthz, /metrics.

Bodies are parsed here rather than by the framework, so that malformed JSON gets 400 (whatever the
Content-Type, as `curl -d` sends it) and a wrong schema 422 naming the field; the request models still
document every route at /docs.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from deita import __version__
from deita.data.checks import SLOW, STRICT_DECODER, fast_loads
from deita.runtime.stage import RecordProblem, check_text
from deita.serve.answers import error_body, json_bytes
from deita.serve.batching import QueueFull
from deita.serve.guards import Guards
from deita.serve.records import RecordFailure, parse_record
from deita.serve.schemas import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    InfoResponse,
    NeighborsRequest,
    NeighborsResponse,
    ScoreRequest,
    ScoreResponse,
    request_body,
    validation_answer,
)
from deita.serve.service import Service

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than 200: status, kind, reason, the field it concerns, extra headers."""

    def __init__(self, status: int, kind: str, reason: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.kind, self.reason, self.field, self.headers = status, kind, reason, field, headers


def answer(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(value), status_code=status, media_type="application/json", headers=headers)


async def read_json(request: Request) -> Any:
    """The body as JSON; 400 when it is empty, malformed or holds a key twice in one object (lone surrogates
    pass, to be a record's problem)."""
    body = await request.body()
    if not body.strip():
        raise ApiError(400, "json", "the request body is empty; send a JSON object")
    value = fast_loads(body)
    if value is not SLOW:
        return value
    try:
        return STRICT_DECODER.decode(body.decode("utf-8", errors="surrogatepass"))
    except (ValueError, RecursionError) as err:
        raise ApiError(400, "json", f"malformed JSON: {err}") from None


def check_count(items: list[Any], field: str, limit: int) -> None:
    if len(items) > limit:
        raise ApiError(413, "too_many", f"{field}: {len(items):,} items; at most {limit:,} per request "
                       "(--max-records)", field)


def page() -> str:
    return resources.files("deita.serve").joinpath("page.html").read_text(encoding="utf-8")


def build_app(service: Service) -> Guards:
    """The ASGI app: the routes inside the guards (metrics, key, body bound)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.batcher.start()
        yield
        await service.batcher.stop()

    app = FastAPI(title="deita serve", version=__version__, lifespan=lifespan, redoc_url=None,
                  description="Deita's scorers, embedder and a finished selection behind HTTP.")
    add_error_handlers(app)

    @app.get("/", response_class=HTMLResponse, summary="The page: paste a record, see why it would be picked")
    async def index() -> HTMLResponse:
        return HTMLResponse(page())

    @app.get("/healthz", summary="Liveness: the models are loaded")
    async def healthz() -> Response:
        return answer({"status": "ok"})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        service.metrics.queue.set(service.batcher.waiting)
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    @app.get("/v1/info", response_model=InfoResponse, summary="Models, config and the loaded selection")
    async def info() -> Response:
        return answer(service.info())

    @app.get("/v1/models", summary="The embedding model, in OpenAI's list format")
    async def models() -> Response:
        return answer({"object": "list", "data": [{"id": service.embed_model, "object": "model",
                                                   "owned_by": "deita"}]})

    @app.post("/v1/score", responses={200: {"model": ScoreResponse}}, openapi_extra=request_body(ScoreRequest),
              summary="Per-turn scores and the record score of each record")
    async def score(request: Request) -> Response:
        body = ScoreRequest.model_validate(await read_json(request))
        check_count(body.records, "records", service.serve.max_records)
        results = await serve_records(service, body.records, embed=False, k=0, include_turns=body.include_turns)
        return answer({"results": results, "aggregation": service.aggregation, "score_keys": list(service.keys)})

    @app.post("/v1/neighbors", responses={200: {"model": NeighborsResponse}},
              openapi_extra=request_body(NeighborsRequest),
              summary="Nearest records of the loaded pool, and whether the filter would skip the record")
    async def neighbors(request: Request) -> Response:
        body = NeighborsRequest.model_validate(await read_json(request))
        check_count(body.records, "records", service.serve.max_records)
        if service.pool is None:
            raise ApiError(409, "no_pool", "no pool is loaded: start the service with --selection OUTPUT (a "
                           "finished `deita select` run)")
        if body.k > service.serve.max_neighbors:
            raise ApiError(422, "schema", f"k: {body.k} is more than --max-neighbors {service.serve.max_neighbors}",
                           "k")
        results = await serve_records(service, body.records, embed=True, k=body.k, include_turns=body.include_turns)
        return answer({"results": results, "threshold": service.pool.threshold, "aggregation": service.aggregation})

    @app.post("/v1/embeddings", responses={200: {"model": EmbeddingsResponse}},
              openapi_extra=request_body(EmbeddingsRequest), summary="Embeddings, in OpenAI's format")
    async def embeddings(request: Request) -> Response:
        body = EmbeddingsRequest.model_validate(await read_json(request))
        texts = [body.input] if isinstance(body.input, str) else body.input
        check_count(texts, "input", service.serve.max_records)
        check_embedding_request(service, body, texts)
        results = await submit(service, [service.text_job(text) for text in texts])
        for index, result in enumerate(results):
            if result.failure is not None:
                raise ApiError(500, result.failure.kind, f"input[{index}]: {result.failure.reason}")
        data = [{"object": "embedding", "index": index, "embedding": encode_vector(result.vector, body.encoding_format)}
                for index, result in enumerate(results)]
        tokens = sum(result.tokens for result in results)
        return answer({"object": "list", "data": data, "model": body.model or service.embed_model,
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    return Guards(app, service.metrics, {route.path for route in app.routes}, service.api_key,
                  service.serve.max_body_bytes)


def check_embedding_request(service: Service, body: EmbeddingsRequest, texts: list[str]) -> None:
    if not texts:
        raise ApiError(422, "schema", "input: empty list; send a string or a list of strings", "input")
    if body.model is not None and not service.serves_model(body.model):
        raise ApiError(404, "model_not_found", f"model: '{body.model}' is not served here; this service embeds with "
                       f"'{service.embed_model}'", "model")
    if body.dimensions is not None and body.dimensions != service.dimensions:
        raise ApiError(422, "schema", f"dimensions: this model gives {service.dimensions} dimensions, not "
                       f"{body.dimensions}", "dimensions")
    for index, text in enumerate(texts):
        if not text:
            raise ApiError(422, "schema", f"input[{index}]: empty string", "input")
        try:
            check_text(text, f"input[{index}]")
        except RecordProblem as problem:
            raise ApiError(422, "encoding", str(problem), "input") from None


def encode_vector(vector: np.ndarray, encoding: str) -> list[float] | str:
    """A vector as OpenAI sends it: a list of floats, or base64 of little-endian float32."""
    vector = np.asarray(vector, dtype="<f4")
    return base64.b64encode(vector.tobytes()).decode("ascii") if encoding == "base64" else vector.tolist()


async def submit(service: Service, jobs: list) -> list:
    try:
        return await service.batcher.submit(jobs)
    except QueueFull as full:
        raise ApiError(503, "busy", f"the service is busy: {full}", headers={"Retry-After": str(full.retry_after)}) \
            from None


async def serve_records(service: Service, records: list[Any], embed: bool, k: int,
                        include_turns: bool) -> list[dict[str, Any]]:
    """Each record's answer (or error) in its slot: parsed, checked, run through the batcher together."""
    slots: list[Any] = []
    for index, raw in enumerate(records):
        parsed = parse_record(raw, index, service.config.run.pairing)
        slots.append(parsed if isinstance(parsed, RecordFailure) else service.engine.job(parsed, True, embed))
    jobs = [slot for slot in slots if not isinstance(slot, RecordFailure)]
    for job in jobs:
        job.neighbors = k
    results = iter(await submit(service, jobs))
    answers = []
    for slot in slots:
        if isinstance(slot, RecordFailure):
            answers.append(service.failed(slot))
            continue
        result = next(results)
        answers.append(service.failed(result.failure) if result.failure is not None
                       else service.describe(slot, result, include_turns))
    return answers


def add_error_handlers(app: FastAPI) -> None:
    """Every error is the JSON error shape, never a traceback; unexpected ones are logged with theirs."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> Response:
        return answer(error_body(err.kind, err.reason, err.field), err.status, err.headers)

    @app.exception_handler(ValidationError)
    async def schema_error(request: Request, err: ValidationError) -> Response:
        field, reason = validation_answer(err)
        return answer(error_body("schema", reason, field), 422)

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, err: RequestValidationError) -> Response:
        return answer(error_body("schema", "; ".join(str(e.get("msg")) for e in err.errors())), 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> Response:
        kinds = {404: "not_found", 405: "method_not_allowed"}
        reason = f"no route {request.method} {request.url.path}" if err.status_code in kinds else str(err.detail)
        return answer(error_body(kinds.get(err.status_code, "http"), reason), err.status_code, err.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return answer(error_body("internal", f"internal error ({type(err).__name__}); see the server log"), 500)
