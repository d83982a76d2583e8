"""A misbehaving OpenAI-compatible server against the real CLI (score, evol, rank, select): non-finite and odd
log-probs, a server that drips bytes or never answers, empty answers, all or part of the work failing, and
credentials, which reach the server and no file under the run's folders."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote as percent_encode

import pytest
import yaml

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / name) for name in ("evol", "scoring")]

from builders import run_main, sharegpt, write_jsonl  # noqa: E402
from chat_server import seed_records  # noqa: E402
from faulty_server import MARK, SECRET, Recorded, create_app  # noqa: E402
from openai_server import BackgroundServer  # noqa: E402

from deita.errors import ConfigError  # noqa: E402
from deita.runtime.openai_http import split_credentials, without_credentials  # noqa: E402

ENTRY = [sys.executable, "-c", "from deita.cli import main; main()"]
USER = "alice-the-user"


@pytest.fixture(scope="module")
def faulty():
    recorded = Recorded()
    with BackgroundServer(create_app(recorded)) as running:
        running.recorded = recorded
        yield running


@pytest.fixture
def server(faulty, monkeypatch):
    faulty.recorded.reset()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return faulty


def url(server, behaviour: str) -> str:
    return server.url.removesuffix("/v1") + f"/{behaviour}/v1"


def deita(*args, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """The real command in a subprocess, without any ambient OPENAI_API_KEY: (the result, seconds taken)."""
    environment = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    started = time.monotonic()
    done = subprocess.run([*ENTRY, *map(str, args)], check=False, capture_output=True, text=True, timeout=300,
                          env={**environment, **(env or {})})
    return done, time.monotonic() - started



def error_line(code: int, err: str, expected: int = 1) -> str:
    assert code == expected, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pool(tmp_path: Path, n: int = 3, marked: int | None = None) -> Path:
    rows = [sharegpt(("human", f"question {i}{' ' + MARK if i == marked else ''}"), ("gpt", f"answer {i}"), id=i)
            for i in range(n)]
    return write_jsonl(tmp_path / "pool.jsonl", rows)


def score_args(server, tiny_llama, data: Path, out: Path, behaviour: str, *more) -> list:
    return ["score", data, "-o", out, "--model", tiny_llama, "--backend", "openai", "--base-url",
            url(server, behaviour), "--served-model", "fake", "-q", *more]


# ---------------------------------------------------------------- non-finite and odd log-probs (score)


@pytest.mark.parametrize("behaviour, problem", [
    ("nan", "digit 2's log-prob is nan, not a finite number"),
    ("neg-inf", "digit 1's log-prob is -inf, not a finite number"),
    ("null", "digit 2's log-prob is None, not a finite number"),
    ("string", "digit 2's log-prob is 'abc', not a finite number"),
    ("no-logprobs", "the answer has no log-probs (logprobs: null)"),
])
def test_an_invalid_log_prob_is_one_error_naming_the_record(server, tiny_llama, tmp_path, capsys, behaviour, problem):
    out = tmp_path / "scored.jsonl"
    line = error_line(*run_main(capsys, *score_args(server, tiny_llama, pool(tmp_path), out, behaviour))[::2])
    assert "pool.jsonl, line 1: invalid server answer: " + problem in line
    assert "Use --on-error skip" in line and len(line) < 500
    assert not out.exists()


def test_under_skip_an_invalid_answer_is_a_server_reject_quoting_it(server, tiny_llama, tmp_path, capsys):
    data, out = pool(tmp_path, n=4, marked=2), tmp_path / "scored.jsonl"
    args = score_args(server, tiny_llama, data, out, "nan-marked", "--on-error", "skip")
    code, stdout, err = run_main(capsys, *args)
    assert code == 0, err
    rows = read_jsonl(out)
    assert [row["id"] for row in rows] == [0, 1, 3] and all(0 < row["complexity_scores"][0] < 7 for row in rows)
    [reject] = read_jsonl(tmp_path / "scored.jsonl.rejects.jsonl")
    assert reject["kind"] == "server" and reject["location"] == "line 3" and reject["record"]["id"] == 2
    reason = reject["reason"]
    assert reason.startswith("invalid server answer: digit 2's log-prob is nan, not a finite number; the answer: ")
    assert "'2': nan" in reason and len(reason.partition("; the answer: ")[2]) <= 80
    assert "rejected 1 records (1 server) → " in stdout
    asked = sum(MARK in body["prompt"] for _, body, _ in server.recorded.requests)
    code, _, err = run_main(capsys, *args)  # the shard holding the invalid answer was not stored: asked again
    assert code == 0 and sum(MARK in body["prompt"] for _, body, _ in server.recorded.requests) == 2 * asked


def test_only_digits_absent_from_the_top_log_probs_are_renormalised_and_counted(server, tiny_llama, tmp_path,
                                                                               capsys):
    out = tmp_path / "scored.jsonl"
    code, stdout, err = run_main(capsys, *score_args(server, tiny_llama, pool(tmp_path), out, "missing"))
    assert code == 0, err
    assert "scores renormalised over the digits the server returned: 3 turns" in stdout
    weights = [pow(2.718281828459045, -0.5 - d * 0.25) for d in range(1, 5)]
    expected = sum(d * w for d, w in zip(range(1, 5), weights, strict=True)) / sum(weights)
    assert [row["complexity_scores"][0] for row in read_jsonl(out)] == pytest.approx([expected] * 3)


# ---------------------------------------------------------------- a server that drips or never answers


@pytest.mark.parametrize("behaviour", ["drip", "stuck"])
def test_a_dripping_or_stuck_server_ends_evol_within_tries_times_timeout(server, tmp_path, behaviour):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_records(3))
    done, seconds = deita("evol", "complexity", seeds, "-o", tmp_path / "evolved.jsonl", "--base-url",
                          url(server, behaviour), "--served-model", "fake", "--timeout", "1", "--http-tries", "2",
                          "--backoff", "0.01", "-q")
    line = error_line(done.returncode, done.stderr)
    assert f"{url(server, behaviour)}/chat/completions sent no complete answer within --timeout 1 s on any of 2 " \
           "tries (2 s waited in all)" in line
    assert seconds < 2 * 1 + 10, "2 tries of 1 s, the backoff and the command's start"  # the drip alone takes ~60 s
    assert not (tmp_path / "evolved.jsonl").exists()


def test_a_dripping_server_ends_score_within_its_tries(server, tiny_llama, tmp_path):
    """--http-tries 2 with --timeout 0.5: two tries and one 0.5 s backoff, about 1.5 s waited; the drip alone
    takes ~60 s, so a deadline per read would not end it in time."""
    out = tmp_path / "s.jsonl"
    done, seconds = deita(*score_args(server, tiny_llama, pool(tmp_path, n=1), out, "drip", "--timeout", "0.5",
                                      "--http-tries", "2"))
    line = error_line(done.returncode, done.stderr)
    waited = re.search(rf"{re.escape(url(server, 'drip'))}/completions sent no complete answer within --timeout 0.5 s "
                       r"on any of 2 tries \((\d+) s waited in all\)", line)
    assert waited and 1 <= int(waited[1]) <= 3, line  # 2 × 0.5 s and a 0.5 s backoff
    assert seconds < 25, "2 tries of 0.5 s, one backoff and the command's start (slow on a loaded machine)"
    assert not out.exists()


def test_score_makes_http_tries_tries_default_five(server, tiny_llama, tmp_path, capsys):
    """`--http-tries K` requests per prompt against a server that fails every one; 5 without it."""
    from deita.errors import DeitaError
    from deita.scoring.backends.base import ScorerSpec
    from deita.scoring.backends.openai import OpenAIBackend, OpenAIOptions
    from deita.scoring.config import ScoreConfig

    line = error_line(*run_main(capsys, *score_args(server, tiny_llama, pool(tmp_path, n=1), tmp_path / "s.jsonl",
                                                    "500", "--http-tries", "3"))[::2])
    assert "after 3 tries (HTTP 500: injected 500)" in line and url(server, "500") in line
    assert len(server.recorded.requests) == 3
    server.recorded.reset()
    options = OpenAIOptions(base_url=url(server, "500"), served_model="fake")
    assert ScoreConfig().openai.http_tries == options.http_tries == 5
    scorer = OpenAIBackend(ScorerSpec(str(tiny_llama)), options, backoff=0.01)  # the default tries, a short backoff
    with pytest.raises(DeitaError, match=r"after 5 tries \(HTTP 500: injected 500\)"):
        scorer.digit_logprobs(prompts_for(scorer, n=1))
    assert len(server.recorded.requests) == 5


@pytest.mark.parametrize("command, default", [(["score"], 5), (["evol", "complexity"], 6), (["rank"], 6)])
def test_http_tries_is_one_flag_with_the_commands_own_default(capsys, command, default):
    """One definition: score's comes from `openai.http_tries`, evol's and rank's from `retry.http_tries` alone."""
    code, out, _ = run_main(capsys, *command, "--help")
    flat = " ".join(out.split())
    assert code == 0 and flat.count("--http-tries INTEGER") == 1
    assert re.search(r"--http-tries INTEGER (openai: )?[Tt]ries per request on HTTP 429, 5xx, timeouts and dropped "
                     rf"connections, .{{0,80}}\[default: {default}\]", flat), flat
    assert ("--max-logprobs" in flat) == (command == ["score"])


