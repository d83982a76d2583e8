"""openai backend: any OpenAI-compatible completions server (vLLM serve, TGI, llama.cpp server).

Each prompt is one `max_tokens=1`, `temperature=0` completion whose first position's top log-probs
hold the digits. Every request also carries `logit_bias` +100 on the six digit ids: a server that
reports log-probs after the bias then always has the six digits at the top of its top-k, however small
its cap. The shift is the same for all six digits, so their differences, and with them the expected
score (a softmax over the six), do not change. A server that reports log-probs before the bias returns
its usual top-k; digits outside it are renormalised away (and counted) or, with --strict, an error.

The bias keys are the ids of `--model`'s tokenizer, which must be the tokenizer of the served model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import numpy as np

from deita.config import option
from deita.errors import ConfigError, DeitaError, quote
from deita.runtime.openai_http import (
    RETRY_STATUS,
    RequestFailed,
    ServerEndpoint,
    api_key,
    check_http_url,
    http_tries_option,
    retry_after,
    run_sync,
    split_credentials,
)
from deita.scoring.backends.base import (
    BackendCounters,
    InvalidAnswer,
    InvalidAnswers,
    ScorerSpec,
    TopLogprobOptions,
    digits_from_top_logprobs,
)
from deita.scoring.prompts import Prompt
from deita.scoring.tokens import DIGITS, load_tokenizer, score_token_ids

log = logging.getLogger(__name__)

DIGIT_BIAS = 100
"""The largest bias the OpenAI API allows; enough to lift the digits above every other token."""
BACKOFF = 0.5
"""Seconds before the first retry of a request; doubled after each."""


def digit_of_token(token: Any) -> int | None:
    """0..5 when a returned token string is exactly a digit 1..6 up to surrounding spaces ("1", " 1")."""
    text = token.strip() if isinstance(token, str) else ""
    return DIGITS.index(text) if text in DIGITS else None


@dataclass(frozen=True)
class OpenAIOptions(TopLogprobOptions):
    """Options of the openai backend, and the server section of evol and rank.

    Credentials written in `base_url` (`http://user:key@host/v1`) are taken out when the options are
    built: `base_url` holds the bare URL and the key is kept apart (`url_key`, never saved or printed).
    """

    base_url: str = option("http://127.0.0.1:8000/v1", "openai: server URL (usually ending in /v1).", redact=True)
    served_model: str | None = option(None, "openai: model name on the server (default: --model).")
    api_key_env: str = option("OPENAI_API_KEY", "openai: environment variable holding the API key, sent as a "
                              "bearer token (never saved or printed).")
    concurrency: int = option(16, "openai: requests in flight.", min=1, max=4096)
    timeout: float = option(300.0, "openai: seconds one try may take for the whole answer (a server that sends "
                            "slowly is cut off too).", min=0.1, max=86400.0)
    http_tries: int = http_tries_option(5, "openai: ")
    credentials: tuple[str, str] | None = field(default=None, repr=False, compare=False,
                                                metadata=option(None, internal=True).metadata)
    """(the bare URL, the key) taken from a `user:key@` URL; dropped when `base_url` changes to another URL."""

    def __post_init__(self) -> None:
        if isinstance(self.base_url, str):
            try:
                bare, key = split_credentials(self.base_url)
            except ConfigError as err:
                raise err.located(type(self).__name__) from None
            if key is not None or bare != self.base_url:
                object.__setattr__(self, "base_url", bare)
                object.__setattr__(self, "credentials", (bare, key) if key else None)
            elif self.credentials is not None and self.credentials[0] != bare:
                object.__setattr__(self, "credentials", None)  # the key belongs to the URL it came with
        super().__post_init__()

    @property
    def url_key(self) -> str | None:
        """The key written in `base_url`, if any."""
        return self.credentials[1] if self.credentials else None


def api_key_for(options: OpenAIOptions) -> str | None:
    """The bearer token these options send: the URL's key, else `$api_key_env`, else none."""
    return api_key(options.url_key, options.api_key_env)[0]


