"""A misbehaving OpenAI-compatible server on a real socket: one behaviour per path, `http://HOST/<behaviour>/v1`.

`/completions` (scoring) answers one digit position's top log-probs; `/chat/completions` (evol, rank) solves
the EVOL tests' synthetic task (`chat_server`). Behaviours:

- ok: honest answers.
- nan, neg-inf, null, string: digit "2" (all digits for neg-inf) has that log-prob (NaN, -Infinity, null, "abc").
- no-logprobs: `logprobs: null`.
- missing: digits 5 and 6 are not in the top log-probs (renormalised away, and counted).
- nan-marked: NaN only for prompts holding MARK, honest otherwise.
- drip: headers at once, then the body one byte every DRIP_SECONDS (never trips a per-read timeout).
- stuck: no answer at all for STUCK_SECONDS.
- empty: chat answers with empty content.
- 500: HTTP 500 to everything; 500-marked: only to requests holding MARK.
- auth: 401 unless `Authorization: Bearer <SECRET>`.

Every request's path, body and Authorization header is recorded.
"""

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from chat_server import evolve_text, task_of, true_scores
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

MARK = "POISON"
SECRET = "sk-faulty-s3cret/with#reserved?chars"
DRIP_SECONDS = 0.2
STUCK_SECONDS = 60.0
DIGIT_VALUES = {"nan": "NaN", "neg-inf": "-Infinity", "null": "null", "string": '"abc"'}


@dataclass
class Recorded:
    requests: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    """(behaviour, body, Authorization header) of every request, in arrival order."""

    def reset(self) -> None:
        self.requests.clear()


def top_logprobs_json(behaviour: str, prompt: str) -> str:
    """`choices[0].logprobs` of a completions answer, as JSON text (NaN and Infinity are not in standard JSON)."""
    if behaviour == "no-logprobs":
        return "null"
    values = {digit: f"{-0.5 - digit * 0.25}" for digit in range(1, 7)}
    if behaviour == "nan-marked":
        behaviour = "nan" if MARK in prompt else "ok"
    if behaviour == "neg-inf":
        values = dict.fromkeys(values, "-Infinity")
    elif behaviour in DIGIT_VALUES:
        values[2] = DIGIT_VALUES[behaviour]
    elif behaviour == "missing":
        del values[5], values[6]
    top = ", ".join(f'"{digit}": {value}' for digit, value in values.items())
    return f'{{"tokens": ["1"], "token_logprobs": [-0.75], "top_logprobs": [{{{top}, "the": -9.0}}]}}'


def chat_content(prompt: str, behaviour: str) -> str:
    if behaviour == "empty":
        return ""
    kind, data = task_of(prompt)
    return json.dumps({"scores": true_scores(data)}) if kind == "rank" else evolve_text(data)


def create_app(recorded: Recorded) -> FastAPI:
    app = FastAPI()
    lock = threading.Lock()

    async def misbehave(behaviour: str, request: Request, body: dict[str, Any], text: str) -> Response | None:
        with lock:
            recorded.requests.append((behaviour, body, request.headers.get("authorization")))
        if behaviour == "auth" and request.headers.get("authorization") != f"Bearer {SECRET}":
            sent = request.headers.get("authorization", "nothing")
            return JSONResponse({"error": {"message": f"Incorrect API key provided: {sent}"}}, status_code=401)
        if behaviour == "500" or (behaviour == "500-marked" and MARK in json.dumps(body)):
            return JSONResponse({"error": {"message": "injected 500"}}, status_code=500)
        if behaviour == "stuck":  # until the client gives up (or STUCK_SECONDS)
            for _ in range(int(STUCK_SECONDS / 0.1)):
                if await request.is_disconnected():
                    break
                await asyncio.sleep(0.1)
        if behaviour == "drip":
            async def drip():
                for byte in text.encode():
                    yield bytes([byte])
                    await asyncio.sleep(DRIP_SECONDS)

            return StreamingResponse(drip(), media_type="application/json")
        return None

    @app.post("/{behaviour}/v1/completions")
    async def completions(behaviour: str, request: Request):
        body = await request.json()
        text = ('{"id": "cmpl-faulty", "object": "text_completion", "choices": [{"index": 0, "text": "1", '
                f'"finish_reason": "length", "logprobs": {top_logprobs_json(behaviour, body["prompt"])}}}]}}')
        answer = await misbehave(behaviour, request, body, text)
        return answer or Response(text, media_type="application/json")

    @app.post("/{behaviour}/v1/chat/completions")
    async def chat(behaviour: str, request: Request):
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        content = chat_content(prompt, behaviour)
        text = json.dumps({"id": "chatcmpl-faulty", "object": "chat.completion",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(content) // 4,
                                     "total_tokens": (len(prompt) + len(content)) // 4}})
        answer = await misbehave(behaviour, request, body, text)
        return answer or Response(text, media_type="application/json")

    return app