@pytest.mark.parametrize("tries", ["0", "101"])
def test_http_tries_out_of_range_is_one_error_before_any_request(server, tiny_llama, tmp_path, capsys, tries):
    line = error_line(*run_main(capsys, *score_args(server, tiny_llama, pool(tmp_path, n=1), tmp_path / "s.jsonl",
                                                    "ok", "--http-tries", tries))[::2])
    assert line == f"error: --http-tries: {tries} is out of range (must be between 1 and 100)"
    assert server.recorded.requests == []


# ---------------------------------------------------------------- all or part of the work failing (evol, rank)


@pytest.mark.parametrize("behaviour, kinds, first", [
    ("500", "3 server (the server gave no answer)", "no answer after 2 tries (HTTP 500: injected 500)"),
    ("empty", "3 model (no usable answer)", "step 1 (add_constraint): empty answer, 3 tries"),
])
def test_evol_in_which_every_item_fails_is_an_error(server, tmp_path, capsys, behaviour, kinds, first):
    seeds, out = write_jsonl(tmp_path / "seeds.jsonl", seed_records(3)), tmp_path / "evolved.jsonl"
    line = error_line(*run_main(capsys, "evol", "complexity", seeds, "-o", out, "--base-url", url(server, behaviour),
                                "--served-model", "fake", "--http-tries", "2", "--backoff", "0.01", "-q")[::2])
    assert f"every one of the 3 items failed ({kinds}), so {out} was not written" in line and first in line
    assert not out.exists()
    rejects = read_jsonl(tmp_path / "evolved.jsonl.rejects.jsonl")
    assert len(rejects) == 3 and {r["kind"] for r in rejects} == {kinds.split()[1]}


