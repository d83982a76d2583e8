"""An asynchronous client for any OpenAI-compatible `/chat/completions` server (vLLM, TGI, llama.cpp, OpenAI).

At most `concurrency` requests are in flight. HTTP 429, 5xx, timeouts, dropped connections and
malformed answers are retried with exponential backoff, waiting at least what a `Retry-After` header
asks. When retries run out on a rate limit or an unreachable server the whole job stops (a rerun
resumes from the finished shards); a request that keeps failing on its own (5xx, timeouts) or that
the server refuses (4xx) becomes a reject of that one item. Nothing is ever answered with a default.

Structured output: a request may carry a JSON schema (`response_format` of type `json_schema`); a
server that refuses it with 400/422 is asked again without it, and once such a retry succeeds the
client stops sending schemas (callers then parse strictly).

The server, model name, key variable, concurrency and timeout are the scoring openai backend's
`OpenAIOptions`; the HTTP side (the key's rule, the whole-answer deadline, retry timing, error text) is
the shared `deita.runtime.openai_http`. `--timeout` bounds each try's whole answer: a server that
times out on every try ends the job with one error naming it and the time waited.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from deita.config import Config, option
from deita.errors import DeitaError
from deita.runtime.openai_http import (
    RETRY_STATUS,
    RequestFailed,
    ServerEndpoint,
    http_tries_option,
    retry_after,
)
from deita.scoring.backends.openai import OpenAIOptions

log = logging.getLogger(__name__)

REFUSALS_IN_A_ROW = 10
"""So many requests refused (4xx) in a row, with no answer between them, mean the job is misconfigured
(a parameter the server does not take): stop rather than reject every item."""


@dataclass(frozen=True)
class RetryOptions(Config):
    """How hard to try one HTTP request."""

    http_tries: int = http_tries_option(6)
    backoff: float = option(1.0, "Seconds before the first retry of a request; doubled after each.", min=0.0,
                            max=3600.0)


@dataclass
class Usage:
    """Token counts the server reported, summed over answers (the cost report)."""

    calls: int = 0
    """Answers received (each may have cost tokens, whether its content was then accepted or not)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    without_usage: int = 0
    """Answers that reported no usage (their tokens are missing from the sums)."""
    retries: int = 0
    """Requests sent again after a 429, 5xx, timeout, dropped connection or malformed answer."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        return cls(**{name: int(data.get(name, 0)) for name in asdict(cls())})

    def line(self) -> str:
        text = (f"{self.calls:,} calls, {self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion "
                f"tokens = {self.total_tokens:,} tokens")
        if self.retries:
            text += f"; {self.retries:,} requests retried"
        if self.without_usage:
            text += f"; {self.without_usage:,} answers reported no usage (not counted)"
        return text


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str | None


class AnswerRejected(Exception):
    """One request that gets no usable answer. `transient`: it may succeed later (a rerun tries it again)."""

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


class ChatClient:
    """Chat completions against one server and model; use as `async with ChatClient(...) as client`."""

    def __init__(self, server: OpenAIOptions, served_model: str, retry: RetryOptions = RetryOptions(), *,
                 connect_timeout: float = 10.0) -> None:
        self.endpoint = ServerEndpoint(server.base_url, "/chat/completions", server.url_key, server.api_key_env,
                                       timeout=server.timeout, concurrency=server.concurrency,
                                       connect_timeout=connect_timeout)
        self.url = self.endpoint.url
        self.served_model = served_model
        self.server, self.retry = server, retry
        self.structured: bool | None = None
        """None until known; False once the server refused `response_format` and answered without it."""
        self._refused_in_a_row = 0
        self._warned = False

    async def __aenter__(self) -> ChatClient:
        await self.endpoint.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.endpoint.__aexit__(*exc)

    async def chat(self, messages: Sequence[Mapping[str, str]], *, temperature: float, max_tokens: int,
                   usage: Usage, schema: dict[str, Any] | None = None) -> Answer:
        """One answer; its tokens are added to `usage`. Raises `AnswerRejected` or, for the job, `DeitaError`."""
        body: dict[str, Any] = {"model": self.served_model, "messages": list(messages), "temperature": temperature,
                                "max_tokens": max_tokens}
        without_schema = doubted = False
        problem, kind, timeouts = "", "", 0
        attempt, delay, started = 0, 0.0, time.monotonic()
        while attempt < self.retry.http_tries:
            if attempt:
                usage.retries += 1
                await asyncio.sleep(delay * random.uniform(1.0, 1.25))
            attempt += 1
            delay = self.retry.backoff * 2 ** (attempt - 1)

            def ready(plain: bool = without_schema) -> dict[str, Any]:  # decided once a slot is free: requests
                body.pop("response_format", None)  # queued before the server refused schemas are sent without
                if schema is not None and not plain and self.structured is not False:
                    body["response_format"] = schema
                return body

            try:
                response = await self.endpoint.send(ready)
            except RequestFailed as failure:
                problem, kind = failure.problem, failure.kind
                timeouts = timeouts + 1 if kind == "timeout" else timeouts
                continue
            status = response.status_code
            if status in RETRY_STATUS or status >= 500:
                problem, kind = f"HTTP {status}: {self._message(response)}", "rate" if status == 429 else "server"
                delay = max(delay, retry_after(response))
                continue
            if status in (400, 422) and "response_format" in body:
                without_schema = True  # the same request in the form every server takes: not a failed try
                if self.structured is None:  # no schema ever worked: stop sending them (undone if this was not why)
                    self.structured, doubted = False, True
                attempt -= 1
                continue
            if status >= 400:
                if doubted:
                    self.structured = None
                raise self._refusal(response)
            try:
                answer = _parse(response, usage)
            except ValueError as err:
                problem, kind = self.endpoint.scrub(f"malformed answer ({err})"), "malformed"
                continue
            self._refused_in_a_row = 0
            if doubted and not self._warned:
                self._warned = True
                log.warning("%s does not take response_format (JSON schema); parsing answers strictly instead",
                            self.url)
            elif "response_format" in body:
                self.structured = True
            return answer
        if timeouts == self.retry.http_tries:
            raise DeitaError(f"{self.endpoint.stuck(timeouts, started)}. Finished shards are kept: rerun the same "
                             "command to resume")
        if kind in ("rate", "connection"):
            hint = ("Lower --concurrency, or wait." if kind == "rate" else
                    "Is the server running, and is --base-url right (it usually ends in /v1)?")
            raise DeitaError(f"no answer from {self.url} after {self.retry.http_tries} tries ({problem}). {hint} "
                             "Finished shards are kept: rerun the same command to resume")
        raise AnswerRejected(f"no answer after {self.retry.http_tries} tries ({problem})", transient=True)

    def _refusal(self, response: httpx.Response) -> Exception:
        """A 4xx: the job's configuration is wrong (key, URL, model), or the server refuses this one request
        (e.g. too long for its context). Such a reject is transient: refusals cost nothing, and a rerun
        after fixing the server asks again."""
        message = f"{self.url} answered HTTP {response.status_code}: {self._message(response)}"
        self._refused_in_a_row += 1
        if self._refused_in_a_row >= REFUSALS_IN_A_ROW:
            return DeitaError(f"{message}; that makes {REFUSALS_IN_A_ROW} requests refused in a row: check the "
                              "options the server takes (--served-model, --max-tokens). Finished shards are kept: "
                              "rerun the same command to resume")
        if response.status_code in (401, 403):
            variable = f"${self.server.api_key_env}"
            if self.endpoint.key_source is None:
                hint = f"no API key was sent: set it in {variable}, or name another variable with --api-key-env"
            else:
                hint = f"the server refused {self.endpoint.key_source}; set the right one"
            return DeitaError(f"{message} ({hint})")
        if response.status_code == 404:
            return DeitaError(message + " (is --base-url right, usually ending in /v1, and --served-model the "
                              "served name?)")
        return AnswerRejected(f"the server refused the request: HTTP {response.status_code}: "
                              f"{self._message(response)}", transient=True)

    def _message(self, response: httpx.Response) -> str:
        """The server's error text with the key masked: servers may quote the header they were sent."""
        return self.endpoint.message(response)


def _parse(response: httpx.Response, usage: Usage) -> Answer:
    """The first choice's text and finish reason; the reported tokens go into `usage`."""
    try:
        data = response.json()
    except ValueError:
        raise ValueError(f"not JSON: {response.text[:200]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise ValueError(f"no choices: {response.text[:200]!r}")
    choice = data["choices"][0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise ValueError(f"no message in choices[0]: {response.text[:200]!r}")
    usage.calls += 1
    reported = data.get("usage")
    if isinstance(reported, dict) and isinstance(reported.get("prompt_tokens"), int):
        usage.prompt_tokens += reported["prompt_tokens"]
        usage.completion_tokens += int(reported.get("completion_tokens") or 0)
    else:
        usage.without_usage += 1
    content = message.get("content")
    refusal = message.get("refusal")
    text = content if isinstance(content, str) else ""
    if not text and isinstance(refusal, str) and refusal:
        text = refusal  # structured-output refusals arrive here; the caller sees a refusal, not an empty answer
    return Answer(text, choice.get("finish_reason"))
