"""A real OpenAI-compatible `/v1/completions` server over a local transformers model, for backend tests.

It behaves like the servers the openai backend meets: a cap on `logprobs` (vLLM's default is 20), a
`logit_bias` that is honoured before the reported log-probs, ignored, or rejected with a 400, and
token strings (not ids) as the keys of `top_logprobs`; optionally a bearer key it checks (401 otherwise).
It records every request's body and headers.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint's annotations at definition time,
# and `Request` is imported inside `create_app` (fastapi is only needed where a server runs).
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from deita.scoring.backends.openai import OpenAIOptions
from deita.scoring.config import ScoreConfig


@dataclass
class ServerOptions:
    """How the fake server behaves; tests flip these between requests."""

    max_logprobs: int = 20
    bias: str = "honour"
    """honour (reported log-probs include the bias), ignore, or reject (400 when a request carries one)."""
    api_key: str | None = None
    """When set, requests without `Authorization: Bearer <api_key>` get a 401 that quotes what was sent
    (as some servers do), so tests can check the client never repeats it."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    """The headers of every request, lower-case names, in arrival order."""

    def reset(self) -> None:
        """An honest vLLM-like server: cap 20, bias honoured, no key needed, nothing recorded."""
        self.max_logprobs, self.bias, self.api_key = 20, "honour", None
        self.requests.clear()
        self.headers.clear()


def score_config(model_dir, url: str, type: str = "complexity", **overrides: Any) -> ScoreConfig:
    """The openai backend scoring `model_dir` served as "tiny" at `url`; `overrides` are `OpenAIOptions` fields."""
    settings = {"base_url": url, "served_model": "tiny", "max_logprobs": 20, **overrides}
    return ScoreConfig(type=type, model=str(model_dir), backend="openai", openai=OpenAIOptions(**settings))


def create_app(model_dir: str, options: ServerOptions):
    """A FastAPI app serving `/v1/completions` with one forward pass per request."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    lock = threading.Lock()
    app = FastAPI()

    @app.post("/v1/completions")
    def completions(body: dict[str, Any], request: Request):
        options.requests.append(body)
        options.headers.append({name.lower(): value for name, value in request.headers.items()})
        if options.api_key is not None and request.headers.get("authorization") != f"Bearer {options.api_key}":
            sent = request.headers.get("authorization", "nothing")
            return JSONResponse({"error": {"message": f"Incorrect API key provided: {sent}",
                                           "type": "invalid_request_error"}}, status_code=401)
        k = int(body.get("logprobs") or 0)
        if k > options.max_logprobs:
            return JSONResponse({"error": {"message": f"Requested sample logprobs of {k}, which is greater "
                                           f"than max allowed: {options.max_logprobs}"}}, status_code=400)
        if body.get("logit_bias") and options.bias == "reject":
            return JSONResponse({"error": {"message": "logit_bias is not supported"}}, status_code=400)
        ids = torch.tensor([tokenizer(body["prompt"])["input_ids"]])
        with lock, torch.no_grad():
            logits = model(ids).logits[0, -1].float()
        if options.bias == "honour":
            for token_id, value in (body.get("logit_bias") or {}).items():
                logits[int(token_id)] += float(value)
        logprobs = torch.log_softmax(logits, dim=-1)
        values, indices = logprobs.topk(min(k, logprobs.numel()))
        top: dict[str, float] = {}
        for value, index in zip(values.tolist(), indices.tolist(), strict=True):
            top.setdefault(tokenizer.decode([index]), value)  # like real servers: colliding strings keep one
        text = tokenizer.decode([int(logits.argmax())])
        return {"id": "cmpl-test", "object": "text_completion", "model": body.get("model"),
                "choices": [{"index": 0, "text": text, "finish_reason": "length",
                             "logprobs": {"tokens": [text], "token_logprobs": [float(values[0])],
                                          "top_logprobs": [top], "text_offset": [0]}}]}

    return app


class BackgroundServer:
    """uvicorn on 127.0.0.1 at a free port, in a daemon thread; `url` ends in /v1."""

    def __init__(self, app) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self):  # -> BackgroundServer
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()
