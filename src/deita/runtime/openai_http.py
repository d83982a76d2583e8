"""The HTTP side of every OpenAI-compatible server deita talks to (scoring's `/completions`, evol's
`/chat/completions`): credentials, the bearer key, one try under a deadline, retry timing and error text.

- Credentials are taken out of a `user:key@` URL once, when the options are built (`split_credentials`);
  the bare URL is all that is ever saved, printed or hashed into a cache key.
- `--timeout` bounds the whole answer of one try (connect, send, headers and body), not each read: a
  server that drips one byte a second trips it like one that sends nothing. With `tries` tries, one
  request gives up after about `tries × timeout` plus the backoff between tries.
- The key travels only as a bearer token; any text a server or library returns is scrubbed of it.
- `http_tries_option` declares the tries option once, for scoring's `OpenAIOptions` and evol's `RetryOptions`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from deita.config import option
from deita.errors import ConfigError, DeitaError

T = TypeVar("T")
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Answers worth another try: overload, rate limits and gateway hiccups."""
MAX_RETRY_AFTER = 60.0
"""The longest wait a `Retry-After` header may ask for."""
CONNECT_TIMEOUT = 10.0
MAX_HTTP_TRIES = 100


def http_tries_option(default: int, scope: str = "") -> Any:
    """The `http_tries` config field (flag `--http-tries`): tries per request, 1..MAX_HTTP_TRIES; `scope`
    prefixes the help (e.g. "openai: " where several backends share a command)."""
    text = ("tries per request on HTTP 429, 5xx, timeouts and dropped connections, with exponential backoff (a "
            "Retry-After header is honoured).")
    return option(default, f"{scope}{text}" if scope else text[0].upper() + text[1:], min=1, max=MAX_HTTP_TRIES)


def split_credentials(url: str) -> tuple[str, str | None]:
    """(`url` without its `user:key@` part, the key or password, percent-decoded, if any).

    A password holding an unencoded `#`, `?` or `/` cannot be read back from a URL (those end the host
    part); that is a ConfigError saying to percent-encode it, and it never quotes the URL. So is any `@`
    after the host (`http://u:123/x@h/v1` would otherwise keep the key in the URL's path).
    """
    if "@" in url and "://" not in url:  # `user:key@host/v1`: no scheme, so no host part to take them from
        raise ConfigError("must be an http:// or https:// URL, like http://127.0.0.1:8000/v1", ["base_url"])
    try:
        parts = urlsplit(url)
    except ValueError as err:  # e.g. an unclosed IPv6 bracket; the message does not quote the URL
        raise ConfigError(f"not a valid URL ({err})", ["base_url"]) from None
    if parts.netloc and "@" not in parts.netloc and "@" in url.partition(parts.netloc)[2]:
        # `user:pa#ss@host` is cut at the "#": the host part ends early, and the key would be kept in the URL
        raise ConfigError("the credentials in the URL hold a reserved character (#, ? or /): percent-encode it "
                          "(%23, %3F, %2F), or put the key in $OPENAI_API_KEY instead (an '@' after the host is "
                          "read as the end of credentials)", ["base_url"])
    try:
        parts.port  # noqa: B018 (a port that is not a number raises)
    except ValueError as err:
        raise ConfigError(f"not a valid URL ({err})", ["base_url"]) from None
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]  # as written: keeps IPv6 brackets and the port
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    secret = parts.password if parts.password is not None else parts.username
    return bare, unquote(secret) if secret else None


def without_credentials(text: str) -> str:
    """`text` (a command-line argument, say) with the credentials of a URL in it removed."""
    name, equals, value = text.partition("=")
    if equals and name.startswith("--"):
        return f"{name}={without_credentials(value)}"
    if "://" not in text or "@" not in text:
        return text
    try:
        return split_credentials(text)[0]
    except ConfigError:  # not a URL we can read: drop everything up to the last "@"
        scheme, _, rest = text.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"


def check_http_url(url: str) -> None:
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise DeitaError("--base-url must be an http:// or https:// URL with a host, like http://127.0.0.1:8000/v1")