def test_evol_and_rank_in_which_part_fails_say_how_much_and_why(server, tmp_path, capsys):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [*seed_records(2), {"instruction": f"seed-09: {MARK}",
                                                                      "input": "", "output": "x"}])
    evolved, ranked = tmp_path / "evolved.jsonl", tmp_path / "ranked.jsonl"
    common = ["--served-model", "fake", "--http-tries", "2", "--backoff", "0.01", "--steps", "2"]
    code, out, err = run_main(capsys, "evol", "complexity", seeds, "-o", evolved, "--base-url",
                              url(server, "500-marked"), *common)
    assert code == 0, err
    assert "evolved (complexity, 2 steps) 2 of 3 records" in out
    assert "rejected 1 (0 bad input, 1 server (the server gave no answer); 1 of them may succeed on a rerun)" in out
    assert "  server, first: 'step 1 (add_constraint): no answer after 2 tries (HTTP 500: injected 500)'" in out

    code, out, err = run_main(capsys, "evol", "complexity", seeds, "-o", evolved, "--base-url", url(server, "ok"),
                              *common)  # the transient reject is asked again, the rest comes from the cache
    assert code == 0 and "3 of 3 records" in out, err
    code, out, err = run_main(capsys, "rank", evolved, "-o", ranked, "--base-url", url(server, "500-marked"),
                              "--served-model", "fake", "--http-tries", "2", "--backoff", "0.01")
    assert code == 0, err
    assert "ranked (complexity) 2 of 3 records" in out and "1 server (the server gave no answer)" in out
    earlier = ranked.read_bytes()
    line = error_line(*run_main(capsys, "rank", evolved, "-o", ranked, "--base-url", url(server, "500"),
                                "--served-model", "fake", "--http-tries", "2", "--backoff", "0.01",
                                "--cache-dir", tmp_path / "fresh")[::2])
    assert "every one of the 3 items failed (3 server (the server gave no answer))" in line
    assert ranked.read_bytes() == earlier, "a run in which everything failed leaves the output as it was"


# ---------------------------------------------------------------- credentials


def test_credentials_are_split_decoded_and_refused_when_reserved_characters_are_not_encoded(capsys, tmp_path):
    encoded = percent_encode(SECRET, safe="")
    assert split_credentials(f"http://{USER}:{encoded}@h:8/v1") == ("http://h:8/v1", SECRET)
    assert without_credentials(f"--base-url=http://{USER}:{encoded}@h/v1") == "--base-url=http://h/v1"
    code, out, err = run_main(capsys, "evol", "complexity", tmp_path / "seeds.jsonl", "-o", tmp_path / "e.jsonl",
                              "--served-model", "fake", "--base-url", f"http://{USER}:{SECRET}@127.0.0.1:9/v1")
    line = error_line(code, err)
    assert "percent-encode it (%23, %3F, %2F)" in line and "--base-url" in line
    assert SECRET not in out + err and USER not in out + err
    with pytest.raises(ConfigError, match="percent-encode"):  # else read as host "u", port 123, the key in the path
        split_credentials("http://u:123/456@127.0.0.1:9/v1")


