"""The openai backend's API key: where it comes from, how it reaches the server, and that neither it nor
the credentials of a `user:key@` URL are ever printed, logged, saved in a config or written to a cache."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from builders import example_turns, sharegpt, write_jsonl
from openai_server import score_config

from deita.errors import DeitaError
from deita.scoring.backends.base import ScorerSpec
from deita.scoring.backends.openai import OpenAIBackend, OpenAIOptions, split_credentials
from deita.scoring.prompts import build_prompts
from deita.scoring.scorer import ScoreStage, ScoreWorker
from deita.workflow import SelectConfig

TURNS = example_turns()
SECRET = "sk-test-5ecret-k3y-0123"
USER = "alice-the-user"
ENTRY = [sys.executable, "-c", "from deita.cli import main; main()"]


def with_credentials(url: str, userinfo: str = f"{USER}:{SECRET}") -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{userinfo}@{rest}"


def closed_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def no_ambient_key(monkeypatch):
    """Whatever key the machine running the tests has must not decide them."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("DEITA_TEST_KEY", raising=False)


def deita(*args, **env: str) -> subprocess.CompletedProcess:
    """The real command in a subprocess, with `env` added to an environment holding no OPENAI_API_KEY."""
    environment = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "DEITA_TEST_KEY")}
    return subprocess.run([*ENTRY, *map(str, args)], check=False, capture_output=True, text=True, timeout=300,
                          env={**environment, **env})


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def authorizations(options) -> set[str | None]:
    return {headers.get("authorization") for headers in options.headers}


# ---------------------------------------------------------------- where the key comes from