def api_key(url_key: str | None, variable: str) -> tuple[str | None, str | None]:
    """(the bearer token, where it came from): the key written in the URL (the most specific), else
    `$variable`, else none. The URL's key wins so that a default OPENAI_API_KEY (meant for
    api.openai.com) is never sent to a server the user gave its own key for."""
    key = (url_key or os.environ.get(variable) or "").strip()
    source = "the key in --base-url" if url_key else f"${variable}"
    if key and not all(33 <= ord(char) < 127 for char in key):
        raise DeitaError(f"{source} contains spaces or characters that cannot go into an HTTP header; set it to "
                         "the key alone")
    return (key, source) if key else (None, None)


def retry_after(response: httpx.Response) -> float:
    """Seconds a 429/503 asks us to wait (Retry-After), capped; 0 when absent or not a number."""
    try:
        return min(max(float(response.headers.get("retry-after", 0)), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 0.0


def server_message(response: httpx.Response) -> str:
    """The error text a server sent, from OpenAI-style JSON or plain text, kept short."""
    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        text = error.get("message", error) if isinstance(error, dict) else error
        text = text if isinstance(text, str) else str(text)
    except ValueError:
        text = response.text
    return " ".join(text.split())[:500] or response.reason_phrase


def run_sync(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code, also where this thread already runs an event loop
    (a notebook, an async server): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deita-http") as pool:
        return pool.submit(asyncio.run, work).result()


class RequestFailed(Exception):
    """One try that got no HTTP answer: `kind` is "timeout" or "connection"; `problem` is scrubbed text."""

    def __init__(self, kind: str, problem: str) -> None:
        super().__init__(problem)
        self.kind, self.problem = kind, problem


class ServerEndpoint:
    """One endpoint (`base_url` + `path`) of an OpenAI-compatible server; use as `async with`.

    `send` makes one try of a POST under the whole-answer deadline, at most `concurrency` in flight;
    retry policy stays with the caller, which knows which answers are worth another try.
    """

    def __init__(self, base_url: str, path: str, url_key: str | None, key_variable: str, *, timeout: float,
                 concurrency: int, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        check_http_url(base_url)
        self.url = base_url.rstrip("/") + path
        self.key, self.key_source = api_key(url_key, key_variable)
        self.key_variable = key_variable
        self.secrets = [secret for secret in (self.key, url_key) if secret]
        self.timeout, self.connect_timeout = timeout, min(connect_timeout, timeout)
        self.concurrency = max(1, concurrency)
        self._semaphore: asyncio.Semaphore | None = None
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> ServerEndpoint:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        self._semaphore = asyncio.Semaphore(self.concurrency)
        self._http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                                       limits=httpx.Limits(max_connections=self.concurrency,
                                                           max_keepalive_connections=self.concurrency))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def send(self, body: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> httpx.Response:
        """One POST whose whole answer arrives within `timeout` seconds of being sent; else RequestFailed.

        `body` may be a function, called once a slot is free: what it sends is decided then (e.g. leaving
        out an option the server refused while this request waited).
        """
        assert self._http is not None and self._semaphore is not None, "use ServerEndpoint as `async with`"
        async with self._semaphore:
            data = body() if callable(body) else body
            try:
                return await asyncio.wait_for(self._http.post(self.url, json=data), self.timeout)
            except (asyncio.TimeoutError, httpx.TimeoutException):
                raise RequestFailed("timeout", f"no complete answer within --timeout {self.timeout:g} s") from None
            except httpx.TransportError as err:
                text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                raise RequestFailed("connection", self.scrub(text)) from None

    def scrub(self, text: str) -> str:
        """`text` with the key masked: servers and HTTP libraries may quote what they were sent."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def message(self, response: httpx.Response) -> str:
        """The server's error text, scrubbed."""
        return self.scrub(server_message(response))

    def stuck(self, tries: int, started: float) -> DeitaError:
        """The error of a server that timed out on every try: names the URL and the time waited."""
        waited = time.monotonic() - started
        return DeitaError(f"{self.url} sent no complete answer within --timeout {self.timeout:g} s on any of {tries} "
                          f"tries ({waited:.0f} s waited in all); is the server stuck or overloaded? Raise "
                          "--timeout if its answers are slow")