def test_select_keeps_credentials_out_of_every_file_and_a_rerun_reads_the_key_variable(server, tiny_llama, tmp_path,
                                                                                       capsys, monkeypatch):
    """Credentials (reserved characters percent-encoded) in the URL: sent as the bearer key, in no file under
    the run's folder; the saved config keeps the bare URL and api_key_env, and a rerun from it sends the
    key of that variable (never `Bearer ***`), or says where to set it."""
    encoded = percent_encode(SECRET, safe="")
    scorer = {"model": str(tiny_llama), "backend": "openai",
              "openai": {"base_url": f"http://{USER}:{encoded}@127.0.0.1:{server.port}/auth/v1",
                         "served_model": "fake", "http_tries": 3}}
    sections = {"complexity": scorer, "quality": scorer,
                "embed": {"kind": "causal", "model": str(tiny_llama), "max_length": 64},
                "filter": {"threshold": 1.0}, "run": {"shard_size": 4}}
    settings = tmp_path / "settings" / "run.yaml"  # the one file allowed to hold the key: the user's own
    settings.parent.mkdir()
    settings.write_text(yaml.safe_dump(sections))
    work = tmp_path / "work"
    work.mkdir()
    data = pool(work, n=4)
    code, out, err = run_main(capsys, "select", data, "-o", work / "sel.jsonl", "--size", "2", "--config", settings,
                              "-q")
    assert code == 0, err
    assert {auth for _, _, auth in server.recorded.requests} == {f"Bearer {SECRET}"}
    saved = yaml.safe_load((work / "sel.jsonl.config.yaml").read_text())
    assert saved["complexity"]["openai"]["base_url"] == url(server, "auth")
    assert saved["complexity"]["openai"]["api_key_env"] == "OPENAI_API_KEY"
    assert saved["complexity"]["openai"]["http_tries"] == saved["quality"]["openai"]["http_tries"] == 3
    secrets = [SECRET, encoded, USER, "***"]
    for path in [work, *work.rglob("*")]:
        assert not any(secret in str(path) for secret in secrets), path
        if path.is_file():
            content = path.read_text(errors="replace")
            assert not any(secret in content for secret in secrets), (path, content[:300])
    assert not any(secret in out + err for secret in secrets)

    server.recorded.reset()
    rerun = ["select", data, "-o", work / "again.jsonl", "--size", "2", "--config", work / "sel.jsonl.config.yaml",
             "--cache-dir", tmp_path / "fresh-cache", "-q"]
    line = error_line(*run_main(capsys, *rerun)[::2])
    assert "HTTP 401" in line and "no API key was sent: set it in $OPENAI_API_KEY" in line
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    code, _, err = run_main(capsys, *rerun)
    assert code == 0, err
    assert {auth for _, _, auth in server.recorded.requests} == {None, f"Bearer {SECRET}"}


def test_select_refuses_out_of_range_http_tries_in_its_yaml_naming_the_key(tmp_path, capsys):
    settings = tmp_path / "run.yaml"
    settings.write_text("quality: {model: m, backend: openai, openai: {http_tries: 0}}\n")
    line = error_line(*run_main(capsys, "select", pool(tmp_path), "-o", tmp_path / "out" / "sel.jsonl", "--size", "1",
                                "--config", settings)[::2])
    assert line == f"error: {settings}: quality.openai.http_tries: 0 is out of range (must be between 1 and 100)"
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the scoring backend through its Python API


def backend(server, tiny_llama, behaviour: str, **options):
    from deita.scoring.backends.base import ScorerSpec
    from deita.scoring.backends.openai import OpenAIBackend, OpenAIOptions

    return OpenAIBackend(ScorerSpec(str(tiny_llama)), OpenAIOptions(base_url=url(server, behaviour),
                                                                    served_model="fake", http_tries=2, **options),
                         backoff=0.01)


def prompts_for(backend, n: int = 2):
    from builders import example_turns

    from deita.scoring.prompts import build_prompts

    return build_prompts(backend.tokenizer, "complexity", example_turns()[:n], 2048)


def test_the_deadline_bounds_a_dripping_answer_in_score(server, tiny_llama):
    from deita.errors import DeitaError

    scorer = backend(server, tiny_llama, "drip", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(DeitaError, match=r"sent no complete answer within --timeout 0.5 s on any of 2 tries"):
        scorer.digit_logprobs(prompts_for(scorer))
    assert time.monotonic() - started < 2 * 0.5 + 3


def test_the_backend_scores_from_inside_a_running_event_loop(server, tiny_llama):
    """A notebook or an async server already runs a loop in this thread: the requests run beside it."""
    import asyncio

    scorer = backend(server, tiny_llama, "ok")

    async def inside():
        return scorer.digit_logprobs(prompts_for(scorer))

    rows = asyncio.run(inside())
    assert rows.shape == (2, 6) and rows[0].tolist() == pytest.approx([-0.5 - d * 0.25 for d in range(1, 7)])