class OpenAIBackend:
    """Scores through an OpenAI-compatible `/completions` endpoint, `options.concurrency` requests at a time."""

    summary: ClassVar[str] = "any OpenAI-compatible completions server"
    Options: ClassVar[type] = OpenAIOptions

    def __init__(self, scorer: ScorerSpec, options: OpenAIOptions = OpenAIOptions(), *,
                 connect_timeout: float = 10.0, backoff: float = BACKOFF) -> None:
        self.options = options
        check_http_url(options.base_url)
        self.url = options.base_url.rstrip("/") + "/completions"
        key = api_key(options.url_key, options.api_key_env)[0]  # checked now, before the tokenizer loads
        self.connect_timeout = connect_timeout
        self.served_model = options.served_model or scorer.model
        self.tokenizer = load_tokenizer(scorer.model)
        self.score_token_ids = score_token_ids(self.tokenizer, scorer.score_token_ids)
        self.counters = BackendCounters()
        self.key_from_url, self.has_key = options.url_key is not None, key is not None
        self.backoff = backoff
        self.send_bias = True
        """Cleared for good once the server rejects `logit_bias`."""

    @staticmethod
    def fingerprint(options: OpenAIOptions) -> dict[str, Any]:
        """The server and the model it serves decide the scores; the key does not (the URL holds none)."""
        return {"base_url": options.base_url, "served_model": options.served_model,
                "max_logprobs": options.max_logprobs, "strict": options.strict}

    def close(self) -> None:
        """Nothing held between calls: each `digit_logprobs` opens and closes its own connections."""

    def digit_logprobs(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """(n, 6) digit log-probs in input order; see `digits_from_top_logprobs` for missing digits.

        An answer without usable digit log-probs (NaN, ±Infinity, null or text where a digit's log-prob
        belongs, `logprobs: null`) is invalid: `InvalidAnswers` names every such prompt and carries the
        rows of the others (NaN for the invalid ones), so a caller may reject those records alone.
        """
        answers = run_sync(self._fetch_all([p.text for p in prompts])) if prompts else []
        rows = np.full((len(prompts), len(DIGITS)), np.nan)
        problems: dict[int, str] = {}
        for i, answer in enumerate(answers):
            top: Any = None
            try:
                top = self._top_logprobs(answer)
                rows[i] = digits_from_top_logprobs(top, digit_of_token, self.counters, f"prompt {i}",
                                                   self.options.strict)
            except InvalidAnswer as err:  # quoted short: the top log-probs, else the answer's text
                shown = quote(top) if top is not None else quote(" ".join(answer.text.split()))
                problems[i] = f"{err.problem}; the answer: {shown}"
        if problems:
            raise InvalidAnswers(problems, rows, self.url)
        return rows

    async def _fetch_all(self, texts: Sequence[str]) -> list[httpx.Response]:
        """The answer to every text, `concurrency` in flight; the first failure stops the rest."""
        options = self.options
        async with ServerEndpoint(options.base_url, "/completions", options.url_key, options.api_key_env,
                                  timeout=options.timeout, concurrency=options.concurrency,
                                  connect_timeout=self.connect_timeout) as endpoint:
            slots = asyncio.Semaphore(endpoint.concurrency)  # a body is built once its request may go

            async def complete(text: str) -> httpx.Response:
                async with slots:
                    return await self._complete(endpoint, text)

            tasks = [asyncio.create_task(complete(text)) for text in texts]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                failed = [task for task in tasks if task in done and task.exception() is not None]
                if failed:
                    raise failed[0].exception()  # type: ignore[misc]
                return [task.result() for task in tasks]
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _complete(self, endpoint: ServerEndpoint, text: str) -> httpx.Response:
        """One completion; asked again without `logit_bias` if the server rejects it."""
        body = self._body(text)
        response = await self._post(endpoint, body)
        if response.status_code == 400 and "logit_bias" in body and "logit_bias" in response.text:
            if self.send_bias:
                self.send_bias = False
                log.warning("%s rejects logit_bias; scoring from its plain top-%d log-probs", self.url,
                            self.options.max_logprobs)
            response = await self._post(endpoint, self._body(text))
        if response.status_code >= 400:
            raise DeitaError(self._http_error(endpoint, response))
        return response

    def _body(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.served_model, "prompt": text, "max_tokens": 1, "temperature": 0,
                                "logprobs": self.options.max_logprobs}
        if self.send_bias:
            body["logit_bias"] = {str(token_id): DIGIT_BIAS for token_id in self.score_token_ids}
        return body

    async def _post(self, endpoint: ServerEndpoint, body: dict[str, Any]) -> httpx.Response:
        """POST with bounded exponential backoff on connection errors, timeouts, 5xx and 429."""
        problem, kinds, started = "", set(), time.monotonic()
        tries = self.options.http_tries
        for attempt in range(tries):
            delay = self.backoff * 2**attempt
            try:
                response = await endpoint.send(body)
            except RequestFailed as failure:
                problem = failure.problem
                kinds.add(failure.kind)
            else:
                if response.status_code not in RETRY_STATUS and response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}: {endpoint.message(response)}"
                kinds.add("http")
                delay = max(delay, retry_after(response))
            if attempt + 1 < tries:
                await asyncio.sleep(delay)
        if kinds == {"timeout"}:
            raise endpoint.stuck(tries, started)
        raise DeitaError(f"cannot get a completion from {self.url} after {tries} tries ({problem}); is "
                         "the server running and is --base-url right (it usually ends in /v1)?")

    def _auth_hint(self) -> str:
        """What to do about a refused (or missing) key: always names where the key is read from."""
        variable = f"${self.options.api_key_env}"
        if self.key_from_url:
            return f"the server refused the key in --base-url; fix it, or drop it from the URL and set {variable}"
        if self.has_key:
            return (f"the server refused the key in {variable}; set the right one, or name another variable "
                    "with --api-key-env")
        return f"no API key was sent: set it in {variable}, or name another variable with --api-key-env"

    def _http_error(self, endpoint: ServerEndpoint, response: httpx.Response) -> str:
        message = f"{self.url} answered HTTP {response.status_code}: {endpoint.message(response)}"
        if response.status_code in (401, 403):
            return message + f" ({self._auth_hint()})"
        if response.status_code == 404:
            return message + " (is --base-url right, usually ending in /v1, and --served-model the served name?)"
        if "logprob" in message.lower():
            return message + f" (lower --max-logprobs, now {self.options.max_logprobs}, to the server's cap)"
        return message

    @staticmethod
    def _top_logprobs(response: httpx.Response) -> Mapping[str, Any]:
        """`choices[0].logprobs.top_logprobs[0]` (completions format) or its chat-style `content` variant;
        InvalidAnswer when the answer has neither."""
        try:
            logprobs = response.json()["choices"][0]["logprobs"]
            if logprobs is None:
                raise InvalidAnswer("the answer has no log-probs (logprobs: null); the server must support "
                                    "`logprobs` on /completions")
            if logprobs.get("top_logprobs"):
                top = logprobs["top_logprobs"][0]
            else:  # llama.cpp's newer format: content[0].top_logprobs = [{token, logprob}, ...]
                top = {item["token"]: item["logprob"] for item in logprobs["content"][0]["top_logprobs"]}
            if not isinstance(top, dict):
                raise TypeError(type(top).__name__)
            return top
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
            raise InvalidAnswer(f"no top log-probs at choices[0].logprobs ({type(err).__name__}: {err}); the "
                                "server must support `logprobs` on /completions") from None
