"""The chat client against a real HTTP server: retries (429, 5xx, timeouts, garbage), fatal errors, structured
output fallback, credentials, usage. Nothing is ever answered with a default."""

from __future__ import annotations

import asyncio
import logging

import pytest

from deita.errors import DeitaError
from deita.evol.client import AnswerRejected, ChatClient, RetryOptions, Usage, json_schema_format
from deita.evol.rank import ranking_schema
from deita.scoring.backends.openai import OpenAIOptions

EVOLVE = [{"role": "user", "content": "<instruction>\nseed-01: hello\n</instruction>"}]


def client_for(server, *, tries: int = 4, timeout: float = 5.0, url: str | None = None, **server_options):
    options = OpenAIOptions(base_url=url or server.url, served_model="fake", timeout=timeout, concurrency=2,
                            **server_options)
    return ChatClient(options, "fake", RetryOptions(http_tries=tries, backoff=0.01))


def ask(client: ChatClient, times: int = 1, schema=None, messages=EVOLVE):
    """`times` chats one after another on one client: (answers or the exception, usage)."""
    usage = Usage()

    async def main():
        async with client:
            return [await client.chat(messages, temperature=0.0, max_tokens=64, usage=usage, schema=schema)
                    for _ in range(times)]

    try:
        return asyncio.run(main()), usage
    except (AnswerRejected, DeitaError) as err:
        return err, usage


@pytest.mark.parametrize("faults", [["429"], ["500", "503"], ["502"], ["garbage"], ["timeout"]])
def test_transient_failures_are_retried_until_an_answer(chat_server, faults):
    chat_server.options.faults[:] = faults
    chat_server.options.delay = 1.0
    answers, usage = ask(client_for(chat_server, timeout=0.3))
    assert answers[0].text == "seed-01: hello and also constraint 1"
    assert len(chat_server.options.requests) == len(faults) + 1
    assert usage.retries == len(faults) and usage.calls == 1 and usage.prompt_tokens > 0


def test_retry_after_is_honoured(chat_server):
    chat_server.options.faults[:] = ["429"]
    chat_server.options.retry_after = "0.5"
    answers, usage = ask(client_for(chat_server))  # backoff 0.01 s: only the header can make it wait
    first, second = chat_server.options.arrivals
    assert second - first >= 0.5 and usage.retries == 1 and answers[0].text


def test_server_errors_that_outlast_the_retries_reject_the_item_transiently(chat_server):
    chat_server.options.faults[:] = ["500"] * 3
    error, usage = ask(client_for(chat_server, tries=3))
    assert isinstance(error, AnswerRejected) and error.transient
    assert "no answer after 3 tries (HTTP 500: injected 500)" in error.reason
    assert usage.calls == 0 and usage.retries == 2


@pytest.mark.parametrize("fault, expected", [("429", "Lower --concurrency"), ("401", "$OPENAI_API_KEY"),
                                             ("404", "--served-model")])
def test_rate_limits_keys_and_urls_stop_the_job(chat_server, fault, expected):
    chat_server.options.faults[:] = [fault] * 3
    error, _ = ask(client_for(chat_server, tries=3))
    assert isinstance(error, DeitaError) and expected in str(error)


def test_unreachable_server_stops_the_job(chat_server):
    error, _ = ask(client_for(chat_server, tries=2, url="http://127.0.0.1:9/v1"))
    assert isinstance(error, DeitaError) and "Is the server running" in str(error)


def test_a_refused_request_is_a_reject_and_many_in_a_row_stop_the_job(chat_server):
    chat_server.options.faults[:] = ["422"]
    error, _ = ask(client_for(chat_server))
    assert isinstance(error, AnswerRejected) and "HTTP 422" in error.reason
    chat_server.options.faults[:] = ["400"] * 10
    client = client_for(chat_server)

    async def main():
        async with client:
            outcomes = []
            for _ in range(10):
                try:
                    await client.chat(EVOLVE, temperature=0, max_tokens=8, usage=Usage())
                except AnswerRejected as err:
                    outcomes.append(err)
            return outcomes

    with pytest.raises(DeitaError, match="10 requests refused in a row"):
        asyncio.run(main())


def test_structured_output_is_sent_and_dropped_once_the_server_refuses_it(chat_server, caplog):
    rank_messages = [{"role": "user", "content": "[1]\n<instruction>\na\n</instruction>\n\n[2]\n<instruction>\n"
                      "a and also constraint 1\n</instruction>"}]
    schema = json_schema_format("scores", ranking_schema(2))
    answers, _ = ask(client_for(chat_server), times=2, schema=schema, messages=rank_messages)
    assert [body.get("response_format") for body in chat_server.options.requests] == [schema, schema]
    assert answers[0].text == '{"scores": [1, 2]}'

    chat_server.options.reset()
    chat_server.options.schema = "reject"
    client = client_for(chat_server)
    with caplog.at_level(logging.WARNING, logger="deita.evol.client"):
        answers, usage = ask(client, times=3, schema=schema, messages=rank_messages)
    sent = ["response_format" in body for body in chat_server.options.requests]
    assert sent == [True, False, False, False], "refused once, then remembered"
    assert client.structured is False and usage.retries == 0 and len(answers) == 3
    assert sum("does not take response_format" in r.getMessage() for r in caplog.records) == 1


def test_key_from_the_url_or_the_environment_is_a_bearer_token_masked_in_messages(chat_server, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    chat_server.options.faults[:] = ["ok", "401"]
    ask(client_for(chat_server, api_key_env="MY_KEY"))
    assert chat_server.options.headers[-1]["authorization"] == "Bearer sk-from-env"
    error, _ = ask(client_for(chat_server, api_key_env="MY_KEY"))
    assert "sk-from-env" not in str(error) and "Incorrect API key provided: Bearer ***" in str(error)
    assert "the server refused $MY_KEY" in str(error)
    with_credentials = chat_server.url.replace("http://", "http://user:sk-in-url@")
    client = client_for(chat_server, url=with_credentials, api_key_env="MY_KEY")
    assert "sk-in-url" not in client.url
    chat_server.options.faults[:] = ["401"]
    error, _ = ask(client)
    assert chat_server.options.headers[-1]["authorization"] == "Bearer sk-in-url", "a key in the URL wins"
    assert "sk-in-url" not in str(error) and "user:" not in str(error) and "the key in --base-url" in str(error)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    chat_server.options.faults[:] = ["401"]
    error, _ = ask(client_for(chat_server))
    assert "authorization" not in chat_server.options.headers[-1] and "no API key was sent" in str(error)
    with pytest.raises(DeitaError, match="--base-url must be an http"):
        client_for(chat_server, url="127.0.0.1:8000/v1")


def test_answers_without_usage_are_counted_apart(chat_server):
    chat_server.options.faults[:] = ["no_usage", "ok"]
    _, usage = ask(client_for(chat_server), times=2)
    assert usage.calls == 2 and usage.without_usage == 1 and usage.prompt_tokens > 0
    assert "1 answers reported no usage" in usage.line()
