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

import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from deita.errors import DeitaError
from deita.scoring.backends.base import BackendCounters, digits_from_top_logprobs
from deita.scoring.prompts import Prompt
from deita.scoring.scorer import ScoreConfig
from deita.scoring.tokens import DIGITS, score_token_ids

log = logging.getLogger(__name__)

DIGIT_BIAS = 100
"""The largest bias the OpenAI API allows; enough to lift the digits above every other token."""
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Answers worth another try: overload, rate limits and gateway hiccups."""
MAX_RETRY_AFTER = 60.0


def load_tokenizer(model: str):
    """The scorer's tokenizer (prompt truncation and digit ids need it), as a DeitaError if it cannot load."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model)
    except OSError as err:
        where = "directory" if Path(model).exists() else "model id (no network? pass a local directory)"
        raise DeitaError(f"cannot load the scorer's tokenizer from {where} '{model}': {err}") from err


def digit_of_token(token: Any) -> int | None:
    """0..5 when a returned token string is exactly a digit 1..6 up to surrounding spaces ("1", " 1")."""
    text = token.strip() if isinstance(token, str) else ""
    return DIGITS.index(text) if text in DIGITS else None


class _Stopped(Exception):
    """A request abandoned because another one already failed the batch."""


class OpenAIBackend:
    """Scores through an OpenAI-compatible `/completions` endpoint, `config.concurrency` requests at a time."""

    def __init__(self, config: ScoreConfig, *, timeout: float = 300.0, connect_timeout: float = 10.0,
                 max_tries: int = 5, backoff: float = 0.5) -> None:
        self.config = config
        self.url = config.base_url.rstrip("/") + "/completions"
        self.served_model = config.served_model or config.resolved_model()
        self.tokenizer = load_tokenizer(config.resolved_model())
        self.score_token_ids = score_token_ids(self.tokenizer, config.score_token_ids)
        self.counters = BackendCounters()
        self.max_tries = max(1, max_tries)
        self.backoff = backoff
        self.send_bias = True
        """Cleared for good once the server rejects `logit_bias`."""
        concurrency = max(1, config.concurrency)
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=connect_timeout),
                                   limits=httpx.Limits(max_connections=concurrency,
                                                       max_keepalive_connections=concurrency))

    def close(self) -> None:
        self.client.close()

    def digit_logprobs(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """(n, 6) digit log-probs in input order; see `digits_from_top_logprobs` for missing digits."""
        tops = self._fetch_all([p.text for p in prompts])
        rows = [digits_from_top_logprobs(top, digit_of_token, self.counters, f"prompt {i}", self.config.strict)
                for i, top in enumerate(tops)]
        return np.asarray(rows, dtype=np.float64).reshape(len(prompts), len(DIGITS))

    def _fetch_all(self, texts: Sequence[str]) -> list[Mapping[str, float]]:
        """Top log-probs of every text, `concurrency` in flight; the first failure stops the rest."""
        if not texts:
            return []
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=min(max(1, self.config.concurrency), len(texts)),
                                  thread_name_prefix="deita-openai")
        try:
            futures = [pool.submit(self._complete, text, stop) for text in texts]
            wait(futures, return_when=FIRST_EXCEPTION)
            failure = _first_failure(futures)
            if failure is not None:
                raise failure
            return [future.result() for future in futures]
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _complete(self, text: str, stop: threading.Event) -> Mapping[str, float]:
        """One completion's top log-probs; retried once without `logit_bias` if the server rejects it."""
        body = self._body(text)
        response = self._post(body, stop)
        if response.status_code == 400 and "logit_bias" in body and "logit_bias" in response.text:
            if self.send_bias:
                self.send_bias = False
                log.warning("%s rejects logit_bias; scoring from its plain top-%d log-probs", self.url,
                            self.config.max_logprobs)
            response = self._post(self._body(text), stop)
        if response.status_code >= 400:
            raise DeitaError(self._http_error(response))
        return self._top_logprobs(response)

    def _body(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.served_model, "prompt": text, "max_tokens": 1, "temperature": 0,
                                "logprobs": self.config.max_logprobs}
        if self.send_bias:
            body["logit_bias"] = {str(token_id): DIGIT_BIAS for token_id in self.score_token_ids}
        return body

    def _post(self, body: dict[str, Any], stop: threading.Event) -> httpx.Response:
        """POST with bounded exponential backoff on connection errors, timeouts, 5xx and 429."""
        problem = ""
        for attempt in range(self.max_tries):
            if stop.is_set():
                raise _Stopped()
            delay = self.backoff * 2**attempt
            try:
                response = self.client.post(self.url, json=body)
            except httpx.TransportError as err:
                problem = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            else:
                if response.status_code not in RETRY_STATUS and response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}: {_server_message(response)}"
                delay = max(delay, _retry_after(response))
            if attempt + 1 < self.max_tries:
                stop.wait(delay)
        raise DeitaError(f"cannot get a completion from {self.url} after {self.max_tries} tries ({problem}); "
                         "is the server running and is --base-url right (it usually ends in /v1)?")

    def _http_error(self, response: httpx.Response) -> str:
        message = f"{self.url} answered HTTP {response.status_code}: {_server_message(response)}"
        if response.status_code == 404:
            return message + " (is --base-url right, usually ending in /v1, and --served-model the served name?)"
        if "logprob" in message.lower():
            return message + f" (lower --max-logprobs, now {self.config.max_logprobs}, to the server's cap)"
        return message

    def _top_logprobs(self, response: httpx.Response) -> Mapping[str, float]:
        """`choices[0].logprobs.top_logprobs[0]` (completions format) or its chat-style `content` variant."""
        try:
            logprobs = response.json()["choices"][0]["logprobs"]
            if logprobs.get("top_logprobs"):
                top = logprobs["top_logprobs"][0]
            else:  # llama.cpp's newer format: content[0].top_logprobs = [{token, logprob}, ...]
                top = {item["token"]: item["logprob"] for item in logprobs["content"][0]["top_logprobs"]}
            if not isinstance(top, dict):
                raise TypeError(type(top).__name__)
            return top
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise DeitaError(f"{self.url} answered without top log-probs at choices[0].logprobs "
                             f"({type(err).__name__}: {err}): {response.text[:300]!r}; the server must "
                             "support `logprobs` on /completions") from err


def _first_failure(futures: Sequence[Future]) -> BaseException | None:
    """The lowest-index real failure among finished futures (abandoned ones are not the cause)."""
    for future in futures:
        if future.done() and not future.cancelled():
            error = future.exception()
            if error is not None and not isinstance(error, _Stopped):
                return error
    return None


def _server_message(response: httpx.Response) -> str:
    """The error text a server sent, from OpenAI-style JSON or plain text, kept short."""
    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        text = error.get("message", error) if isinstance(error, dict) else error
        text = text if isinstance(text, str) else str(text)
    except ValueError:
        text = response.text
    return " ".join(text.split())[:500] or response.reason_phrase


def _retry_after(response: httpx.Response) -> float:
    """Seconds a 429/503 asks us to wait (Retry-After), capped; 0 when absent or not a number."""
    try:
        return min(max(float(response.headers.get("retry-after", 0)), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 0.0
