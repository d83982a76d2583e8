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
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import numpy as np

from deita.config import option
from deita.errors import DeitaError
from deita.scoring.backends.base import (
    BackendCounters,
    ScorerSpec,
    TopLogprobOptions,
    digits_from_top_logprobs,
)
from deita.scoring.prompts import Prompt
from deita.scoring.tokens import DIGITS, load_tokenizer, score_token_ids

log = logging.getLogger(__name__)

DIGIT_BIAS = 100
"""The largest bias the OpenAI API allows; enough to lift the digits above every other token."""
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Answers worth another try: overload, rate limits and gateway hiccups."""
MAX_RETRY_AFTER = 60.0


def digit_of_token(token: Any) -> int | None:
    """0..5 when a returned token string is exactly a digit 1..6 up to surrounding spaces ("1", " 1")."""
    text = token.strip() if isinstance(token, str) else ""
    return DIGITS.index(text) if text in DIGITS else None


@dataclass(frozen=True)
class OpenAIOptions(TopLogprobOptions):
    """Options of the openai backend."""

    base_url: str = option("http://127.0.0.1:8000/v1", "openai: server URL (usually ending in /v1).", redact=True)
    served_model: str | None = option(None, "openai: model name on the server (default: --model).")
    api_key_env: str = option("OPENAI_API_KEY", "openai: environment variable holding the API key, sent as a "
                              "bearer token (never saved or printed).")
    concurrency: int = option(16, "openai: requests in flight.", min=1, max=4096)
    timeout: float = option(300.0, "openai: seconds to wait for one answer.", min=0.1, max=86400.0)


def split_credentials(url: str) -> tuple[str, str | None]:
    """(`url` without `user:key@`, the key or password from it if any): credentials never travel in the URL."""
    try:
        parts = urlsplit(url)
    except ValueError as err:  # e.g. an unclosed IPv6 bracket; the message does not quote the URL
        raise DeitaError(f"--base-url is not a valid URL ({err})") from None
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]  # as written: keeps IPv6 brackets and the port
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    secret = parts.password if parts.password is not None else parts.username
    return clean, unquote(secret) if secret else None


def api_key_for(options: OpenAIOptions, url_key: str | None) -> str | None:
    """The bearer token: the key written in --base-url (the most specific), else $api_key_env, else none.

    The URL's key wins so that a default OPENAI_API_KEY (meant for api.openai.com) is never sent to a
    server the user gave its own key for.
    """
    key = (url_key or os.environ.get(options.api_key_env) or "").strip()
    if key and not all(33 <= ord(char) < 127 for char in key):
        source = "the key in --base-url" if url_key else f"${options.api_key_env}"
        raise DeitaError(f"{source} contains spaces or characters that cannot go into an HTTP header; "
                         "set it to the key alone")
    return key or None


class _Stopped(Exception):
    """A request abandoned because another one already failed the batch."""


class OpenAIBackend:
    """Scores through an OpenAI-compatible `/completions` endpoint, `options.concurrency` requests at a time."""

    summary: ClassVar[str] = "any OpenAI-compatible completions server"
    Options: ClassVar[type] = OpenAIOptions

    def __init__(self, scorer: ScorerSpec, options: OpenAIOptions = OpenAIOptions(), *,
                 connect_timeout: float = 10.0, max_tries: int = 5, backoff: float = 0.5) -> None:
        self.options = options
        base_url, url_key = split_credentials(options.base_url)
        if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
            raise DeitaError("--base-url must be an http:// or https:// URL with a host, like "
                             "http://127.0.0.1:8000/v1")
        self.url = base_url.rstrip("/") + "/completions"
        self.served_model = options.served_model or scorer.model
        self.tokenizer = load_tokenizer(scorer.model)
        self.score_token_ids = score_token_ids(self.tokenizer, scorer.score_token_ids)
        self.counters = BackendCounters()
        api_key = api_key_for(options, url_key)
        self.key_from_url, self.has_key = bool(url_key), api_key is not None
        self._secrets = [secret for secret in (api_key, url_key) if secret]
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_tries = max(1, max_tries)
        self.backoff = backoff
        self.send_bias = True
        """Cleared for good once the server rejects `logit_bias`."""
        concurrency = max(1, options.concurrency)
        self.client = httpx.Client(headers=headers, timeout=httpx.Timeout(options.timeout, connect=connect_timeout),
                                   limits=httpx.Limits(max_connections=concurrency,
                                                       max_keepalive_connections=concurrency))

    @staticmethod
    def fingerprint(options: OpenAIOptions) -> dict[str, Any]:
        """The server and the model it serves decide the scores; the key and the URL's credentials do not."""
        return {"base_url": split_credentials(options.base_url)[0], "served_model": options.served_model,
                "max_logprobs": options.max_logprobs, "strict": options.strict}

    def close(self) -> None:
        self.client.close()

    def digit_logprobs(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """(n, 6) digit log-probs in input order; see `digits_from_top_logprobs` for missing digits."""
        tops = self._fetch_all([p.text for p in prompts])
        rows = [digits_from_top_logprobs(top, digit_of_token, self.counters, f"prompt {i}", self.options.strict)
                for i, top in enumerate(tops)]
        return np.asarray(rows, dtype=np.float64).reshape(len(prompts), len(DIGITS))

    def _fetch_all(self, texts: Sequence[str]) -> list[Mapping[str, float]]:
        """Top log-probs of every text, `concurrency` in flight; the first failure stops the rest."""
        if not texts:
            return []
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=min(max(1, self.options.concurrency), len(texts)),
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
                            self.options.max_logprobs)
            response = self._post(self._body(text), stop)
        if response.status_code >= 400:
            raise DeitaError(self._scrub(self._http_error(response)))
        return self._top_logprobs(response)

    def _body(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.served_model, "prompt": text, "max_tokens": 1, "temperature": 0,
                                "logprobs": self.options.max_logprobs}
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
        raise DeitaError(self._scrub(f"cannot get a completion from {self.url} after {self.max_tries} tries "
                                     f"({problem}); is the server running and is --base-url right (it usually "
                                     "ends in /v1)?"))

    def _scrub(self, message: str) -> str:
        """`message` with the API key masked: servers and HTTP libraries may quote what they were sent."""
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    def _auth_hint(self) -> str:
        """What to do about a refused (or missing) key: always names where the key is read from."""
        variable = f"${self.options.api_key_env}"
        if self.key_from_url:
            return f"the server refused the key in --base-url; fix it, or drop it from the URL and set {variable}"
        if self.has_key:
            return (f"the server refused the key in {variable}; set the right one, or name another variable "
                    "with --api-key-env")
        return f"no API key was sent: set it in {variable}, or name another variable with --api-key-env"

    def _http_error(self, response: httpx.Response) -> str:
        message = f"{self.url} answered HTTP {response.status_code}: {_server_message(response)}"
        if response.status_code in (401, 403):
            return message + f" ({self._auth_hint()})"
        if response.status_code == 404:
            return message + " (is --base-url right, usually ending in /v1, and --served-model the served name?)"
        if "logprob" in message.lower():
            return message + f" (lower --max-logprobs, now {self.options.max_logprobs}, to the server's cap)"
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
            raise DeitaError(self._scrub(
                f"{self.url} answered without top log-probs at choices[0].logprobs ({type(err).__name__}: "
                f"{err}): {response.text[:300]!r}; the server must support `logprobs` on /completions")) from err


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