def test_key_comes_from_openai_api_key_by_default(tiny_llama, server, options, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    options.api_key = SECRET
    ScoreWorker(score_config(tiny_llama, server.url)).score(TURNS[:2])
    assert authorizations(options) == {f"Bearer {SECRET}"}


def test_key_comes_from_the_variable_named_by_api_key_env(tiny_llama, server, options, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-meant-for-another-server")
    monkeypatch.setenv("DEITA_TEST_KEY", SECRET)
    options.api_key = SECRET
    ScoreWorker(score_config(tiny_llama, server.url, api_key_env="DEITA_TEST_KEY")).score(TURNS[:2])
    assert authorizations(options) == {f"Bearer {SECRET}"}


def test_no_key_sends_no_authorization(tiny_llama, server, options):
    ScoreWorker(score_config(tiny_llama, server.url)).score(TURNS[:1])
    assert authorizations(options) == {None}


@pytest.mark.parametrize("userinfo", [f"{USER}:{SECRET}", SECRET, f":{SECRET}"],
                         ids=["user-and-key", "key-as-user", "key-as-password"])
def test_key_in_base_url_is_the_bearer_token(tiny_llama, server, options, monkeypatch, userinfo):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-meant-for-api-openai-com")  # the URL's own key wins
    options.api_key = SECRET
    ScoreWorker(score_config(tiny_llama, with_credentials(server.url, userinfo))).score(TURNS[:2])
    assert authorizations(options) == {f"Bearer {SECRET}"}  # not Basic auth, not the ambient key


def test_key_is_stripped_of_surrounding_whitespace(tiny_llama, server, options, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", f"  {SECRET}\n")  # as `export OPENAI_API_KEY=$(cat key.txt)` may leave
    options.api_key = SECRET
    ScoreWorker(score_config(tiny_llama, server.url)).score(TURNS[:1])
    assert authorizations(options) == {f"Bearer {SECRET}"}


def test_key_that_cannot_be_a_header_is_an_error_without_the_key(tiny_llama, monkeypatch):
    monkeypatch.setenv("DEITA_TEST_KEY", f"{SECRET} {SECRET}")
    with pytest.raises(DeitaError, match=r"\$DEITA_TEST_KEY contains spaces") as caught:
        OpenAIBackend(ScorerSpec(str(tiny_llama)), OpenAIOptions(api_key_env="DEITA_TEST_KEY"))
    assert SECRET not in str(caught.value)


# ---------------------------------------------------------------- refused keys and unreachable servers


@pytest.mark.parametrize("sent", [None, "sk-wrong-key-0123456789"])
def test_refused_key_is_one_line_naming_the_variable(tiny_llama, server, options, monkeypatch, sent):
    """The fake server quotes the header it got in its 401, as some servers do; we never repeat it."""
    options.api_key = SECRET
    if sent is not None:
        monkeypatch.setenv("DEITA_TEST_KEY", sent)
    worker = ScoreWorker(score_config(tiny_llama, server.url, api_key_env="DEITA_TEST_KEY"))
    with pytest.raises(DeitaError) as caught:
        worker.score(TURNS)
    message = str(caught.value)
    assert "HTTP 401" in message and "$DEITA_TEST_KEY" in message and "--api-key-env" in message
    assert "\n" not in message and SECRET not in message
    if sent is not None:
        assert sent not in message and "Incorrect API key provided: Bearer ***" in message
    else:
        assert "no API key was sent" in message


def test_refused_url_key_is_not_repeated(tiny_llama, server, options):
    options.api_key = "sk-the-server-wants-this-one"
    worker = ScoreWorker(score_config(tiny_llama, with_credentials(server.url)))
    with pytest.raises(DeitaError, match=r"HTTP 401.*refused the key in --base-url") as caught:
        worker.score(TURNS[:1])
    assert SECRET not in str(caught.value) and USER not in str(caught.value)
    assert server.url + "/completions" in str(caught.value)


def test_url_credentials_are_not_in_connection_errors_or_logs(tiny_llama, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    port = closed_port()
    options = OpenAIOptions(base_url=with_credentials(f"http://127.0.0.1:{port}/v1"), http_tries=2)
    backend = OpenAIBackend(ScorerSpec(str(tiny_llama)), options, connect_timeout=1.0, backoff=0.01)
    with pytest.raises(DeitaError) as caught:
        backend.digit_logprobs(build_prompts(backend.tokenizer, "complexity", TURNS[:1], 2048))
    message = str(caught.value)
    assert f"http://127.0.0.1:{port}/v1/completions after 2 tries" in message
    assert SECRET not in message and USER not in message
    assert SECRET not in caplog.text and USER not in caplog.text


def test_url_credentials_are_not_in_logs_of_a_run(tiny_llama, server, options, caplog):
    caplog.set_level(logging.DEBUG)
    options.api_key, options.bias, options.max_logprobs = SECRET, "reject", 100_000
    worker = ScoreWorker(score_config(tiny_llama, with_credentials(server.url), max_logprobs=100_000))
    worker.score(TURNS)
    assert "rejects logit_bias" in caplog.text  # the warning that names the server's URL
    assert SECRET not in caplog.text and USER not in caplog.text


def test_malformed_base_url_is_an_error_that_does_not_quote_it(tiny_llama):
    for url in (f"{USER}:{SECRET}@127.0.0.1:8000/v1", f"http://{USER}:{SECRET}@[::1/v1"):
        with pytest.raises(DeitaError, match="base.url") as caught:  # --base-url, or base_url where it is built
            OpenAIBackend(ScorerSpec(str(tiny_llama)), OpenAIOptions(base_url=url))
        assert SECRET not in str(caught.value) and USER not in str(caught.value)


# ---------------------------------------------------------------- cache keys and saved configs


def test_cache_key_follows_server_and_model_not_credentials(tiny_llama, server):
    def key(**overrides):
        return ScoreStage(score_config(tiny_llama, server.url, **overrides)).fingerprint()

    plain = key()
    assert key(base_url=with_credentials(server.url)) == plain
    assert key(api_key_env="DEITA_TEST_KEY") == plain
    assert key(served_model="other") != plain
    assert key(base_url=server.url.replace("127.0.0.1", "localhost")) != plain
    assert SECRET not in repr(key(base_url=with_credentials(server.url)))


@pytest.mark.slow
def test_cli_served_model_and_base_url_key_the_cache(tmp_path, tiny_llama, server, options):
    """`deita score` against the fake server, key from --api-key-env: only the same server and model resume."""
    options.api_key = SECRET
    data = write_jsonl(tmp_path / "pool.jsonl", [sharegpt(("human", f"question {i}"), ("gpt", f"answer {i}"), id=i)
                                                 for i in range(6)])
    out = tmp_path / "out.jsonl"
    localhost = server.url.replace("127.0.0.1", "localhost")

    def score(base_url: str, served_model: str) -> str:
        done = deita("score", data, "-o", out, "--model", tiny_llama, "--backend", "openai", "--base-url", base_url,
                     "--served-model", served_model, "--api-key-env", "DEITA_TEST_KEY", "-q", DEITA_TEST_KEY=SECRET)
        assert done.returncode == 0, done.stderr
        assert SECRET not in done.stdout + done.stderr
        return done.stdout + done.stderr

    assert "resumed" not in score(server.url, "model-a")
    assert "resumed" not in score(server.url, "model-b")
    assert "1 of 1 shards resumed" in score(server.url, "model-a")
    assert "resumed" not in score(localhost, "model-a")
    fingerprints = sorted((tmp_path / "out.jsonl.cache" / "complexity").glob("*/fingerprint.json"))
    assert len(fingerprints) == 3
    served = {(f["options"]["base_url"], f["options"]["served_model"]) for f in map(read_json, fingerprints)}
    assert served == {(server.url, "model-a"), (server.url, "model-b"), (localhost, "model-a")}
    assert {r["model"] for r in options.requests} == {"model-a", "model-b"}
    assert authorizations(options) == {f"Bearer {SECRET}"}


def test_select_saves_no_credentials(tmp_path, tiny_llama, server, options):
    """`deita select` with both scorers behind a `user:key@` URL: the key and the user are in no output
    file, no cache path or fingerprint, and nothing printed."""
    options.api_key = SECRET
    scorer = {"model": str(tiny_llama), "backend": "openai",
              "openai": {"base_url": with_credentials(server.url), "served_model": "tiny"}}
    sections = {"complexity": scorer, "quality": scorer, "embed": {"kind": "causal", "model": str(tiny_llama),
                                                                   "max_length": 128},
                "filter": {"threshold": 1.0}, "run": {"shard_size": 4}}
    saved = SelectConfig.build(sections).to_yaml()
    assert SECRET not in saved and USER not in saved and "***" not in saved  # a rerun must not send `Bearer ***`
    assert f"base_url: {server.url}" in saved and "api_key_env: OPENAI_API_KEY" in saved

    settings = tmp_path / "settings" / "run.yaml"  # the one file allowed to hold the key
    settings.parent.mkdir()
    settings.write_text(yaml.safe_dump(sections))
    work = tmp_path / "out"
    work.mkdir()
    data = write_jsonl(work / "pool.jsonl", [sharegpt(("human", f"question {i} " * (i + 1)),
                                                      ("gpt", f"answer {i} " * (i + 2)), id=i) for i in range(8)])
    done = deita("select", data, "-o", work / "sel.jsonl", "--size", "3", "--config", settings, "-q")
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr and USER not in done.stdout + done.stderr
    assert authorizations(options) == {f"Bearer {SECRET}"}

    config = (work / "sel.jsonl.config.yaml").read_text()
    assert f"base_url: {server.url}" in config and SECRET not in config and USER not in config
    assert "***" not in config and "api_key_env: OPENAI_API_KEY" in config
    files = [path for path in work.rglob("*") if path.is_file()]
    # the stages' fingerprints: in the shard caches while the pass runs, in the finished columns' marker after
    fingerprints = [*map(read_json, (path for path in files if path.name == "fingerprint.json")),
                    *read_json(work / "sel.jsonl.work" / "columns" / "columns.json")["settings"]["stages"]]
    openai_stages = [f for f in fingerprints if f.get("backend") == "openai"]
    assert len(openai_stages) == 2 and all(f["options"]["base_url"] == server.url for f in openai_stages)
    for path in work.rglob("*"):
        assert SECRET not in str(path) and USER not in str(path)
        if path.is_file():
            content = path.read_bytes()
            assert SECRET.encode() not in content and USER.encode() not in content, path


# ---------------------------------------------------------------- usage mistakes


def test_misspelt_flag_is_a_short_usage_error(tmp_path):
    done = deita("score", tmp_path / "x.jsonl", "-o", tmp_path / "y.jsonl",
                 "--base-ur", with_credentials("http://127.0.0.1:8000/v1"))
    assert done.returncode == 2
    assert "No such option" in done.stderr and "--base-ur" in done.stderr and "'--base-url'" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 5
    assert SECRET not in done.stderr + done.stdout


def test_split_credentials_keeps_the_host_as_written():
    assert split_credentials(f"http://{USER}:{SECRET}@[::1]:8000/v1") == ("http://[::1]:8000/v1", SECRET)
    assert split_credentials("https://u:a%2Fb@Example.com/v1") == ("https://Example.com/v1", "a/b")
    assert split_credentials("http://127.0.0.1:8000/v1") == ("http://127.0.0.1:8000/v1", None)
